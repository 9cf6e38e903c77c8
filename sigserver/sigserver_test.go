package sigserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/web/webtest"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/sigserver"
)

func TestAppendAndRead(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	alice := keztest.NewKey(t)
	now := time.Now()
	var events []sigchain.Event
	for _, s := range []struct {
		typ  string
		body any
	}{
		{sigchain.TypeAddEndpoint, sigchain.NATSEndpoint{URL: "nats://nats.kez.test:4222", Inbox: sigchain.Inbox(alice.Public())}},
		{sigchain.TypeAddClaim, sigchain.Claim{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/1"}},
		{sigchain.TypeSetSharedFiles, sigchain.SharedFiles{Manifest: strings.Repeat("ab", 32), Size: 42}},
		{"future_type", map[string]string{"anything": "kept"}},
		{sigchain.TypeRevokeClaim, sigchain.Claim{Kind: "github", Value: "alice"}},
	} {
		var prev *sigchain.Event
		if len(events) > 0 {
			prev = &events[len(events)-1]
		}
		e, err := sigchain.Next(alice, prev, s.typ, s.body, now)
		if err != nil {
			t.Fatalf("Next(%s): %v", s.typ, err)
		}
		a := post(t, srv.URL(), alice.Public(), wireOf(t, e))
		if a.Status != http.StatusCreated {
			t.Fatalf("append %s: %d %s", s.typ, a.Status, a.Body)
		}
		if got := bytes.TrimSpace(a.Body); !bytes.Equal(got, wireOf(t, e)) {
			t.Errorf("append answered %s, want the event %s", got, wireOf(t, e))
		}
		if want := fmt.Sprintf("/v1/sigchains/ed25519/%s?since=%d", alice.Public().Hex(), e.Seqno()); a.Header.Get("Location") != want {
			t.Errorf("Location = %q, want %q", a.Header.Get("Location"), want)
		}
		events = append(events, e)
	}

	got := fetch(t, srv.URL(), alice.Public(), "")
	st, err := sigchain.VerifyChain(alice.Public(), got)
	if err != nil {
		t.Fatalf("served chain does not verify: %v", err)
	}
	if st.Tail != events[4].Pin() || len(st.NATS) != 1 || len(st.Claims) != 0 || st.SharedFiles == nil {
		t.Fatalf("state = %+v", st)
	}
	for i := range got {
		if !bytes.Equal(wireOf(t, got[i]), wireOf(t, events[i])) {
			t.Errorf("event %d served as %s, posted %s", i+1, wireOf(t, got[i]), wireOf(t, events[i]))
		}
	}
	// since is inclusive: a client pinned at seqno N asks for ?since=N.
	for _, tt := range []struct {
		since string
		first uint64
		n     int
	}{{"0", 1, 5}, {"1", 1, 5}, {"3", 3, 3}, {"5", 5, 1}, {"6", 0, 0}, {"99999", 0, 0}} {
		tail := fetch(t, srv.URL(), alice.Public(), tt.since)
		if len(tail) != tt.n || (tt.n > 0 && tail[0].Seqno() != tt.first) {
			t.Errorf("?since=%s = %d events from %d, want %d from %d", tt.since, len(tail), firstSeqno(tail), tt.n, tt.first)
		}
		if tt.n > 0 {
			pinned := sigchain.State{Key: alice.Public(), Tail: events[tt.first-1].Pin()}
			if _, err := pinned.Extend(tail); err != nil {
				t.Errorf("?since=%s does not extend a state pinned at %d: %v", tt.since, tt.first, err)
			}
		}
	}
	// An empty chain is [] with 200.
	if a := webtest.Do(t, http.MethodGet, chainURL(srv.URL(), keztest.NewKey(t).Public()), nil); a.Status != http.StatusOK || string(bytes.TrimSpace(a.Body)) != "[]" {
		t.Errorf("empty chain = %d %s, want 200 []", a.Status, a.Body)
	}

	h := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil)
	if h.Status != http.StatusOK || !strings.Contains(string(h.Body), `"store":"ok"`) {
		t.Errorf("healthz = %d %s", h.Status, h.Body)
	}
	m := webtest.Do(t, http.MethodGet, srv.URL()+"/metrics", nil)
	if !strings.Contains(string(m.Body), `kez_sigchain_appends_total{result="created"} 5`) {
		t.Errorf("metrics lack the append count:\n%s", m.Body)
	}
}

func firstSeqno(events []sigchain.Event) uint64 {
	if len(events) == 0 {
		return 0
	}
	return events[0].Seqno()
}

func TestRetryOfStoredEvent(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	k := keztest.NewKey(t)
	events := grow(t, k, nil, 2, "a")
	appendAll(t, srv.URL(), events...)
	// The answer to the last append was lost; the client sends it again.
	a := post(t, srv.URL(), k.Public(), wireOf(t, events[1]))
	if a.Status != http.StatusOK || !bytes.Equal(bytes.TrimSpace(a.Body), wireOf(t, events[1])) {
		t.Fatalf("retry = %d %s, want 200 with the event", a.Status, a.Body)
	}
	// An older event is no retry: its seqno is taken.
	if a := post(t, srv.URL(), k.Public(), wireOf(t, events[0])); a.Status != http.StatusConflict || a.Code(t) != "wrong_seqno" {
		t.Fatalf("old event again = %d %s, want 409 wrong_seqno", a.Status, a.Body)
	}
	if n := storedMsgs(t, ns); n != 2 {
		t.Fatalf("stream holds %d events, want 2", n)
	}
}

func TestRejections(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	srv := startServer(t, cfg)
	alice, mallory := keztest.NewKey(t), keztest.NewKey(t)
	stored := grow(t, alice, nil, 2, "stored")
	appendAll(t, srv.URL(), stored...)
	next := grow(t, alice, stored, 1, "next")[2] // a valid seqno 3

	flipped := wireOf(t, next)
	var w struct{ Payload, Sig []byte }
	if err := json.Unmarshal(flipped, &w); err != nil {
		t.Fatal(err)
	}
	badSig := append([]byte(nil), w.Sig...)
	badSig[10] ^= 1
	byMallory := mallory.Sign(kez.PurposeSigchain, w.Payload)
	forkedPrev := grow(t, alice, nil, 3, "fork")[2] // seqno 3 after another seqno 2
	future, err := sigchain.Next(alice, &stored[1], sigchain.TypeAddClaim, sigchain.Claim{Kind: "dns", Value: "later.example", Proof: "TXT"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	oversized := append(wireOf(t, next)[:len(wireOf(t, next))-1], []byte(`,"pad":"`+strings.Repeat("x", sigchain.MaxEventSize)+`"}`)...)

	cases := []struct {
		name   string
		key    kez.PublicKey
		path   string // instead of key, if set
		body   []byte
		status int
		code   string
	}{
		{"bad signature", alice.Public(), "", wireForm(w.Payload, badSig), 401, "bad_signature"},
		{"signed by another key", alice.Public(), "", wireForm(w.Payload, byMallory), 401, "bad_signature"},
		{"wrong seqno", alice.Public(), "", wireOf(t, grow(t, alice, stored, 2, "skip")[3]), 409, "wrong_seqno"},
		{"seqno taken", alice.Public(), "", wireOf(t, grow(t, alice, stored[:1], 1, "late")[1]), 409, "wrong_seqno"},
		{"wrong prev", alice.Public(), "", wireOf(t, forkedPrev), 409, "wrong_prev"},
		{"ctime ahead of the clock", alice.Public(), "", wireOf(t, future), 400, "bad_ctime"},
		{"oversized", alice.Public(), "", oversized, 413, "too_large"},
		{"malformed json", alice.Public(), "", []byte(`{"payload":`), 400, "malformed_event"},
		{"empty body", alice.Public(), "", nil, 400, "malformed_event"},
		{"unknown field", alice.Public(), "", []byte(`{"payload":"e30=","sig":"","x":1}`), 400, "malformed_event"},
		{"wrong key in the URL", mallory.Public(), "", wireOf(t, next), 400, "wrong_chain"},
		{"invalid key in the URL", kez.PublicKey{}, "/v1/sigchains/ed25519/zz/events", wireOf(t, next), 400, "invalid_key"},
		{"upper-case key in the URL", kez.PublicKey{}, "/v1/sigchains/ed25519/" + strings.ToUpper(alice.Public().Hex()) + "/events", wireOf(t, next), 400, "invalid_key"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var a webtest.Answer
			if tt.path != "" {
				a = webtest.Do(t, http.MethodPost, srv.URL()+tt.path, tt.body)
			} else {
				a = post(t, srv.URL(), tt.key, tt.body)
			}
			if a.Status != tt.status || a.Code(t) != tt.code {
				t.Errorf("POST = %d %s, want %d %s", a.Status, a.Body, tt.status, tt.code)
			}
			if a.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q", a.Header.Get("Content-Type"))
			}
		})
	}
	gets := []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/sigchains/ed25519/zz", 400, "invalid_key"},
		{"/v1/sigchains/ed25519/" + alice.Public().Hex() + "?since=-1", 400, "invalid_request"},
		{"/v1/sigchains/ed25519/" + alice.Public().Hex() + "?since=two", 400, "invalid_request"},
		{"/v1/sigchains/ed25519:" + alice.Public().Hex(), 404, "not_found"},
		{"/v2/nothing", 404, "not_found"},
	}
	for _, g := range gets {
		a := webtest.Do(t, http.MethodGet, srv.URL()+g.path, nil)
		if a.Status != g.status || a.Code(t) != g.code {
			t.Errorf("GET %s = %d %s, want %d %s", g.path, a.Status, a.Body, g.status, g.code)
		}
	}
	// Refusals stored nothing, and the valid event still goes in.
	if n := storedMsgs(t, ns); n != 2 {
		t.Fatalf("stream holds %d events after refusals, want 2", n)
	}
	appendAll(t, srv.URL(), next)
	if _, err := sigchain.VerifyChain(alice.Public(), fetch(t, srv.URL(), alice.Public(), "")); err != nil {
		t.Fatal(err)
	}
}

