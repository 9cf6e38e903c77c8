package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
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
// split, and StringValue agrees with json.Unmarshal.
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
				if fast[i].Name != slow[i].Name || !bytes.Equal(fast[i].Value, slow[i].Value) {
					t.Fatalf("member %d: %q=%q, encoding/json %q=%q", i, fast[i].Name, fast[i].Value, slow[i].Name, slow[i].Value)
				}
			}
		}
		for _, m := range slow {
			got, gok := StringValue(m.Value)
			var want string
			werr := json.Unmarshal(m.Value, &want)
			wok := werr == nil && len(m.Value) > 0 && m.Value[0] == '"'
			if gok != wok || got != want {
				t.Fatalf("StringValue(%q) = %q, %t; json.Unmarshal %q, %v", m.Value, got, gok, want, werr)
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
	// Refusals are encoding/json's, with its errors, wrapping the
	// format's sentinel.
	errMine := errors.New("malformed thing")
	f := Format{Err: errMine}
	for _, s := range []string{`{"v":1,"v":2}`, `{"v":01}`, `{"v":1}{}`, `{"v":1,}`, `[]`} {
		if _, ok := scanMembers([]byte(s)); ok {
			t.Errorf("scanMembers(%q) accepted", s)
		}
		if _, err := f.Members([]byte(s), "thing"); !errors.Is(err, errMine) || !errors.Is(err, ErrMalformed) {
			t.Errorf("Members(%q) = %v, want an error wrapping both sentinels", s, err)
		}
	}
}

// TestMembersOrder: members come back in the order written, the values
// as written.
func TestMembersOrder(t *testing.T) {
	for _, in := range []string{`{"b":1,"a":"x","c":[1, {"d":2}]}`, `{"b":1, "a":"x" ,"c":[1, {"d":2}]}`} {
		ms, err := Format{}.Members([]byte(in), "thing")
		if err != nil {
			t.Fatal(err)
		}
		want := []Member{{"b", json.RawMessage("1")}, {"a", json.RawMessage(`"x"`)}, {"c", json.RawMessage(`[1, {"d":2}]`)}}
		if len(ms) != len(want) {
			t.Fatalf("%s: %d members, want %d", in, len(ms), len(want))
		}
		for i := range want {
			if ms[i].Name != want[i].Name || !bytes.Equal(ms[i].Value, want[i].Value) {
				t.Errorf("%s: member %d = %s:%s, want %s:%s", in, i, ms[i].Name, ms[i].Value, want[i].Name, want[i].Value)
			}
		}
	}
}
