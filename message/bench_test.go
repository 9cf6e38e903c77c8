package message_test

import (
	"strings"
	"testing"
	"time"

	"kez.lat/kez/message"
)

// The costs of one 1 KiB text message: what make bench's end-to-end
// figure is made of on the sending and the receiving side.

func BenchmarkSeal1KiB(b *testing.B) {
	alice, bob := testKey(b, "alice"), testKey(b, "bob")
	pt := message.Text(strings.Repeat("x", 1024))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := message.Seal(alice, bob.Public(), pt, now, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse1KiB is the recipient's parse, with its identity's key
// cache.
func BenchmarkParse1KiB(b *testing.B) {
	alice, bob := testKey(b, "alice"), testKey(b, "bob")
	_, wire := seal(b, alice, bob.Public(), message.Text(strings.Repeat("x", 1024)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bob.Parse(wire); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseNoKey1KiB is the parse of a server, which holds no
// identity: both keys are checked every time.
func BenchmarkParseNoKey1KiB(b *testing.B) {
	alice, bob := testKey(b, "alice"), testKey(b, "bob")
	_, wire := seal(b, alice, bob.Public(), message.Text(strings.Repeat("x", 1024)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := message.Parse(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOpen1KiB(b *testing.B) {
	alice, bob := testKey(b, "alice"), testKey(b, "bob")
	_, wire := seal(b, alice, bob.Public(), message.Text(strings.Repeat("x", 1024)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := bob.Parse(wire)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Open(bob, alice.Public()); err != nil {
			b.Fatal(err)
		}
	}
}
