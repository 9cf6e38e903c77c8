package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"kez.lat/kez/strictjson"
)

var errMine = errors.New("malformed thing")

var format = strictjson.Format{MaxDepth: 2, Err: errMine}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"object", `{"a":1,"b":[1,2]}`, true},
		{"white space", " {\"a\" : \"x\"}\n", true},
		{"scalar", `1`, true},
		{"repeated member", `{"a":1,"a":1}`, false},
		{"repeated nested", `{"a":{"b":1,"b":2}}`, false},
		{"too deep", `{"a":[[1]]}`, false},
		{"trailing data", `{} {}`, false},
		{"truncated", `{"a":`, false},
		{"syntax", `{"a" 1}`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := format.Check([]byte(tt.in), "thing")
			if (err == nil) != tt.ok {
				t.Fatalf("Check(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, errMine) || !errors.Is(err, strictjson.ErrMalformed)) {
				t.Errorf("Check(%q) = %v, want errMine and ErrMalformed", tt.in, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "malformed thing: thing: ") {
				t.Errorf("Check(%q) = %q, want it to start with the sentinel and what", tt.in, err)
			}
		})
	}
}

func TestObject(t *testing.T) {
	o, err := format.Parse([]byte(`{"s":"x","n":9007199254740991,"a":["p","q"],"e":[],"b":"AAE=","z":null}`), "thing", "s", "n", "a", "e", "b", "z")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := o.String("s", true); s != "x" || err != nil {
		t.Errorf("String(s) = %q, %v", s, err)
	}
	if n, err := o.Uint("n"); n != strictjson.MaxSafeInteger || err != nil {
		t.Errorf("Uint(n) = %d, %v", n, err)
	}
	if a, err := o.Strings("a", true); len(a) != 2 || err != nil {
		t.Errorf("Strings(a) = %q, %v", a, err)
	}
	if e, err := o.Strings("e", true); e == nil || len(e) != 0 || err != nil {
		t.Errorf("Strings(e) = %#v, %v, want empty, not nil", e, err)
	}
	if b, err := o.Bytes("b", 2); !bytes.Equal(b, []byte{0, 1}) || err != nil {
		t.Errorf("Bytes(b) = %x, %v", b, err)
	}
	if !o.Has("z") || o.Has("nope") {
		t.Errorf("Has: z %v, nope %v", o.Has("z"), o.Has("nope"))
	}
	for name, call := range map[string]func() error{
		"String(z)":    func() error { _, err := o.String("z", false); return err },
		"String(nope)": func() error { _, err := o.String("nope", true); return err },
		"Uint(s)":      func() error { _, err := o.Uint("s"); return err },
		"Bytes(b, 3)":  func() error { _, err := o.Bytes("b", 3); return err },
		"Array(s)":     func() error { _, err := o.Array("s", false); return err },
		"Strings(n)":   func() error { _, err := o.Strings("n", false); return err },
	} {
		if err := call(); !errors.Is(err, errMine) || !errors.Is(err, strictjson.ErrMalformed) {
			t.Errorf("%s = %v, want errMine and ErrMalformed", name, err)
		}
	}
	for _, in := range []string{`{"x":1}`, `[]`, `{"S":"x"}`} {
		if _, err := format.Parse([]byte(in), "thing", "s"); !errors.Is(err, errMine) {
			t.Errorf("Parse(%q) = %v, want errMine", in, err)
		}
	}
}

func TestUint(t *testing.T) {
	for _, n := range []string{`-1`, `1.0`, `1e3`, `9007199254740992`, `"1"`, `null`} {
		o, err := format.Parse([]byte(`{"n":`+n+`}`), "thing")
		if err != nil {
			t.Fatal(err)
		}
		if v, err := o.Uint("n"); err == nil {
			t.Errorf("Uint(%s) = %d, want an error", n, v)
		}
	}
}

func TestSigned(t *testing.T) {
	s := strictjson.Signed{Payload: []byte(`{"a":1}`), Sig: bytes.Repeat([]byte{7}, 64)}
	wire := s.Marshal()
	got, err := format.ParseSigned(wire, "signed")
	if err != nil || !bytes.Equal(got.Payload, s.Payload) || !bytes.Equal(got.Sig, s.Sig) {
		t.Fatalf("ParseSigned(Marshal()) = %v, %v", got, err)
	}
	for _, in := range []string{
		`{"payload":"","sig":"` + strings.Repeat("A", 86) + `=="}`,
		`{"payload":"e30=","sig":"AAAA"}`,
		`{"payload":"e30=","sig":"` + strings.Repeat("A", 86) + `==","x":1}`,
		`{"payload":"e31=","sig":"` + strings.Repeat("A", 86) + `=="}`,
	} {
		if _, err := format.ParseSigned([]byte(in), "signed"); !errors.Is(err, errMine) {
			t.Errorf("ParseSigned(%q) = %v, want errMine", in, err)
		}
	}
}

// FuzzParse checks that whatever Check accepts is valid JSON, that a
// parsed signed form marshals back to an equivalent one, and that nothing
// panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"payload":"e30=","sig":"` + strings.Repeat("A", 86) + `=="}`))
	f.Add([]byte(`{"a":[1,{"b":"c"}],"n":12}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`[[[[]]]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := format.Check(b, "thing")
		if err == nil && !json.Valid(b) {
			t.Fatalf("Check accepted invalid JSON %q", b)
		}
		if err != nil && !errors.Is(err, errMine) {
			t.Fatalf("Check = %v, want errMine", err)
		}
		if o, err := format.Parse(b, "thing"); err == nil {
			o.String("payload", false)
			o.Uint("n")
			o.Strings("a", false)
			o.Array("a", false)
			o.Bytes("sig", -1)
		}
		s, err := format.ParseSigned(b, "signed")
		if err != nil {
			return
		}
		again, err := format.ParseSigned(s.Marshal(), "signed")
		if err != nil || !bytes.Equal(again.Payload, s.Payload) || !bytes.Equal(again.Sig, s.Sig) {
			t.Fatalf("ParseSigned(Marshal()) = %v, %v", again, err)
		}
	})
}
