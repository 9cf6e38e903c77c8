//go:build bench

package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/streams"
)

// TestBenchPresence: 1,000 simulated online users, each signed in through
// the auth callout on its own connection, renew their presence entries
// (JetStream-acked KV puts through the USERS→KEZ import) as fast as the
// broker takes them, against the same puts by a service user in KEZ
// itself (no import, no per-user permissions). Then the time from a user
// starting to connect to a watcher receiving the user's "online" on
// kez.presence.*: connect through the callout, put, republish, delivery.
func TestBenchPresence(t *testing.T) {
	const users = 1000
	st := clienttest.Start(t)
	ctx := context.Background()

	keys := make([]*kez.PrivateKey, users)
	hc := httpClient()
	rate(t, users, 16, func(i int) error {
		k, err := kez.GenerateKey(nil)
		if err != nil {
			return err
		}
		h, _ := kez.ParseHandle(fmt.Sprintf("p%d", i), clienttest.Domain)
		body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
		resp, err := hc.Post(st.URL()+"/v1/register", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("register: %s", resp.Status)
		}
		keys[i] = k
		return nil
	})
	conns := make([]*nats.Conn, users)
	rate(t, users, 16, func(i int) error {
		nc, err := client.ConnectNATS(st.NATS.ClientURL(), keys[i])
		if err != nil {
			return err
		}
		conns[i] = nc
		t.Cleanup(nc.Close)
		return nil
	})

	admin, err := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(client.PresenceEntry{Status: client.PresenceOnline, TS: time.Now().Unix(), TTL: 60})
	const n, conc = 20000, 200
	direct := func(i int) error {
		_, err := admin.Publish(ctx, kez.PresenceKeySubject(keys[i%users].Public()), entry)
		return err
	}
	viaUsers := func(i int) error {
		u := i % users
		return client.PublishPresence(ctx, conns[u], keys[u].Public(), client.PresenceOnline, time.Minute, time.Now())
	}
	compare(t, fmt.Sprintf("presence updates, %d users on their own connections (%d in flight)", users, conc),
		func() float64 { return rate(t, n, conc, direct) },
		func() float64 { return rate(t, n, conc, viaUsers) })
	need := float64(users) / (client.DefaultPresenceTTL / 3).Seconds()
	fmt.Printf("BENCH presence: %d online users renewing every %v need %.0f updates/s\n", users, client.DefaultPresenceTTL/3, need)

	// Connect → a watcher sees "online".
	watcher := conns[0]
	seen := make(chan string, 1024)
	sub, err := watcher.Subscribe(streams.PresenceLiveSubjects, func(m *nats.Msg) { seen <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	watcher.Flush()
	var lat latencies
	const samples = 300
	for i := 1; i <= samples; i++ {
		k := keys[i]
		want := kez.PresenceLiveSubject(k.Public())
		err := lat.timed(func(int) error {
			nc, err := client.ConnectNATS(st.NATS.ClientURL(), k, nats.MaxReconnects(0))
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := client.PublishPresence(ctx, nc, k.Public(), client.PresenceOnline, time.Minute, time.Now()); err != nil {
				return err
			}
			for {
				select {
				case s := <-seen:
					if s == want {
						return nil
					}
				case <-time.After(5 * time.Second):
					return fmt.Errorf("watcher did not see %s", want)
				}
			}
		})(i)
		if err != nil {
			t.Fatal(err)
		}
	}
	p50, p99 := lat.percentiles()
	fmt.Printf("BENCH presence: connect → watcher sees online (callout sign-in, put, republish; %d users): p50 %v, p99 %v\n", samples, p50, p99)
}
