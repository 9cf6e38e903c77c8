package client_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestListenAfterJWTExpiry: when the user JWT expires the broker closes
// the connection and the client reconnects; a message sent after that
// reaches a running Listen at once. Following the inbox on the same pull
// subscription across the reconnect left it with the inbox AckWait (30 s)
// or more: the consumer delivered it to the pull request of the closed
// connection (see client.FollowInbox).
func TestListenAfterJWTExpiry(t *testing.T) {
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.UserJWTTTL = 3 * time.Second })
	ctx := context.Background()
	reconnected := make(chan struct{}, 16)
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), "profile"))
	if err != nil {
		t.Fatal(err)
	}
	alice := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain,
		NATSOptions: []nats.Option{
			nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}), // "authentication expired"
		}})
	t.Cleanup(alice.Close)
	key, _, err := alice.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	if _, chainErr, err := alice.Register(ctx, handle(t, "alice"), key); err != nil || chainErr != nil {
		t.Fatalf("register alice: %v, %v", err, chainErr)
	}
	bob, _ := newUser(t, st, "bob")

	got := make(chan string, 16)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- alice.Listen(lctx, client.ListenOptions{}, func(ev client.Event) {
			if ev.Entry != nil {
				got <- ev.Entry.Body
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	for round := range 2 {
		select {
		case <-reconnected:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: alice did not reconnect after her JWT expired", round)
		}
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		if _, err := bob.SendText(ctx, handle(t, "alice"), "after the reconnect"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			t.Logf("round %d: received %v after the send", round, time.Since(t0).Round(time.Millisecond))
		case err := <-done:
			t.Fatalf("round %d: listen ended: %v", round, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the message sent after the reconnect did not arrive within 5s (inbox AckWait: 30s)", round)
		}
	}
}
