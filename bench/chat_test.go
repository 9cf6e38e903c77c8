//go:build bench

package bench_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
)

// chatUser is a registered user with its own broker connection, reaching
// its inbox through the home server's door.
type chatUser struct {
	c   *client.Client
	key *kez.PrivateKey
	id  *message.Identity // key's
	nc  *nats.Conn
	in  client.Inbox
}

func registerChatUser(t *testing.T, st *clienttest.Stack, name string) *chatUser {
	t.Helper()
	ctx := context.Background()
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain})
	t.Cleanup(c.Close)
	key, _, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.ParseHandle(name)
	if _, _, err := c.Register(ctx, h, key); err != nil {
		t.Fatal(err)
	}
	nc, err := client.ConnectNATS(st.NATS.ClientURL(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	id := message.NewIdentity(key)
	t.Cleanup(id.Close)
	return &chatUser{c: c, key: key, id: id, nc: nc, in: client.Inbox{NC: nc, Me: key.Public()}}
}

// drain reads n messages from u's inbox through the door, calling open on
// each; they are acked a page at a time.
func (u *chatUser) drain(t testing.TB, n int, open func([]byte) error) {
	t.Helper()
	got := 0
	for deadline := time.Now().Add(30 * time.Second); got < n; {
		if err := u.in.Drain(context.Background(), func(m client.InboxMsg) error {
			got++
			return open(m.Data)
		}); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbox empty after %d of %d", got, n)
		}
	}
}

// phases collects the rates of the two halves of a send-then-drain
// round (the senders' part and the reader's), and the CPU time the whole
// process (broker, home server and clients alike) spent on the rounds.
type phases struct {
	sends, drains []float64
	cpu           time.Duration
	msgs          int
}

// start returns the round's start: the time, and the CPU time so far.
func (p *phases) start() (time.Time, time.Duration) { return time.Now(), processCPU() }

// add records a round of n messages sent from start to sent and drained
// from sent to now, whose CPU time began at cpu0, and returns its overall
// rate.
func (p *phases) add(n int, start time.Time, cpu0 time.Duration, sent time.Time) float64 {
	now := time.Now()
	p.cpu += processCPU() - cpu0
	p.msgs += n
	p.sends = append(p.sends, float64(n)/sent.Sub(start).Seconds())
	p.drains = append(p.drains, float64(n)/now.Sub(sent).Seconds())
	return float64(n) / now.Sub(start).Seconds()
}

func (p *phases) send() string  { return medianRate(p.sends) }
func (p *phases) drain() string { return medianRate(p.drains) }

// cpuPerMsg is the process's CPU time per message over every round.
func (p *phases) cpuPerMsg() time.Duration {
	return (p.cpu / time.Duration(p.msgs)).Round(time.Microsecond)
}

// processCPU returns the CPU time, user and system, the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func medianRate(rs []float64) string {
	rs = slices.Clone(rs)
	slices.Sort(rs)
	return fmt.Sprintf("%.0f/s", rs[len(rs)/2])
}

