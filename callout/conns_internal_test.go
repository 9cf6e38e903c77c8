package callout

import (
	"testing"
	"time"
)

func connEvent(server string, id uint64, user string) ConnEvent {
	var ev ConnEvent
	ev.Server.ID, ev.Client.ID, ev.Client.User = server, id, user
	return ev
}

// TestConnsNodeGone: connections counted on a broker node that falls
// silent (crashed, cut off: no disconnect events, no heartbeats) stop
// counting once it has been silent for serverSilence while others'
// heartbeats arrive; a shutdown notice drops its connections at once;
// with no heartbeats at all (a nats.conf that does not export them), or
// none heard lately (the replica's own connection cut), nothing is
// dropped for silence.
func TestConnsNodeGone(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := newConns()
	c.heartbeat("A", t0)
	c.event(connEvent("B", 1, "alice"), true, t0)
	c.event(connEvent("A", 7, "bob"), true, t0)
	if n, ok := c.take("alice", 1, t0.Add(10*time.Second)); ok || n != 1 {
		t.Fatalf("alice at her cap of 1 on B: %d, %v", n, ok)
	}
	for s := 10; s <= 40; s += 10 {
		c.heartbeat("A", t0.Add(time.Duration(s)*time.Second))
	}
	if n, ok := c.take("alice", 1, t0.Add(40*time.Second)); !ok || n != 0 {
		t.Fatalf("alice 40 s after B fell silent: %d, %v; want her connection there dropped", n, ok)
	}
	if n, _ := c.take("bob", 5, t0.Add(40*time.Second)); n != 1 {
		t.Fatalf("bob's connection on A, which is heard: counted %d, want 1", n)
	}
	c.gone("A")
	if n, _ := c.take("bob", 5, t0.Add(41*time.Second)); n != 1 { // the sign-in pending from the take above
		t.Fatalf("bob after A's shutdown notice: counted %d, want only the pending sign-in", n)
	}

	quiet := newConns()
	quiet.event(connEvent("B", 1, "alice"), true, t0)
	if n, ok := quiet.take("alice", 1, t0.Add(10*time.Minute)); ok || n != 1 {
		t.Fatalf("with no heartbeats at all, alice 10 min later: %d, %v; want her connection still counted", n, ok)
	}

	// A replica that stops hearing anything (its own connection cut)
	// drops nobody: silence counts against the latest heartbeat heard.
	deaf := newConns()
	deaf.heartbeat("A", t0)
	deaf.heartbeat("B", t0)
	deaf.event(connEvent("B", 1, "alice"), true, t0)
	if n, ok := deaf.take("alice", 1, t0.Add(10*time.Minute)); ok || n != 1 {
		t.Fatalf("a replica that heard nothing for 10 min: alice %d, %v; want her connection still counted", n, ok)
	}
}

// TestConnsDisconnectFirst: a connection that closes at once can have its
// disconnect event applied before its connect event (each subscription's
// handler runs on its own goroutine); it must not then count as open,
// here for good.
func TestConnsDisconnectFirst(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := newConns()
	if _, ok := c.take("alice", 1, t0); !ok {
		t.Fatal("first sign-in refused")
	}
	c.event(connEvent("N1", 1, "alice"), false, t0)
	c.event(connEvent("N1", 1, "alice"), true, t0)
	if n, ok := c.take("alice", 1, t0.Add(time.Second)); !ok {
		t.Fatalf("alice's only connection closed (events out of order): %d counted, refused", n)
	}
	// The closed connections are forgotten in time.
	c.event(connEvent("N1", 3, "bob"), true, t0.Add(3*closedFor))
	if len(c.closed) != 0 {
		t.Fatalf("closed after 3*closedFor: %v, want none", c.closed)
	}
}

func TestServerOf(t *testing.T) {
	for subject, want := range map[string]string{
		"$SYS.SERVER.NABC.STATSZ":   "NABC",
		"$SYS.SERVER.NABC.SHUTDOWN": "NABC",
		"$SYS.SERVER..STATSZ":       "",
		"$SYS.SERVER.STATSZ":        "",
		"$SYS.SERVER.A.B.STATSZ":    "",
	} {
		got, ok := serverOf(subject)
		if got != want || ok != (want != "") {
			t.Errorf("serverOf(%q) = %q, %v; want %q", subject, got, ok, want)
		}
	}
}
