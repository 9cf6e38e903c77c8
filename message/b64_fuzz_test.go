package message

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodeB64: decodeB64 accepts exactly the strings that are the
// canonical standard base64 of their bytes.
func FuzzDecodeB64(f *testing.F) {
	for _, s := range []string{"", "QQ==", "QR==", "QQ=", "QQ", "QUI=", "QUJD", "QUJD\n", "QU\rJD", "QQ==QQ==",
		"QQ==\n", "-_8=", "AAAA AAAA", "=", "====", "A===", strings.Repeat("A", 44)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decodeB64(s)
		want, werr := b64.DecodeString(s)
		canonical := werr == nil && b64.EncodeToString(want) == s
		if (err == nil) != canonical {
			t.Fatalf("decodeB64(%q) = %v; canonical %t", s, err, canonical)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("decodeB64(%q) = %x, want %x", s, got, want)
		}
	})
}