func TestLimits(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.Streams.AppendLimit = 3
	cfg.MaxEvents = 4
	a, b := startServer(t, cfg), startServer(t, cfg)

	// Three appends per window, counted across both replicas.
	k := keztest.NewKey(t)
	events := grow(t, k, nil, 5, "x")
	appendAll(t, a.URL(), events[0])
	appendAll(t, b.URL(), events[1])
	appendAll(t, a.URL(), events[2])
	r := post(t, b.URL(), k.Public(), wireOf(t, events[3]))
	if r.Status != http.StatusTooManyRequests || r.Code(t) != "rate_limited" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th append in the window = %d %s, want 429 rate_limited with Retry-After", r.Status, r.Body)
	}
	// Refused events do not count: a chain refused for a bad signature
	// keeps its whole quota.
	k2 := keztest.NewKey(t)
	other := grow(t, k2, nil, 5, "y")
	for range 5 {
		if r := post(t, a.URL(), k2.Public(), wireOf(t, events[0])); r.Status != http.StatusBadRequest {
			t.Fatalf("event of another chain: %d %s", r.Status, r.Body)
		}
	}
	appendAll(t, a.URL(), other[:3]...)
	if n := storedMsgs(t, ns); n != 6 {
		t.Fatalf("stream holds %d events, want 6", n)
	}

	// The total per chain, with a limit that allows the rate.
	cfg.Streams.AppendLimit = 1000
	c := startServer(t, cfg) // updates the rate-limit stream for every replica
	k3 := keztest.NewKey(t)
	full := grow(t, k3, nil, 5, "z")
	appendAll(t, c.URL(), full[:4]...)
	r = post(t, c.URL(), k3.Public(), wireOf(t, full[4]))
	if r.Status != http.StatusTooManyRequests || r.Code(t) != "chain_full" {
		t.Fatalf("5th event of a chain limited to 4 = %d %s, want 429 chain_full", r.Status, r.Body)
	}
	if got := fetch(t, c.URL(), k3.Public(), ""); len(got) != 4 {
		t.Fatalf("full chain holds %d events, want 4", len(got))
	}
}

