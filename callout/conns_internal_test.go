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
	c := newConns(time.Hour)
	c.heartbeat("A", t0)
	c.event(connEvent("B", 1, "alice"), true, t0)
	c.event(connEvent("A", 7, "bob"), true, t0)
	if n, ok := c.take("alice", connID{"A", 100}, 1, t0.Add(10*time.Second)); ok || n != 1 {
		t.Fatalf("alice at her cap of 1 on B: %d, %v", n, ok)
	}
	for s := 10; s <= 40; s += 10 {
		c.heartbeat("A", t0.Add(time.Duration(s)*time.Second))
	}
	if n, ok := c.take("alice", connID{"A", 100}, 1, t0.Add(40*time.Second)); !ok || n != 0 {
		t.Fatalf("alice 40 s after B fell silent: %d, %v; want her connection there dropped", n, ok)
	}
	if n, _ := c.take("bob", connID{"A", 101}, 5, t0.Add(40*time.Second)); n != 1 {
		t.Fatalf("bob's connection on A, which is heard: counted %d, want 1", n)
	}
	c.gone("A")
	if n, _ := c.take("bob", connID{"A", 101}, 5, t0.Add(41*time.Second)); n != 1 { // the sign-in pending from the take above
		t.Fatalf("bob after A's shutdown notice: counted %d, want only the pending sign-in", n)
	}

	quiet := newConns(time.Hour)
	quiet.event(connEvent("B", 1, "alice"), true, t0)
	if n, ok := quiet.take("alice", connID{"A", 100}, 1, t0.Add(10*time.Minute)); ok || n != 1 {
		t.Fatalf("with no heartbeats at all, alice 10 min later: %d, %v; want her connection still counted", n, ok)
	}

	// A replica that stops hearing anything (its own connection cut)
	// drops nobody: silence counts against the latest heartbeat heard.
	deaf := newConns(time.Hour)
	deaf.heartbeat("A", t0)
	deaf.heartbeat("B", t0)
	deaf.event(connEvent("B", 1, "alice"), true, t0)
	if n, ok := deaf.take("alice", connID{"A", 100}, 1, t0.Add(10*time.Minute)); ok || n != 1 {
		t.Fatalf("a replica that heard nothing for 10 min: alice %d, %v; want her connection still counted", n, ok)
	}
}

