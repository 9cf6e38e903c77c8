package callout_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/nats/natstest"
)

// TestLimitsOnCluster: on a 3-node cluster loaded from nats/nats.conf,
// with two callout replicas each connected to a different node, the cap
// per key counts one key's connections on every node: with a cap of 3 and
// one connection open on each node, a fourth is refused on every node
// (through either replica) while another key signs in, and closing one
// makes room again. The per-connection limits of the USERS account
// (subscriptions, payload) hold on every node.
func TestLimitsOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	c := natstest.StartCluster(t, 3)
	st := &stack{ns: c.Servers[0], records: map[kez.PublicKey]kez.HandleRecord{}}
	for i := range 2 { // the nodes share their keys
		st.startReplica(t, c.Servers[i], func(c *callout.Config) { c.MaxConnsPerKey = 3 })
	}
	alice, bob := st.register(t, "alice"), st.register(t, "bob")

	var open []*nats.Conn
	for _, s := range c.Servers {
		nc, err := signIn(s.ClientURL(), alice, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("alice's connection to %s (of 3): %v", s.Name(), err)
		}
		defer nc.Close()
		open = append(open, nc)
	}
	// Each replica learns of the connections on every node from the
	// broker's connect events; once it has, a fourth is refused anywhere.
	refusedEverywhere := func() bool {
		for _, s := range c.Servers {
			for range 2 { // whichever replica answers
				nc, err := signIn(s.ClientURL(), alice, nats.MaxReconnects(0))
				if err == nil {
					nc.Close()
					return false
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Fatalf("alice's 4th connection, to %s: %v, want an authorization violation", s.Name(), err)
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !refusedEverywhere(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a 4th connection of alice still allowed 10s after she opened one on each of the 3 nodes")
		}
	}
	for _, s := range c.Servers {
		nc, err := signIn(s.ClientURL(), bob, nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("bob, while alice is at her cap, on %s: %v", s.Name(), err)
		}
		nc.Close()
	}
	open[1].Close() // on the second node
	waitFor(t, func() bool {
		nc, err := signIn(c.Servers[2].ClientURL(), alice, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err == nil
	})

	for i, s := range c.Servers {
		t.Run(fmt.Sprintf("limits on %s", s.Name()), func(t *testing.T) {
			checkUserLimits(t, s.ClientURL(), st.register(t, fmt.Sprintf("carol%d", i)))
		})
	}
}

// TestNodeStopFreesConnections: a broker node that stops sends no
// disconnect events for its clients; its shutdown notice takes their
// connections out of the count, so that a user at the cap whose node
// went away signs in on another node at once (before, the key stayed
// full of connections nobody held until the replica restarted).
func TestNodeStopFreesConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2-node cluster")
	}
	c := natstest.StartCluster(t, 2)
	st := &stack{ns: c.Servers[0], records: map[kez.PublicKey]kez.HandleRecord{}}
	st.startReplica(t, c.Servers[0], func(c *callout.Config) { c.MaxConnsPerKey = 1 })
	alice := st.register(t, "alice")
	nc, err := signIn(c.Servers[1].ClientURL(), alice, nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The replica has counted it: a second connection is refused.
	waitFor(t, func() bool {
		nc2, err := signIn(c.Servers[0].ClientURL(), alice, nats.MaxReconnects(0))
		if err == nil {
			nc2.Close()
		}
		return errors.Is(err, nats.ErrAuthorization)
	})
	c.Servers[1].Stop()
	start := time.Now()
	waitFor(t, func() bool {
		nc2, err := signIn(c.Servers[0].ClientURL(), alice, nats.MaxReconnects(0))
		if err == nil {
			nc2.Close()
		}
		return err == nil
	})
	t.Logf("alice signed in on the other node %v after hers stopped", time.Since(start).Round(time.Millisecond))
}
