package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestLocalCallsDoNotWaitForDial: while a Listen dials a broker that
// accepts the connection and never answers, local calls (Contacts,
// History, Account) return at once: the full-screen chat draws and
// takes keys through them while the broker is unreachable.
func TestLocalCallsDoNotWaitForDial(t *testing.T) {
	st := clienttest.Start(t)
	alice, _ := newUser(t, st, "dial_alice")
	p := alice.Profile()
	alice.Close()

	// A broker that takes connections and says nothing until released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	a, err := p.Account()
	if err != nil {
		t.Fatal(err)
	}
	a.NATSURL = "nats://" + ln.Addr().String()
	if err := p.SaveAccount(a); err != nil {
		t.Fatal(err)
	}

	// The dial waits for the broker's INFO far longer than the test.
	c := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain,
		NATSOptions: []nats.Option{nats.Timeout(time.Minute)}})
	defer c.Close()
	listened := make(chan error, 1)
	go func() { listened <- c.Listen(context.Background(), client.ListenOptions{}, nil) }()
	var conn net.Conn
	select {
	case conn = <-accepted: // the dial is under way
	case err := <-listened:
		t.Fatalf("listen returned before dialing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not dial the broker")
	}

	done := make(chan error, 1)
	go func() {
		if _, err := c.Contacts(); err != nil {
			done <- err
			return
		}
		if _, err := c.History(a.Handle); err != nil {
			done <- err
			return
		}
		_, err := c.Account()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("local calls waited for the broker dial")
	}

	// Released, the dial fails, and Listen with it.
	conn.Close()
	select {
	case err := <-listened:
		if err == nil {
			t.Error("listen to a broker that hung up: no error")
		}
	case <-time.After(time.Minute):
		t.Fatal("listen did not return once the broker hung up")
	}
}
