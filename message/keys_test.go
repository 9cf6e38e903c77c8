package message_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// TestKeysCache: a cached key is the key ParsePublicKey gives; a refused
// key text is refused every time (never cached), also after its
// canonical twin was accepted; the cache stays within Max.
func TestKeysCache(t *testing.T) {
	c := message.Keys{Max: 4}
	k, _ := kez.GenerateKey(nil)
	for range 2 {
		got, err := c.ParseKey(k.Public().String())
		if err != nil || !got.Equal(k.Public()) {
			t.Fatalf("ParseKey = %v, %v", got, err)
		}
	}
	// The identity point (small order), canonical and not: y = 1 and
	// y = p + 1 name the same point.
	small := kez.KeyPrefix + "01" + strings.Repeat("00", 31)
	nonCanonical := kez.KeyPrefix + "ee" + strings.Repeat("ff", 30) + "7f"
	for _, bad := range []string{small, nonCanonical, small, nonCanonical, "ed25519:" + strings.ToUpper(k.Public().Hex()), k.Public().Hex()} {
		if _, err := c.ParseKey(bad); !errors.Is(err, kez.ErrInvalidKey) {
			t.Errorf("ParseKey(%s) = %v, want ErrInvalidKey", bad, err)
		}
	}
	for range 20 {
		p, _ := kez.GenerateKey(nil)
		if got, err := c.ParseKey(p.Public().String()); err != nil || !got.Equal(p.Public()) {
			t.Fatalf("ParseKey = %v, %v", got, err)
		}
	}
	if n := message.KeysLen(&c); n > 4 {
		t.Fatalf("cache holds %d keys, Max 4", n)
	}
	// Parse with the cache refuses what Parse refuses.
	id := message.NewIdentity(k)
	defer id.Close()
	_, wire, err := message.Seal(id, k.Public(), message.Text("hi"), time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range [][]byte{wire, []byte(strings.Replace(string(wire), k.Public().Hex(), small[len(kez.KeyPrefix):], 1))} {
		e1, err1 := message.Parse(w)
		e2, err2 := c.Parse(w)
		if (err1 == nil) != (err2 == nil) || (err1 == nil && (!e1.From.Equal(e2.From) || !e1.To.Equal(e2.To))) {
			t.Errorf("Parse = %v, Keys.Parse = %v", err1, err2)
		}
	}
}
