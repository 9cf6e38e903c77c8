package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// lookupProxy is the home server seen through a proxy that answers the
// look-up of some keys (GET /v1/k/<key>) with a bad answer of its own:
// a replica that lags, fails, or a page that is not the server's.
type lookupProxy struct {
	*httptest.Server
	mu  sync.Mutex
	bad map[string]badAnswer // by key hex
}

// badAnswer is what the proxy answers for a key, times times (-1: always).
type badAnswer struct {
	status      int
	contentType string
	body        string
	times       int
}

var (
	answerNotFound = badAnswer{http.StatusNotFound, "application/json", `{"error":"not found","code":"not_found"}`, 0}
	answerPage     = badAnswer{http.StatusOK, "text/html", "<html><body>Sign in to the hotel Wi-Fi</body></html>", 0}
	answerDown     = badAnswer{http.StatusServiceUnavailable, "application/json", `{"error":"unavailable","code":"unavailable"}`, 0}
)

func newLookupProxy(t *testing.T, st *clienttest.Stack) *lookupProxy {
	t.Helper()
	target, err := url.Parse(st.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &lookupProxy{bad: map[string]badAnswer{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := p.take(r.URL.Path); ok {
			w.Header().Set("Content-Type", a.contentType)
			w.WriteHeader(a.status)
			w.Write([]byte(a.body))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// set makes the proxy answer a for key, times times (-1: until set again).
func (p *lookupProxy) set(key kez.PublicKey, a badAnswer, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a.times = times
	p.bad[key.Hex()] = a
}

func (p *lookupProxy) take(path string) (badAnswer, bool) {
	hex, ok := strings.CutPrefix(path, "/v1/k/")
	if !ok {
		return badAnswer{}, false
	}
	hex = strings.TrimPrefix(hex, "ed25519:")
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.bad[hex]
	if !ok || a.times == 0 {
		return badAnswer{}, false
	}
	if a.times > 0 {
		a.times--
		p.bad[hex] = a
	}
	return a, true
}

// newUserVia registers a user whose client asks the home server through
// server (a proxy of st's).
func newUserVia(t *testing.T, server, name string) *client.Client {
	t.Helper()
	c := newClientVia(t, server)
	register(t, c, name)
	return c
}

func primary(t *testing.T, c *client.Client) kez.PublicKey {
	t.Helper()
	a, err := c.Account()
	if err != nil {
		t.Fatal(err)
	}
	return a.Primary
}

// listenEvents is listenOnce with the held messages too.
func listenEvents(t *testing.T, c *client.Client) (got []client.Entry, dropped []client.Dropped, held []client.Held) {
	t.Helper()
	err := c.Listen(context.Background(), client.ListenOptions{Once: true}, func(ev client.Event) {
		switch {
		case ev.Entry != nil:
			got = append(got, *ev.Entry)
		case ev.Dropped != nil:
			dropped = append(dropped, *ev.Dropped)
		case ev.Held != nil:
			held = append(held, *ev.Held)
		}
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return got, dropped, held
}

// TestListenHoldsUnidentifiedSender: when the home server does not
// identify a sender's key (a replica whose projection lags answers 404,
// a replica that fails answers 503, a proxy answers a page of its own),
// the message is neither dropped nor acked: the user is told it is held,
// and the next listen, the server answering again, takes it once. The
// door accepted it from a registered key; dropping it lost it for good.
func TestListenHoldsUnidentifiedSender(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	proxy := newLookupProxy(t, st)
	bob := newUserVia(t, proxy.URL, "bob")
	for _, tt := range []struct {
		sender string
		answer badAnswer
	}{
		{"alice", answerNotFound},
		{"carol", answerPage},
		{"dave", answerDown},
	} {
		c, _ := newUser(t, st, tt.sender)
		proxy.set(primary(t, c), tt.answer, 1) // its second message is looked up fine
		for i := range 2 {
			if _, err := c.SendText(ctx, handle(t, "bob"), fmt.Sprintf("%s %d", tt.sender, i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A sender's later message is not taken past a held one: its ack
	// would remove the held one too.
	got, dropped, held := listenEvents(t, bob)
	if len(got) != 0 || len(dropped) != 0 {
		t.Fatalf("first listen: got %+v, dropped %+v; want all held", got, dropped)
	}
	if len(held) != 3 {
		t.Fatalf("first listen: held %+v; want each sender's first message", held)
	}
	if !strings.Contains(held[0].Reason, "no handle") || !strings.Contains(held[1].Reason, "not the expected JSON") ||
		!strings.Contains(held[2].Reason, "unavailable") {
		t.Errorf("held reasons: %q, %q, %q", held[0].Reason, held[1].Reason, held[2].Reason)
	}

	got, dropped, held = listenEvents(t, bob)
	if len(dropped) != 0 || len(held) != 0 {
		t.Fatalf("second listen: dropped %+v, held %+v", dropped, held)
	}
	var bodies []string
	for _, e := range got {
		bodies = append(bodies, e.Body)
	}
	if strings.Join(bodies, ",") != "alice 1,alice 2,carol 1,carol 2,dave 1,dave 2" {
		t.Errorf("second listen got %q; want each message once", bodies)
	}
	unread(t, bob, 0)
}

// unread checks the unread messages of c's inbox.
func unread(t *testing.T, c *client.Client, want uint64) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Unread != want || st.NATSError != "" {
		t.Errorf("unread: %d (%s); want %d", st.Unread, st.NATSError, want)
	}
}

// carolUnknown starts a stack with alice, carol and bob, whose home
// server is reached through a proxy that answers 404 for carol's key
// until told otherwise.
func carolUnknown(t *testing.T) (proxy *lookupProxy, bob, alice, carol *client.Client) {
	t.Helper()
	st := clienttest.Start(t)
	proxy = newLookupProxy(t, st)
	bob = newUserVia(t, proxy.URL, "bob")
	alice, _ = newUser(t, st, "alice")
	carol, _ = newUser(t, st, "carol")
	proxy.set(primary(t, carol), answerNotFound, -1)
	return proxy, bob, alice, carol
}

// TestFollowHeldSenderRetried: a sender the home server does not
// identify holds only its own messages. While Listen follows the inbox,
// another sender's message arrives and is acked; the held sender is told
// once, its messages stay unread, and once the server names it they
// arrive, in order, without a new listen (the follower tries again with
// backoff).
func TestFollowHeldSenderRetried(t *testing.T) {
	ctx := context.Background()
	proxy, bob, alice, carol := carolUnknown(t)
	send := func(c *client.Client, text string) {
		t.Helper()
		if _, err := c.SendText(ctx, handle(t, "bob"), text); err != nil {
			t.Fatal(err)
		}
	}
	send(carol, "carol 1")
	send(carol, "carol 2")
	send(alice, "alice 1")

	events := make(chan client.Event, 64)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bob.Listen(lctx, client.ListenOptions{}, func(ev client.Event) { events <- ev }) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listen: %v", err)
		}
	}
	defer stop()
	next := func(what string) client.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case err := <-done:
			t.Fatalf("listen ended waiting for %s: %v", what, err)
		case <-time.After(15 * time.Second):
			t.Fatalf("no event within 15s waiting for %s", what)
		}
		return client.Event{}
	}

	var heldSeen, aliceSeen bool
	for !heldSeen || !aliceSeen {
		ev := next("the held note and alice's message")
		switch {
		case ev.Held != nil && ev.Held.From == primary(t, carol).String():
			if heldSeen {
				t.Errorf("carol's hold told twice: %+v", ev.Held)
			}
			heldSeen = true
		case ev.Entry != nil && ev.Entry.Body == "alice 1":
			aliceSeen = true
		default:
			t.Fatalf("event %+v %+v %+v; want carol held and alice's message", ev.Entry, ev.Dropped, ev.Held)
		}
	}
	// A live message of the held sender waits with the others.
	send(carol, "carol 3")
	// The home server catches up: the follower's next try takes carol's
	// messages, in order, each once.
	proxy.set(primary(t, carol), answerNotFound, 0)
	for _, want := range []string{"carol 1", "carol 2", "carol 3"} {
		ev := next(want)
		if ev.Entry == nil || ev.Entry.Body != want {
			t.Fatalf("event %+v %+v %+v; want %q", ev.Entry, ev.Dropped, ev.Held, want)
		}
	}
}

// TestListenHeldSenderKeepsItsMessages: a sender whose key the home server
// never names cannot wedge the inbox: every other sender's message is
// taken and acked, and the held sender's stay unread, none acked by a
// later message of its own.
func TestListenHeldSenderKeepsItsMessages(t *testing.T) {
	ctx := context.Background()
	_, bob, alice, carol := carolUnknown(t)
	for _, m := range []struct {
		from *client.Client
		text string
	}{{carol, "carol 1"}, {alice, "alice 1"}, {carol, "carol 2"}, {alice, "alice 2"}} {
		if _, err := m.from.SendText(ctx, handle(t, "bob"), m.text); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		got, dropped, held := listenEvents(t, bob)
		if len(dropped) != 0 || len(held) != 1 || held[0].From != primary(t, carol).String() {
			t.Fatalf("dropped %+v, held %+v; want carol's first message held", dropped, held)
		}
		for _, e := range got {
			if e.Peer.Local() != "alice" {
				t.Errorf("took %q from %s", e.Body, e.Peer)
			}
		}
	}
	unread(t, bob, 2) // carol's
	h, err := bob.History(kez.Handle{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 {
		t.Errorf("history holds %d messages; want alice's 2", len(h))
	}
}