// rawInbox is the baseline: a plain JetStream stream with a pull
// consumer, on the service account's connection, as a JetStream
// application without our door would use it.
type rawInbox struct {
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func newRawInbox(t *testing.T, st *clienttest.Stack) rawInbox {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BENCH_RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	return rawInbox{js, cons}
}

func (r rawInbox) publish(ctx context.Context, payload []byte) error {
	_, err := r.js.Publish(ctx, "bench.raw", payload)
	return err
}

// drain fetches and acks n messages.
func (r rawInbox) drain(t testing.TB, n int) {
	t.Helper()
	for got := 0; got < n; {
		batch, err := r.cons.Fetch(min(n-got, 100), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
			k++
		}
		if k == 0 {
			t.Fatalf("raw inbox empty after %d of %d (%v)", got, n, batch.Error())
		}
		got += k
	}
}

// startChatBench starts a stack whose quotas a bench never reaches, with
// alice and bob registered and signed in, and the raw baseline's stream.
func startChatBench(t *testing.T) (*clienttest.Stack, *chatUser, *chatUser, rawInbox) {
	t.Helper()
	st := clienttest.StartWith(t, func(c *chatserver.Config) {
		c.Streams.InboxMaxMsgs = 1 << 20
		c.Streams.SenderMaxMsgs = 1 << 20
	})
	return st, registerChatUser(t, st, "alice"), registerChatUser(t, st, "bob"), newRawInbox(t, st)
}

// TestBenchChat: kez-msg-v2 end to end through the inbox door, send (seal,
// sign, the door's parse, signature check, recipient check, quota and
// JetStream publish) -> read through the door -> parse, verify, decrypt
// -> ack, against raw JetStream publish + fetch + ack of a payload of the
// plaintext's size on a plain stream, 8 concurrent senders. Then
// per-message latency (send to decrypted at a receiver following its
// inbox live, one message in flight), and the full client (Client.Send
// and Client.Listen, history synced to disk per message).
func TestBenchChat(t *testing.T) {
	_, alice, bob, raw := startChatBench(t)
	ctx := context.Background()
	// Many short rounds, baseline and door alternating: a figure of a few
	// long rounds is decided by whatever else the shared machine runs
	// during one of them.
	const n, conc, chatRounds = 500, 8, 9

	for _, size := range []int{128, 1024, 16 << 10} {
		text := strings.Repeat("x", size)
		pt := message.Text(text)
		payload := []byte(text)
		var rawPhases, doorPhases phases
		ratio := compareRounds(t, fmt.Sprintf("chat encrypted %d B send->door->read->verify->decrypt (%d senders)", size, conc), chatRounds,
			func() float64 {
				start, cpu0 := rawPhases.start()
				rate(t, n, conc, func(int) error { return raw.publish(ctx, payload) })
				sent := time.Now()
				raw.drain(t, n)
				return rawPhases.add(n, start, cpu0, sent)
			},
			func() float64 {
				start, cpu0 := doorPhases.start()
				rate(t, n, conc, func(int) error {
					_, wire, err := message.Seal(alice.id, bob.key.Public(), pt, time.Now(), nil)
					if err != nil {
						return err
					}
					_, err = alice.in.Send(ctx, wire)
					return err
				})
				sent := time.Now()
				bob.drain(t, n, func(b []byte) error {
					env, err := bob.id.Parse(b)
					if err != nil {
						return err
					}
					got, err := env.Open(bob.id, alice.key.Public())
					if err == nil && got.Body() != text {
						err = fmt.Errorf("wrong plaintext")
					}
					return err
				})
				return doorPhases.add(n, start, cpu0, sent)
			})
		t.Logf("  %d B phases (median): raw send %s, drain %s; door seal+send %s, read+open+ack %s", size,
			rawPhases.send(), rawPhases.drain(), doorPhases.send(), doorPhases.drain())
		// CPU time per message of the whole process (broker, home server,
		// both clients): what the door's hops and checks and the
		// end-to-end encryption cost, against the baseline's publish,
		// store and fetch. The baseline waits on the store's sync; the
		// door's rounds spend most of their time on the CPU.
		fmt.Printf("BENCH chat encrypted %d B CPU per message (process, both cores): door %v, raw %v, %.1fx\n", size,
			doorPhases.cpuPerMsg(), rawPhases.cpuPerMsg(), float64(doorPhases.cpuPerMsg())/float64(rawPhases.cpuPerMsg()))
		if size == 1024 && ratio < 0.6 {
			t.Logf("below the 0.6 target")
		}
	}

	// The door alone at 1 KiB: envelopes sealed before the clock starts,
	// read and acked without opening, so that the ratio is the door's
	// (parse, signature and recipient check, quota, store, batch read,
	// purge) and not the end-to-end encryption the baseline has none of.
	{
		payload := []byte(strings.Repeat("x", 1024))
		pt := message.Text(string(payload))
		compareRounds(t, fmt.Sprintf("chat door only 1 KiB, sealed in advance, read+ack unopened (%d senders)", conc), chatRounds,
			func() float64 {
				start := time.Now()
				rate(t, n, conc, func(int) error { return raw.publish(ctx, payload) })
				raw.drain(t, n)
				return n / time.Since(start).Seconds()
			},
			func() float64 {
				wires := make([][]byte, n)
				for i := range wires {
					_, w, err := message.Seal(alice.id, bob.key.Public(), pt, time.Now(), nil)
					if err != nil {
						t.Fatal(err)
					}
					wires[i] = w
				}
				start := time.Now()
				rate(t, n, conc, func(i int) error {
					_, err := alice.in.Send(ctx, wires[i])
					return err
				})
				bob.drain(t, n, func([]byte) error { return nil })
				return n / time.Since(start).Seconds()
			})
	}

	// Latency: one message in flight, a receiver following its inbox.
	text := strings.Repeat("x", 1024)
	pt := message.Text(text)
	rawLatency := func() []time.Duration {
		it, err := raw.cons.Messages()
		if err != nil {
			t.Fatal(err)
		}
		defer it.Stop()
		var ds []time.Duration
		for range 500 {
			start := time.Now()
			if err := raw.publish(ctx, []byte(text)); err != nil {
				t.Fatal(err)
			}
			m, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(start))
			m.Ack()
		}
		return ds
	}
	doorLatency := func() []time.Duration {
		got := make(chan time.Duration, 1)
		var start time.Time
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- bob.in.Follow(fctx, func(m client.InboxMsg) error {
				env, err := bob.id.Parse(m.Data)
				if err != nil {
					return err
				}
				if _, err := env.Open(bob.id, alice.key.Public()); err != nil {
					return err
				}
				got <- time.Since(start)
				return nil
			})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}()
		time.Sleep(200 * time.Millisecond) // the first backlog read
		var ds []time.Duration
		for range 500 {
			start = time.Now()
			_, wire, err := message.Seal(alice.id, bob.key.Public(), pt, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.in.Send(ctx, wire); err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-got:
				ds = append(ds, d)
			case <-time.After(10 * time.Second):
				t.Fatal("a message did not arrive live")
			}
		}
		return ds
	}
	for _, l := range []struct {
		name string
		f    func() []time.Duration
	}{{"raw JetStream", rawLatency}, {"door, live", doorLatency}} {
		ds := l.f()
		slices.Sort(ds)
		p50, p99 := ds[len(ds)/2], ds[len(ds)*99/100]
		t.Logf("latency 1 KiB %-14s p50 %v p99 %v", l.name, p50, p99)
		fmt.Printf("BENCH chat latency 1 KiB %s: p50 %v, p99 %v\n", l.name, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	}

	// The full client: Client.Send (contact look-up, seal, door, history
	// append synced) and Client.Listen --once (read, verify, decrypt,
	// dedup, history append synced, ack), serial as the CLI runs them.
	bh, _ := kez.ParseHandle("bob", clienttest.Domain)
	if _, _, err := alice.c.Add(ctx, bh); err != nil {
		t.Fatal(err)
	}
	const m = 300
	compare(t, "chat full client 1 KiB Send + Listen, history synced (serial)",
		func() float64 {
			start := time.Now()
			rate(t, m, 1, func(int) error { return raw.publish(ctx, []byte(text)) })
			raw.drain(t, m)
			return m / time.Since(start).Seconds()
		},
		func() float64 {
			start := time.Now()
			rate(t, m, 1, func(int) error {
				_, err := alice.c.Send(ctx, bh, pt, client.SendOptions{NoRefresh: true})
				return err
			})
			got := 0
			if err := bob.c.Listen(ctx, client.ListenOptions{Once: true}, func(ev client.Event) {
				if ev.Entry != nil {
					got++
				}
			}); err != nil || got != m {
				t.Fatalf("listen: %d of %d, %v", got, m, err)
			}
			return m / time.Since(start).Seconds()
		})
}