// TestConnsPending: a sign-in allowed (here, or by another replica whose
// note arrived) counts until its own connect event, and only its own:
// another connection's event, here or allowed elsewhere, leaves it
// counted. A note of a connection already open or closed, or of a
// sign-in already counted, adds nothing; pending sign-ins expire after
// pendingFor, and are swept even for keys that never sign in here again.
func TestConnsPending(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	a, b, x := connID{"N1", 1}, connID{"N2", 1}, connID{"N1", 2}
	count := func(c *conns, at time.Time) int {
		t.Helper()
		n, _ := c.take("alice", connID{"N9", 99}, 0, at) // a cap of 0 takes nothing
		return n
	}

	t.Run("connect of another connection", func(t *testing.T) {
		c := newConns(time.Hour)
		if _, ok := c.take("alice", a, 2, t0); !ok {
			t.Fatal("first sign-in refused")
		}
		// x was allowed by another replica, whose note has not arrived.
		c.event(connEvent(x.server, x.id, "alice"), true, t0)
		if n, ok := c.take("alice", b, 2, t0); ok || n != 2 {
			t.Fatalf("after x connected, a still on its way: %d, %v; want 2 counted, refused", n, ok)
		}
		c.event(connEvent(a.server, a.id, "alice"), true, t0)
		if n := count(c, t0); n != 2 {
			t.Fatalf("a and x connected: counted %d, want 2", n)
		}
	})

	t.Run("a peer's note", func(t *testing.T) {
		c := newConns(time.Hour)
		c.note("alice", b, t0)
		if n, ok := c.take("alice", a, 1, t0); ok || n != 1 {
			t.Fatalf("at the cap of 1 by a peer's sign-in: %d, %v; want refused", n, ok)
		}
		c.event(connEvent(b.server, b.id, "alice"), true, t0)
		if n := count(c, t0); n != 1 {
			t.Fatalf("the noted sign-in connected: counted %d, want 1", n)
		}
	})

	t.Run("note of an open connection", func(t *testing.T) {
		c := newConns(time.Hour)
		c.event(connEvent(x.server, x.id, "alice"), true, t0)
		c.note("alice", x, t0) // the note came after the connect event
		if n := count(c, t0); n != 1 {
			t.Fatalf("x open, then its note: counted %d, want 1", n)
		}
		// b opened and closed before its note arrived (or this
		// replica's own note of it came back late).
		c.event(connEvent(b.server, b.id, "alice"), true, t0)
		c.event(connEvent(b.server, b.id, "alice"), false, t0)
		c.note("alice", b, t0.Add(time.Second))
		if n := count(c, t0.Add(time.Second)); n != 1 {
			t.Fatalf("b closed, then its note: counted %d, want 1", n)
		}
	})

	t.Run("own note", func(t *testing.T) {
		c := newConns(time.Hour)
		c.take("alice", a, 5, t0)
		c.note("alice", a, t0.Add(4*time.Second))
		if n := count(c, t0.Add(4*time.Second)); n != 1 {
			t.Fatalf("a taken, then its own note: counted %d, want 1", n)
		}
		if n := count(c, t0.Add(pendingFor+time.Second)); n != 0 {
			t.Fatalf("a's note did not restart its time: counted %d after pendingFor, want 0", n)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		c := newConns(time.Hour)
		c.take("alice", a, 5, t0)
		c.note("alice", b, t0.Add(time.Second))
		if n := count(c, t0.Add(pendingFor)); n != 2 {
			t.Fatalf("within pendingFor: counted %d, want 2", n)
		}
		if n := count(c, t0.Add(pendingFor+time.Second/2)); n != 1 {
			t.Fatalf("a expired, b not yet: counted %d, want 1", n)
		}
		if n := count(c, t0.Add(pendingFor+2*time.Second)); n != 0 {
			t.Fatalf("both expired: counted %d, want 0", n)
		}
		// Notes of keys that never sign in here go too.
		c.note("bob", a, t0)
		c.note("carol", b, t0.Add(pendingFor+3*time.Second))
		c.note("dave", b, t0.Add(2*pendingFor+4*time.Second))
		if len(c.pending) != 1 || c.pending["dave"] == nil {
			t.Fatalf("pending after the sweep: %v, want only dave's", c.pending)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		c := newConns(time.Hour)
		c.take("alice", a, 5, t0)
		c.event(connEvent(a.server, a.id, "alice"), true, t0)
		c.note("alice", b, t0)
		c.event(connEvent(a.server, a.id, "alice"), false, t0)
		if n := count(c, t0); n != 1 {
			t.Fatalf("a closed, b pending: counted %d, want 1", n)
		}
		// b's connect event was lost: its disconnect still removes it.
		c.event(connEvent(b.server, b.id, "alice"), false, t0)
		if n := count(c, t0); n != 0 {
			t.Fatalf("a and b closed: counted %d, want 0", n)
		}
	})
}

// TestConnsDisconnectFirst: a connection that closes at once can have its
// disconnect event applied before its connect event (each subscription's
// handler runs on its own goroutine); it must not then count as open,
// here for good.
func TestConnsDisconnectFirst(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := newConns(time.Hour)
	if _, ok := c.take("alice", connID{"N1", 1}, 1, t0); !ok {
		t.Fatal("first sign-in refused")
	}
	c.event(connEvent("N1", 1, "alice"), false, t0)
	c.event(connEvent("N1", 1, "alice"), true, t0)
	if n, ok := c.take("alice", connID{"N1", 2}, 1, t0.Add(time.Second)); !ok {
		t.Fatalf("alice's only connection closed (events out of order): %d counted, refused", n)
	}
	// The closed connections are forgotten in time.
	c.event(connEvent("N1", 3, "bob"), true, t0.Add(3*closedFor))
	if len(c.closed) != 0 {
		t.Fatalf("closed after 3*closedFor: %v, want none", c.closed)
	}
}

// TestConnsOpenExpire: a connection whose disconnect event never came
// counts as open for maxAge (its JWT's lifetime and a margin) and no
// longer, for a key that signs in again and for one that does not; forget
// drops every open connection and keeps the sign-ins pending.
func TestConnsOpenExpire(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := newConns(time.Hour)
	c.event(connEvent("N1", 1, "alice"), true, t0)
	c.event(connEvent("N1", 2, "bob"), true, t0)
	if n, ok := c.take("alice", connID{"N1", 3}, 1, t0.Add(time.Hour)); ok || n != 1 {
		t.Fatalf("alice at her cap of 1, maxAge after her connect event: %d, %v; want refused", n, ok)
	}
	if n, ok := c.take("alice", connID{"N1", 3}, 1, t0.Add(time.Hour+time.Second)); !ok || n != 0 {
		t.Fatalf("alice past maxAge: %d, %v; want her connection dropped", n, ok)
	}
	c.heartbeat("N1", t0.Add(time.Hour+expiryMargin+time.Second))
	c.note("carol", connID{"N1", 4}, t0.Add(time.Hour+expiryMargin+time.Second)) // sweeps
	if _, ok := c.open["bob"]; ok {
		t.Fatalf("bob's connection, past maxAge, still held: %v", c.open)
	}

	c = newConns(time.Hour)
	c.event(connEvent("N1", 1, "alice"), true, t0)
	c.take("alice", connID{"N1", 2}, 5, t0)
	c.forget()
	if n, _ := c.take("alice", connID{"N1", 3}, 0, t0); n != 1 {
		t.Fatalf("after forget: counted %d, want only the sign-in pending", n)
	}
}

func TestParseAdmittedNote(t *testing.T) {
	for data, ok := range map[string]bool{
		`{"handle":"alice@kez.test","server":"NABC","client":7}`:  true,
		`{"handle":"alice@kez.test","client":7}`:                  false,
		`{"server":"NABC","client":7}`:                            false,
		`{"handle":"alice@kez.test","server":"NABC","client":-1}`: false,
		`nope`: false,
	} {
		if _, err := parseAdmittedNote([]byte(data)); (err == nil) != ok {
			t.Errorf("parseAdmittedNote(%s) = %v, want ok %v", data, err, ok)
		}
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
