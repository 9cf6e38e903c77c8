package callout_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/nats/natskeys"
)

// The per-key cap heals when connection events are lost: core NATS
// drops the events published while a replica's tracking connection is
// away, and a lost disconnect event must not keep a user at the cap
// refused with nothing open.

// cutProxy forwards TCP connections to target; cut drops those it
// forwards and refuses new ones until heal.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// startCutReplica starts a callout replica whose tracking connection goes
// through a proxy the test cuts; reconnected receives each time that
// connection is back (after the replica's own reaction to it).
func startCutReplica(t *testing.T, st *stack, mut func(*callout.Config)) (r *replica, p *cutProxy, reconnected <-chan struct{}) {
	t.Helper()
	p = newCutProxy(t, strings.TrimPrefix(st.ns.ClientURL(), "nats://"))
	opt, err := nats.NkeyOptionFromSeed(st.ns.KeyFile(natskeys.KeyChatServer))
	if err != nil {
		t.Fatal(err)
	}
	back := make(chan struct{}, 8)
	track, err := nats.Connect(p.url(), opt, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { back <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(track.Close)
	return st.startTracking(t, st.ns, track, mut), p, back
}

// trySignIn signs in as key once and closes the connection at once: it
// reports whether the sign-in was allowed, failing the test on anything
// but an allowed or a refused one.
func trySignIn(t *testing.T, st *stack, key *kez.PrivateKey) bool {
	t.Helper()
	nc, err := signIn(st.ns.ClientURL(), key, nats.MaxReconnects(0))
	if err != nil && !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("sign-in: %v, want allowed or an authorization violation", err)
	}
	if nc != nil {
		nc.Close()
	}
	return err == nil
}

// TestCapHealsAfterReconnect: the replica's tracking connection drops
// while the broker stays up, and alice's connections close meanwhile:
// their disconnect events are lost. When the tracking connection is
// back, the replica counts afresh, so alice, at her cap before and with
// nothing open now, signs in again at once, not after her connections'
// JWTs would have expired (an hour); and the connections made after
// count against the cap again. Before, the replica counted the closed
// connections until it restarted.
func TestCapHealsAfterReconnect(t *testing.T) {
	st := newStack(t, 0, nil)
	r, proxy, reconnected := startCutReplica(t, st, func(c *callout.Config) { c.MaxConnsPerKey = 3 })
	alice := st.register(t, "alice")
	handle := "alice@" + domain
	// A connection of the chat server's that the cut does not touch
	// sees the disconnect events the replica misses.
	watch := st.ns.Connect(natskeys.KeyChatServer)
	_, disconnect := callout.ConnEventSubjects("USERS")
	closed := make(chan struct{}, 8)
	if _, err := watch.Subscribe(disconnect, func(m *nats.Msg) {
		if ev, err := callout.ParseConnEvent(m.Data); err == nil && ev.Client.User == handle {
			closed <- struct{}{}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}

	openAll := func() []*nats.Conn {
		t.Helper()
		var open []*nats.Conn
		for i := range 3 {
			nc, err := signIn(st.ns.ClientURL(), alice, nats.MaxReconnects(0))
			if err != nil {
				t.Fatalf("connection %d of 3: %v", i+1, err)
			}
			t.Cleanup(nc.Close)
			open = append(open, nc)
		}
		waitFor(t, func() bool { return r.svc.Opened(handle) == 3 })
		return open
	}
	open := openAll()
	if trySignIn(t, st, alice) {
		t.Fatal("a 4th connection allowed, with 3 open")
	}
	proxy.cut()
	for _, nc := range open {
		nc.Close()
	}
	for i := range 3 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of alice's 3 disconnect events published in 10 s", i)
		}
	}
	if n := r.svc.Opened(handle); n != 3 {
		t.Fatalf("the replica counts %d of alice's connections open while its events are cut, want the 3 it last heard of", n)
	}
	proxy.heal()
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("the tracking connection is not back 10 s after the proxy healed")
	}
	start := time.Now()
	waitFor(t, func() bool { return trySignIn(t, st, alice) })
	t.Logf("alice signed in %v after the tracking connection came back", time.Since(start).Round(time.Millisecond))

	// Counting afresh, the replica holds alice to her cap again.
	openAll()
	if trySignIn(t, st, alice) {
		t.Fatal("a 4th connection allowed after the reconnect, with 3 open")
	}
}