// TestBenchChatBacklog: the full client catching up on a backlog of
// 1,000 messages from one contact (Client.Listen with Once: read through
// the door, parse, verify, decrypt, stored in the history a page at a
// time with one sync, acked), against raw JetStream fetch + ack of as
// many messages of the plaintext's size. The messages are sent before
// the clock starts.
func TestBenchChatBacklog(t *testing.T) {
	_, alice, bob, raw := startChatBench(t)
	ctx := context.Background()
	hb, _ := alice.c.ParseHandle("bob")
	if _, _, err := alice.c.Add(ctx, hb); err != nil {
		t.Fatal(err)
	}
	const n, rounds = 1000, 5
	body := strings.Repeat("x", 160) // a chat line
	round := 0
	compareRounds(t, fmt.Sprintf("chat backlog of %d, full client Listen --once (history synced per page)", n), rounds,
		func() float64 {
			rate(t, n, 8, func(int) error { return raw.publish(ctx, []byte(body)) })
			start := time.Now()
			raw.drain(t, n)
			return n / time.Since(start).Seconds()
		},
		func() float64 {
			round++
			for i := range n {
				text := message.Text(fmt.Sprintf("%d.%d %s", round, i, body))
				if _, err := alice.c.Send(ctx, hb, text, client.SendOptions{NoRefresh: round > 1 || i > 0, NoHistory: true}); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			got := 0
			if err := bob.c.Listen(ctx, client.ListenOptions{Once: true}, func(ev client.Event) {
				if ev.Entry != nil {
					got++
				}
			}); err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Fatalf("round %d: %d of %d messages", round, got, n)
			}
			return n / time.Since(start).Seconds()
		})
}
