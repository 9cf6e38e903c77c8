package p2p

import (
	"bytes"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(request{Offset: 0, Length: 1}.marshal())
	f.Add(request{Offset: 1 << 20, Length: 16 << 10}.marshal())
	f.Add(make([]byte, requestSize))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		if r.Length <= 0 || r.Offset < 0 || r.Offset+r.Length < r.Offset {
			t.Fatalf("accepted range %d+%d", r.Offset, r.Length)
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatal("request does not round-trip")
		}
	})
}
