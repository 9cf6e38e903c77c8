package share_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
	"time"

	"lukechampine.com/blake3"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/share"
)

// t0 is 2026-01-01T00:00:00Z.
var t0 = time.Unix(1767225600, 0)

// seqReader is a deterministic "random" source: byte i is next+i mod 256.
// It records what it returned.
type seqReader struct {
	next byte
	out  []byte
}

func (r *seqReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	r.out = append(r.out, p...)
	return len(p), nil
}

// testKey returns the content key whose bytes are all b.
func testKey(tb testing.TB, b byte) filecrypt.Key {
	tb.Helper()
	k, err := filecrypt.KeyFromBytes(bytes.Repeat([]byte{b}, filecrypt.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// encryptFile encrypts content under k with a fixed salt and returns the
// stream and the File describing it (named name, shared at t0).
func encryptFile(tb testing.TB, k filecrypt.Key, content []byte, name, mime string) ([]byte, share.File) {
	tb.Helper()
	var buf bytes.Buffer
	w, err := filecrypt.NewWriter(&buf, k, bytes.NewReader(bytes.Repeat([]byte{0x55}, filecrypt.SaltSize)))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	stream := buf.Bytes()
	return stream, share.File{
		Blob:     blob.Hash(blake3.Sum256(stream)),
		Size:     int64(len(stream)),
		Name:     name,
		FileSize: int64(len(content)),
		MIME:     mime,
		SharedAt: t0.Unix(),
	}
}

// decryptFile decrypts a stream with k.
func decryptFile(tb testing.TB, k filecrypt.Key, stream []byte) []byte {
	tb.Helper()
	r, err := filecrypt.NewReader(bytes.NewReader(stream), k)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signManifest signs payload as key's manifest and returns its wire form,
// as a manifest writer must (docs/kez-file-v1.md).
func signManifest(key *kez.PrivateKey, payload []byte) []byte {
	sig := key.Sign(kez.PurposeManifest, payload)
	return []byte(`{"payload":"` + base64.StdEncoding.EncodeToString(payload) + `","sig":"` + base64.StdEncoding.EncodeToString(sig) + `"}`)
}
