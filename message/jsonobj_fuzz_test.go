package message

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// memberSeeds are JSON texts at the edges of scanMembers' subset.
var memberSeeds = []string{
	`{"v":1,"id":"AAAAAAAAAAAAAAAAAAAAAA==","ts":0}`,
	` { "v" : 1 , "ts" : 12 } `,
	"{\t\"type\"\r:\n\"text\",\"body\":\"a\\nb \\\"q\\\" \\u00e9 \\ud800\"}",
	`{"type":"text","body":"é ☃ 😀"}`,
	"{\"type\":\"text\",\"body\":\"\xff\xfe\"}",
	"{\"type\":\"text\",\"body\":\"a\x01\"}",
	`{}`, ` {} `, `{`, `}`, `[]`, `""`, `1`, ``, ` `,
	`{"v":01}`, `{"v":-1}`, `{"v":1.0}`, `{"v":1e0}`, `{"v":1 2}`, `{"v":0 }`,
	`{"v":1,}`, `{,}`, `{"v":1}{}`, `{"v":1} x`, `{"v"1}`, `{"v":}`, `{"v":"a}`,
	`{"v":1,"v":2}`, `{"\u0076":1,"v":2}`, `{"a\"b":1}`, `{"":1}`,
	`{"v":true}`, `{"v":null}`, `{"v":[1]}`, `{"v":{"w":1}}`, `{"v":"\x"}`, `{"v":"\u12"}`, `{"v":"\u12G4"}`,
	`{"v":"\/"}`, "{\"v\":\"\x7f\"}", `{"v":1` + "\u00a0" + `}`,
}

// FuzzMembers: scanMembers, when it answers, agrees with encoding/json's
// split, and jsonString agrees with json.Unmarshal.
func FuzzMembers(f *testing.F) {
	for _, s := range memberSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := scanMembers(b)
		slow, err := decodeMembers(b)
		if ok {
			if err != nil {
				t.Fatalf("scanMembers accepted what encoding/json refuses (%v): %q", err, b)
			}
			if len(fast) != len(slow) {
				t.Fatalf("%d members, encoding/json %d: %q", len(fast), len(slow), b)
			}
			for i := range fast {
				if fast[i].name != slow[i].name || !bytes.Equal(fast[i].value, slow[i].value) {
					t.Fatalf("member %d: %q=%q, encoding/json %q=%q", i, fast[i].name, fast[i].value, slow[i].name, slow[i].value)
				}
			}
		}
		for _, m := range slow {
			got, gok := jsonString(m.value)
			var want string
			werr := json.Unmarshal(m.value, &want)
			wok := werr == nil && len(m.value) > 0 && m.value[0] == '"'
			if gok != wok || got != want {
				t.Fatalf("jsonString(%q) = %q, %t; json.Unmarshal %q, %v", m.value, got, gok, want, werr)
			}
		}
	})
}

func TestScanMembersSeeds(t *testing.T) {
	// The common shapes take the fast path.
	for _, s := range []string{memberSeeds[0], memberSeeds[1], memberSeeds[2], memberSeeds[3], `{}`} {
		if _, ok := scanMembers([]byte(s)); !ok {
			t.Errorf("scanMembers(%q) fell back", s)
		}
	}
	// Refusals are encoding/json's, with its errors.
	for _, s := range []string{`{"v":1,"v":2}`, `{"v":01}`, `{"v":1}{}`, `{"v":1,}`} {
		if _, ok := scanMembers([]byte(s)); ok {
			t.Errorf("scanMembers(%q) accepted", s)
		}
		if _, err := objectMembers([]byte(s)); err == nil {
			t.Errorf("objectMembers(%q) accepted", s)
		}
	}
}

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
