//go:build bench

package bench_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
)

// jsonDrain reads and acks u's inbox as a client before the binary read
// answer did (and as the door still serves one): a JSON page, then its
// acks, then the next page, each round trip waiting for the last.
func jsonDrain(t testing.TB, u *chatUser) int {
	got := 0
	var after uint64
	for {
		body, _ := json.Marshal(kez.ReadRequest{After: after})
		m, err := u.nc.Request(kez.DoorSubject(u.key.Public(), kez.DoorRead), body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r kez.ReadReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		last := map[string]uint64{}
		for _, s := range r.Msgs {
			if _, err := kez.ParsePublicKeyHex(s.Sender); err != nil {
				t.Fatal(err)
			}
			last[s.Sender] = s.Seq
			after = s.Seq
			got++
		}
		for s, q := range last {
			b, _ := json.Marshal(kez.AckRequest{Sender: s, Seq: q})
			if _, err := u.nc.Request(kez.DoorSubject(u.key.Public(), kez.DoorAck), b, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if len(r.Msgs) == 0 || !r.More {
			return got
		}
	}
}

// TestBenchDoorDrain: Inbox.Drain (binary pages, the next page read
// and the acks sent while a page is taken) against the JSON drain of
// before, 1 KiB, 500 messages a round from one sender, rounds
// alternating; the figure is the median round of each.
func TestBenchDoorDrain(t *testing.T) {
	_, alice, bob, _ := startChatBench(t)
	ctx := context.Background()
	pt := message.Text(strings.Repeat("x", 1024))
	const n = 500
	fill := func() {
		rate(t, n, 8, func(int) error {
			_, w, err := message.Seal(alice.id, bob.key.Public(), pt, time.Now(), nil)
			if err != nil {
				return err
			}
			_, err = alice.in.Send(ctx, w)
			return err
		})
	}
	compareRounds(t, "door drain 1 KiB x 500, binary overlapped vs JSON serial", 9,
		func() float64 {
			fill()
			start := time.Now()
			if got := jsonDrain(t, bob); got != n {
				t.Fatalf("JSON drain took %d of %d", got, n)
			}
			return n / time.Since(start).Seconds()
		},
		func() float64 {
			fill()
			start := time.Now()
			got := 0
			if err := bob.in.Drain(ctx, func(client.InboxMsg) error { got++; return nil }); err != nil || got != n {
				t.Fatalf("Drain took %d of %d: %v", got, n, err)
			}
			return n / time.Since(start).Seconds()
		})
}