// TestCapForgetsExpiredConnections: the replica's tracking connection is
// cut and stays cut, so that alice's disconnect event never arrives: her
// connection, closed by the broker when its JWT expires, counts no longer
// than that lifetime (Config.TTL, here 3 s) and a margin (a minute,
// shortened here). Before, it counted until the replica restarted.
func TestCapForgetsExpiredConnections(t *testing.T) {
	const ttl = 3 * time.Second
	st := newStack(t, 0, nil)
	r, proxy, _ := startCutReplica(t, st, func(c *callout.Config) { c.MaxConnsPerKey, c.TTL = 1, ttl })
	r.svc.SetExpiryMargin(500 * time.Millisecond)
	alice := st.register(t, "alice")
	handle := "alice@" + domain
	closed := make(chan struct{})
	nc, err := signIn(st.ns.ClientURL(), alice, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // "authentication expired", expected
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitFor(t, func() bool { return r.svc.Opened(handle) == 1 })
	opened := time.Now()
	proxy.cut()
	if trySignIn(t, st, alice) {
		t.Fatal("a 2nd connection allowed, with 1 open and a cap of 1")
	}
	select {
	case <-closed:
	case <-time.After(2 * ttl):
		t.Fatalf("the broker did not close alice's connection within %v of its JWT's TTL", 2*ttl)
	}
	t.Logf("the broker closed alice's connection %v after the replica counted it", time.Since(opened).Round(time.Millisecond))
	for deadline := time.Now().Add(2 * ttl); !trySignIn(t, st, alice); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("alice still refused %v after her only connection was counted (TTL %v): the replica counts %d open",
				time.Since(opened).Round(time.Millisecond), ttl, r.svc.Opened(handle))
		}
	}
	if d := time.Since(opened); d < ttl {
		t.Fatalf("alice's connection forgotten %v after it was counted, before her JWT's TTL (%v)", d, ttl)
	}
	t.Logf("alice signed in again %v after her connection was counted", time.Since(opened).Round(time.Millisecond))
}

// TestCapCountsAfreshAfterSlowConsumer: when nats.go drops messages
// behind the replica's handlers (a slow consumer: more than 64 MiB
// waiting on one subscription), events may have been lost, and the
// replica counts afresh: alice's connection, still open, is no longer
// counted (the under-count of a replica that starts), rather than
// a closed one being counted for an hour.
func TestCapCountsAfreshAfterSlowConsumer(t *testing.T) {
	st := newStack(t, 0, nil)
	slow := make(chan struct{}, 1)
	track := st.ns.Connect(natskeys.KeyChatServer, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			select {
			case slow <- struct{}{}:
			default:
			}
		}
	}))
	r := st.startTracking(t, st.ns, track, func(c *callout.Config) { c.MaxConnsPerKey = 1 })
	alice := st.register(t, "alice")
	handle := "alice@" + domain
	connect(t, st, alice)
	waitFor(t, func() bool { return r.svc.Opened(handle) == 1 })

	// With the replica's handlers held (the first note waits for
	// them), 70 notes of nearly 1 MiB (not JSON: ignored) overflow the
	// notes' subscription.
	release := r.svc.HoldCounts()
	held := true
	defer func() {
		if held {
			release()
		}
	}()
	pub := st.ns.Connect(natskeys.KeyChatServer)
	if err := pub.Publish(callout.AdmittedSubject, []byte(`{"handle":"bob@kez.test","server":"NABC","client":1}`)); err != nil {
		t.Fatal(err)
	}
	note := make([]byte, 1<<20-4096)
	const n = 70
	for range n {
		if err := pub.Publish(callout.AdmittedSubject, note); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return track.Stats().InBytes >= n*uint64(len(note)) })
	held = false
	release()
	select {
	case <-slow:
	case <-time.After(10 * time.Second):
		t.Fatal("no slow consumer reported after 70 MiB held up")
	}
	if got := r.svc.Opened(handle); got != 0 {
		t.Fatalf("after the slow consumer, the replica counts %d of alice's connections open, want 0 (counted afresh)", got)
	}
}
