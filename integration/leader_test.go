//go:build integration

package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
)

// TestDoorStreamLeaderLoss: on a 3-node R3 cluster with two home-server
// replicas, four senders send to bob through the inbox door while the
// inbox stream's leader steps down twice and then the node that leads it
// is killed (natstest.Crash) and started again. A send that gets no
// answer is sent again, the same envelope, until the door acknowledges
// it, as a client does. bob follows his inbox all along (client.Inbox.
// Follow: live delivery, backlog reads on gaps and reconnects). Every
// acknowledged message reaches bob exactly once, none is stored twice
// (the dedup key holds across leaders), none waits for some later event,
// and nothing stays unread.
func TestDoorStreamLeaderLoss(t *testing.T) {
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	c := natstest.StartCluster(t, 3)
	h := startHome(t, c.Servers[0], c.ClientURL(), 3)
	a, b := h.startChat(), h.startChat()
	step("cluster and two home-server replicas started")

	type party struct {
		key *kez.PrivateKey
		id  *message.Identity
		in  client.Inbox
	}
	join := func(base, name string) party {
		k := registerKey(t, base, name)
		nc, err := client.ConnectNATS(c.ClientURL(), k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		id := message.NewIdentity(k)
		t.Cleanup(id.Close)
		return party{k, id, client.Inbox{NC: nc, Me: k.Public()}}
	}
	bob := join(a.URL(), "bob")
	var senders []party
	for i := range 4 {
		base := a.URL()
		if i%2 == 1 {
			base = b.URL()
		}
		senders = append(senders, join(base, fmt.Sprintf("sender%d", i)))
	}

	var mu sync.Mutex
	received := map[string]int{} // text -> times bob got it
	acked := map[string]bool{}   // texts the door acknowledged
	dupAnswers, retries := 0, 0
	fctx, stopFollow := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- bob.in.Follow(fctx, func(m client.InboxMsg) error {
			env, err := message.Parse(m.Data)
			if err != nil {
				return err
			}
			pt, err := env.Open(bob.id, env.From)
			if err != nil {
				return err
			}
			mu.Lock()
			received[pt.Body()]++
			mu.Unlock()
			return nil
		})
	}()
	defer func() {
		stopFollow()
		if err := <-followed; err != nil {
			t.Errorf("bob's follow: %v", err)
		}
	}()

	sctx, stopSending := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sendErrs := make(chan error, len(senders))
	for si, s := range senders {
		wg.Go(func() {
			for i := 0; sctx.Err() == nil; i++ {
				text := fmt.Sprintf("sender%d message %d", si, i)
				_, wire, err := message.Seal(s.id, bob.key.Public(), message.Text(text), time.Now(), nil)
				if err != nil {
					sendErrs <- err
					return
				}
				// The same envelope until acknowledged: its dedup key
				// makes a retry safe.
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					r, err := s.in.Send(ctx, wire)
					cancel()
					if err == nil {
						mu.Lock()
						acked[text] = true
						if r.Duplicate {
							dupAnswers++
						}
						mu.Unlock()
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
					if try == 60 {
						sendErrs <- fmt.Errorf("%s: no acknowledgement after %d tries: %w", text, try+1, err)
						return
					}
					time.Sleep(250 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // a chat's pace, so that bob keeps up under -race
			}
		})
	}

	opt, err := nats.NkeyOptionFromSeed(c.Servers[0].KeyFile(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := nats.Connect(c.ClientURL(), opt, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() string {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if l := leaderOf(t, js, kez.InboxStream); l != "" {
				return l
			}
		}
		t.Fatalf("%s has no leader after 30s", kez.InboxStream)
		return ""
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	time.Sleep(time.Second)
	for range 2 {
		old := leader()
		n := count()
		stepDown(t, admin, kez.InboxStream, "")
		for deadline := time.Now().Add(30 * time.Second); leader() == old; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still led by %s after a step-down", kez.InboxStream, old)
			}
		}
		time.Sleep(time.Second)
		step(fmt.Sprintf("%s stepped down (%s -> %s); %d sends acknowledged before", kez.InboxStream, old, leader(), n))
	}
	old := leader()
	var killed *natstest.Server
	for _, s := range c.Servers {
		if s.Name() == old {
			killed = s
		}
	}
	n := count()
	killed.Crash()
	time.Sleep(2 * time.Second)
	step(fmt.Sprintf("%s (leader of %s) killed; %d sends acknowledged before, new leader %s", old, kez.InboxStream, n, leader()))
	killed.Restart()
	waitBroker(t, c.Servers)
	time.Sleep(time.Second)
	stopSending()
	wg.Wait()
	close(sendErrs)
	for err := range sendErrs {
		t.Fatal(err)
	}
	total := count()
	step(fmt.Sprintf("%s back; sending stopped: %d messages acknowledged, %d sends tried again, %d answered as duplicates", old, total, retries, dupAnswers))
	if total < 100 {
		t.Fatalf("only %d messages acknowledged: too little traffic to test anything", total)
	}

	// Every acknowledged message arrives without waiting for a later
	// event (the follower resyncs every 2 minutes otherwise).
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for text := range acked {
			if received[text] == 0 {
				out = append(out, text)
			}
		}
		return out
	}
	for deadline := time.Now().Add(30 * time.Second); len(missing()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			m := missing()
			t.Fatalf("%d of %d acknowledged messages not received 30s after sending stopped, e.g. %q", len(m), total, m[0])
		}
	}
	step("bob received every acknowledged message")
	mu.Lock()
	for text, n := range received {
		if n != 1 {
			t.Errorf("%q received %d times", text, n)
		}
		if !acked[text] {
			t.Errorf("%q received but never acknowledged to its sender (every send is retried until acknowledged)", text)
		}
	}
	mu.Unlock()
	// Nothing stays unread: bob's acks went through.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err := bob.in.Unread(context.Background())
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's inbox still holds %d unread messages (%v)", n, err)
		}
	}
}
