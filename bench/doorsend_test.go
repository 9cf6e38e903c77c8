//go:build bench

package bench_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
)

// TestBenchDoorSend takes the send side of the door apart, 1 KiB, 8
// senders, each variant a ratio to raw publishes of the plaintext:
//
//   - raw, envelope size: raw publishes of a sealed envelope's bytes
//     (what encryption adds to the store's work);
//   - into the inbox stream: the service account publishing envelopes
//     straight into KEZ_INBOX with their Nats-Msg-Id (the inbox
//     stream's settings: dedup, per-subject limit, republish);
//   - door, sealed in advance: what the door adds (a request/reply hop,
//     parse, signature, recipient, quota);
//   - door, sealed per send: what Client.Send costs;
//   - door refusal: a body the door refuses at its parse, never stored
//     (the hop alone).
//
// Variants run in turn in short phases, 30 rounds, and each one's time
// is summed: a burst of other work on the machine hits all of them.
func TestBenchDoorSend(t *testing.T) {
	st, alice, bob, raw := startChatBench(t)
	ctx := context.Background()
	js, err := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	const n, conc, phases = 200, 8, 30
	payload := []byte(strings.Repeat("x", 1024))
	pt := message.Text(string(payload))
	seal := func() []byte {
		_, w, err := message.Seal(alice.id, bob.key.Public(), pt, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	sealed := func() [][]byte {
		w := make([][]byte, n)
		for i := range w {
			w[i] = seal()
		}
		return w
	}
	type variant struct {
		name   string
		stores int // messages it leaves in bob's inbox
		op     func(round int) func(int) error
	}
	variants := []variant{
		{"raw publishes", 0, func(int) func(int) error {
			return func(int) error { return raw.publish(ctx, payload) }
		}},
		{"raw publishes, envelope size", 0, func(int) func(int) error {
			w := seal()
			return func(int) error { return raw.publish(ctx, w) }
		}},
		{"into the inbox stream", n, func(round int) func(int) error {
			w, subject := sealed(), kez.InboxMsgSubject(bob.key.Public(), alice.key.Public())
			return func(i int) error {
				_, err := js.Publish(ctx, subject, w[i], jetstream.WithMsgID(fmt.Sprint("bench-", round, "-", i)))
				return err
			}
		}},
		{"door, sealed in advance", n, func(int) func(int) error {
			w := sealed()
			return func(i int) error { _, err := alice.in.Send(ctx, w[i]); return err }
		}},
		{"door, sealed per send", n, func(int) func(int) error {
			return func(int) error { _, err := alice.in.Send(ctx, seal()); return err }
		}},
		{"door refusal (not stored)", 0, func(int) func(int) error {
			return func(int) error {
				if _, err := alice.in.Send(ctx, []byte("{}")); err == nil {
					return fmt.Errorf("the door stored garbage")
				}
				return nil
			}
		}},
	}
	took := make([]time.Duration, len(variants))
	for round := range phases {
		stored := 0
		for j := range variants {
			k := (j + round) % len(variants)
			op := variants[k].op(round)
			start := time.Now()
			rate(t, n, conc, op)
			took[k] += time.Since(start)
			stored += variants[k].stores
		}
		bob.drain(t, stored, func([]byte) error { return nil })
		raw.drain(t, 2*n)
	}
	for k, v := range variants {
		r := float64(phases*n) / took[k].Seconds()
		ratio := took[0].Seconds() / took[k].Seconds()
		t.Logf("door send, 1 KiB, %d senders: %-30s %8.0f/s  ratio %.2f", conc, v.name, r, ratio)
		fmt.Printf("BENCH door send 1 KiB %s (%d senders): %.0f/s, ratio %.2f to raw publishes\n", v.name, conc, r, ratio)
	}
}