func TestRequireRegistered(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.RequireRegistered = true
	srv := startServer(t, cfg)
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)

	// Before the home server created its projection, appends cannot be
	// checked: 503, and unhealthy.
	if a := post(t, srv.URL(), alice.Public(), wireOf(t, grow(t, alice, nil, 1, "a")[0])); a.Status != http.StatusServiceUnavailable || a.Code(t) != "unavailable" {
		t.Fatalf("append without a projection = %d %s, want 503", a.Status, a.Body)
	}
	if h := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil); h.Status != http.StatusServiceUnavailable || !strings.Contains(string(h.Body), `"registry":"failing"`) {
		t.Fatalf("healthz without a projection = %d %s", h.Status, h.Body)
	}

	home := chatserver.DefaultConfig()
	home.NATSURL, home.NATSNKeyFile, home.HTTPAddr = ns.ClientURL(), ns.KeyFile(natskeys.KeyChatServer), "127.0.0.1:0"
	home.Domain = "kez.test"
	hs, err := chatserver.Start(context.Background(), home, webtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close(context.Background()) })
	h, _ := kez.ParseHandle("alice", "kez.test")
	body, _ := json.Marshal(kez.NewRegistrationRequest(alice, h, time.Now()))
	if a := webtest.Do(t, http.MethodPost, hs.URL()+"/v1/register", body); a.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.Status, a.Body)
	}

	if h := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil); h.Status != http.StatusOK {
		t.Fatalf("healthz with a projection = %d %s", h.Status, h.Body)
	}
	appendAll(t, srv.URL(), grow(t, alice, nil, 1, "a")...)
	a := post(t, srv.URL(), bob.Public(), wireOf(t, grow(t, bob, nil, 1, "b")[0]))
	if a.Status != http.StatusForbidden || a.Code(t) != "not_registered" {
		t.Fatalf("unregistered key = %d %s, want 403 not_registered", a.Status, a.Body)
	}
	if n := storedMsgs(t, ns); n != 1 {
		t.Fatalf("stream holds %d events, want 1", n)
	}
}

// Competing events for the same seqno, posted at once through two
// replicas: JetStream lets exactly one in per seqno, whatever tail each
// replica read.
func TestConcurrentAppendsThroughTwoServers(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	servers := []*sigserver.Server{startServer(t, cfg), startServer(t, cfg)}
	k := keztest.NewKey(t)
	const n = 100
	var chain []sigchain.Event
	for round := range 3 {
		competitors := make([]sigchain.Event, n)
		for i := range competitors {
			competitors[i] = grow(t, k, chain, 1, fmt.Sprintf("r%d-c%d", round, i))[len(chain)]
		}
		type result struct {
			status int
			code   string
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				resp, err := http.Post(chainURL(servers[i%2].URL(), k.Public())+"/events", "application/json", bytes.NewReader(wireOf(t, competitors[i])))
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var e struct{ Code string }
				json.Unmarshal(b, &e)
				results[i] = result{resp.StatusCode, e.Code}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		codes := map[string]int{}
		for i, r := range results {
			switch {
			case r.status == http.StatusCreated:
				if winner >= 0 {
					t.Fatalf("round %d: both %d and %d stored", round, winner, i)
				}
				winner = i
			case r.status == http.StatusConflict && (r.code == "wrong_seqno" || r.code == "wrong_prev" || r.code == "conflict"):
				codes[r.code]++
			default:
				t.Fatalf("round %d, request %d: %d %s", round, i, r.status, r.code)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no append stored (%v)", round, codes)
		}
		t.Logf("seqno %d: one stored, conflicts %v", len(chain)+1, codes)
		chain = append(chain, competitors[winner])
	}
	for _, srv := range servers {
		got := fetch(t, srv.URL(), k.Public(), "")
		st, err := sigchain.VerifyChain(k.Public(), got)
		if err != nil || st.Tail != chain[2].Pin() {
			t.Fatalf("%s: chain of %d events, tail %v, %v; want the 3 winners", srv.URL(), len(got), st.Tail, err)
		}
	}
	if m := storedMsgs(t, ns); m != 3 {
		t.Fatalf("stream holds %d events, want 3", m)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := sigserver.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*sigserver.Config){
		func(c *sigserver.Config) { c.NATSURL = "" },
		func(c *sigserver.Config) { c.HTTPAddr = "" },
		func(c *sigserver.Config) { c.MaxEvents = 0 },
		func(c *sigserver.Config) { c.CtimeSkew = -time.Second },
		func(c *sigserver.Config) { c.Streams.Replicas = 0 },
	} {
		c := sigserver.DefaultConfig()
		mut(&c)
		if _, err := sigserver.Start(context.Background(), c, webtest.Logger(t)); !errors.Is(err, sigserver.ErrConfig) {
			t.Errorf("Start(%+v) = %v, want ErrConfig", c, err)
		}
	}
}
