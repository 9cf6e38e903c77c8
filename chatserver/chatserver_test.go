package chatserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/registry"
	"kez.lat/kez/streams"
	"kez.lat/kez/web/webtest"
)

const domain = "kez.test"

func testConfig(ns *natstest.Server) chatserver.Config {
	cfg := clienttest.ChatConfig(ns)
	cfg.Domain = domain
	cfg.PublicURL = "https://" + domain
	cfg.SigchainURL = "https://sig." + domain
	cfg.PublicNATS = "nats://nats." + domain + ":4222"
	cfg.Streams.RegisterLimit = 1000
	return cfg
}

func startServer(t testing.TB, cfg chatserver.Config) *chatserver.Server {
	t.Helper()
	srv, err := chatserver.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	waitHealthy(t, srv.URL())
	return srv
}

func waitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/v1/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s not healthy within 10s (last: %v)", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func regBody(t testing.TB, key *kez.PrivateKey, handle string) []byte {
	t.Helper()
	h, err := kez.ParseHandle(handle, domain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(kez.NewRegistrationRequest(key, h, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func register(t testing.TB, base string, body []byte) webtest.Answer {
	t.Helper()
	return webtest.Do(t, http.MethodPost, base+"/v1/register", body)
}

func TestRegisterAndLookUp(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	alice := keztest.NewKey(t)

	reqBody := regBody(t, alice, "Alice")
	a := register(t, srv.URL(), reqBody)
	if a.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.Status, a.Body)
	}
	var rec kez.Record
	if err := json.Unmarshal(a.Body, &rec); err != nil {
		t.Fatal(err)
	}
	want := kez.Record{
		Handle:      "alice@" + domain,
		Primary:     alice.Public().String(),
		SigchainURL: "https://sig." + domain + "/v1/sigchains/ed25519/" + alice.Public().Hex(),
		NATS:        kez.RecordNATS{URL: "nats://nats." + domain + ":4222", Inbox: "kez.inbox." + alice.Public().Hex()},
	}
	if rec.Handle != want.Handle || rec.Primary != want.Primary || rec.SigchainURL != want.SigchainURL || rec.NATS != want.NATS || rec.RegisteredAt == 0 {
		t.Errorf("record = %+v, want %+v", rec, want)
	}
	if bytes.Contains(a.Body, []byte(`"relays"`)) {
		t.Errorf("record of a server without relays lists some: %s", a.Body)
	}

	// Retrying the same signed body (as after a time-out) gets the same
	// answer, not a conflict.
	if again := register(t, srv.URL(), reqBody); again.Status != http.StatusCreated || !bytes.Equal(again.Body, a.Body) {
		t.Errorf("retry = %d %s, want 201 %s", again.Status, again.Body, a.Body)
	}

	// Read-your-writes: every form of the handle answers at once, and the
	// reverse look-up too.
	for _, path := range []string{"/v1/u/alice", "/v1/u/@alice", "/v1/u/alice@" + domain, "/v1/u/ALICE", "/v1/k/" + alice.Public().String(), "/v1/k/" + alice.Public().Hex()} {
		got := webtest.Do(t, http.MethodGet, srv.URL()+path, nil)
		if got.Status != http.StatusOK || !bytes.Equal(got.Body, a.Body) {
			t.Errorf("GET %s = %d %s, want 200 %s", path, got.Status, got.Body, a.Body)
		}
	}

	wf := webtest.Do(t, http.MethodGet, srv.URL()+"/.well-known/webfinger?resource=acct:alice@"+domain, nil)
	if wf.Status != http.StatusOK || wf.Header.Get("Content-Type") != "application/jrd+json" || wf.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("webfinger = %d %v %s", wf.Status, wf.Header, wf.Body)
	}
	if !strings.Contains(string(wf.Body), rec.SigchainURL) || !strings.Contains(string(wf.Body), rec.Primary) {
		t.Errorf("webfinger JRD lacks the sigchain or key: %s", wf.Body)
	}

	m := webtest.Do(t, http.MethodGet, srv.URL()+"/metrics", nil)
	if m.Status != http.StatusOK || !strings.Contains(string(m.Body), `kez_registrations_total{result="created"} 2`) {
		t.Errorf("metrics lack the registration count:\n%s", m.Body)
	}
	h := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil)
	if h.Status != http.StatusOK || !strings.Contains(string(h.Body), `"lag":0`) {
		t.Errorf("healthz = %d %s", h.Status, h.Body)
	}
	webtest.BuildInfo(t, h.Body, m.Body)
}

const relayID = "12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"

func TestPublicRelays(t *testing.T) {
	cfg := chatserver.DefaultConfig()
	for _, bad := range [][]string{
		{"/ip4/203.0.113.7/tcp/4001"}, // no /p2p
		{"203.0.113.7:4001"},          // not a multiaddr
		{"/p2p/" + relayID},           // no transport
		{"/ip4/203.0.113.7/tcp/4001/p2p/" + relayID + "/p2p-circuit"}, // a circuit, not a relay
	} {
		cfg.PublicRelays = bad
		if err := cfg.Validate(); !errors.Is(err, chatserver.ErrConfig) {
			t.Errorf("Validate(PublicRelays=%q) = %v, want ErrConfig", bad, err)
		}
	}

	ns := natstest.Start(t)
	cfg = testConfig(ns)
	cfg.PublicRelays = []string{
		"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID,
		"/ip4/203.0.113.7/tcp/4001/ipfs/" + relayID, // legacy name, advertised as /p2p
	}
	srv := startServer(t, cfg)
	alice := keztest.NewKey(t)
	if a := register(t, srv.URL(), regBody(t, alice, "alice")); a.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.Status, a.Body)
	}
	want := []string{"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID, "/ip4/203.0.113.7/tcp/4001/p2p/" + relayID}
	for _, path := range []string{"/v1/u/alice", "/v1/k/" + alice.Public().String()} {
		got := webtest.Do(t, http.MethodGet, srv.URL()+path, nil)
		var rec kez.Record
		if err := json.Unmarshal(got.Body, &rec); err != nil || got.Status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, got.Status, got.Body)
		}
		if !reflect.DeepEqual(rec.Relays, want) {
			t.Errorf("GET %s: relays = %q, want %q", path, rec.Relays, want)
		}
	}
}

func TestErrors(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	srv := startServer(t, cfg)
	taken := keztest.NewKey(t)
	if a := register(t, srv.URL(), regBody(t, taken, "tudisco")); a.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", a.Status, a.Body)
	}
	sign := func(mut func(*kez.RegistrationRequest)) []byte {
		k := keztest.NewKey(t)
		h, _ := kez.ParseHandle("fresh", domain)
		req := kez.NewRegistrationRequest(k, h, time.Now())
		mut(&req)
		b, _ := json.Marshal(req)
		return b
	}
	other := keztest.NewKey(t)
	cases := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"malformed json", []byte(`{"handle":`), 400, "invalid_request"},
		{"empty body", nil, 400, "invalid_request"},
		{"unknown field", []byte(`{"handle":"x","extra":1}`), 400, "invalid_request"},
		{"bad key", []byte(`{"handle":"bob","primary":"ed25519:zz","timestamp":1,"registration_sig":"AA=="}`), 400, "invalid_key"},
		{"small-order key", []byte(`{"handle":"bob","primary":"ed25519:0100000000000000000000000000000000000000000000000000000000000000","timestamp":1,"registration_sig":"AA=="}`), 400, "invalid_key"},
		{"invalid handle", regBodyRaw(t, other, "1bob"), 400, "invalid_handle"},
		{"other domain", sign(func(r *kez.RegistrationRequest) { r.Handle = "fresh@elsewhere.example" }), 400, "wrong_domain"},
		{"bad signature", sign(func(r *kez.RegistrationRequest) { r.RegistrationSig[0] ^= 1 }), 401, "bad_signature"},
		{"signed by another key", sign(func(r *kez.RegistrationRequest) { r.Primary = other.Public() }), 401, "bad_signature"},
		{"stale timestamp", sign(func(r *kez.RegistrationRequest) { r.Timestamp -= 3600 }), 401, "stale_timestamp"},
		{"reserved", regBody(t, keztest.NewKey(t), "admin"), 403, "reserved"},
		{"reserved look-alike", regBody(t, keztest.NewKey(t), "r00t"), 403, "reserved"},
		{"handle taken", regBody(t, keztest.NewKey(t), "tudisco"), 409, "handle_taken"},
		{"key taken", regBody(t, taken, "another"), 409, "key_taken"},
		{"too similar", regBody(t, keztest.NewKey(t), "tud1sco"), 409, "too_similar"},
		{"too large", bytes.Repeat([]byte(" "), registry.MaxBodySize+1), 413, "too_large"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			a := register(t, srv.URL(), tt.body)
			if a.Status != tt.status || a.Code(t) != tt.code {
				t.Errorf("POST /v1/register = %d %s, want %d %s", a.Status, a.Body, tt.status, tt.code)
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
		{"/v1/u/nobody", 404, "not_found"},
		{"/v1/u/nobody@elsewhere.example", 404, "not_found"},
		{"/v1/u/no.dots", 400, "invalid_handle"},
		{"/v1/k/ed25519:" + other.Public().Hex(), 404, "not_found"},
		{"/v1/k/nonsense", 400, "invalid_key"},
		{"/.well-known/webfinger", 400, "bad_resource"},
		{"/.well-known/webfinger?resource=alice", 400, "bad_resource"},
		{"/.well-known/webfinger?resource=acct:nobody@" + domain, 404, "not_found"},
		{"/.well-known/webfinger?resource=acct:tudisco@elsewhere.example", 404, "not_found"},
		{"/v2/nothing", 404, "not_found"},
	}
	for _, g := range gets {
		a := webtest.Do(t, http.MethodGet, srv.URL()+g.path, nil)
		if a.Status != g.status || a.Code(t) != g.code {
			t.Errorf("GET %s = %d %s, want %d %s", g.path, a.Status, a.Body, g.status, g.code)
		}
	}
	// Refused registrations stored nothing: the registry holds only tudisco's
	// three messages.
	js, _ := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	s, err := js.Stream(context.Background(), streams.RegistryStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 3 {
		t.Errorf("registry holds %d messages after refusals, want 3", n)
	}
}

// regBodyRaw signs a registration for a handle that does not parse.
func regBodyRaw(t testing.TB, key *kez.PrivateKey, handle string) []byte {
	t.Helper()
	b, _ := json.Marshal(kez.RegistrationRequest{Handle: handle, Primary: key.Public(), Timestamp: time.Now().Unix(), RegistrationSig: make([]byte, 64)})
	return b
}

func TestReservedFile(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.ReservedFile = filepath.Join(t.TempDir(), "reserved")
	if err := os.WriteFile(cfg.ReservedFile, []byte("# ours\nfounder\n\nkezteam\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	for _, h := range []string{"founder", "f0under", "kezteam", "admin"} {
		if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), h)); a.Status != http.StatusForbidden || a.Code(t) != "reserved" {
			t.Errorf("%s: %d %s, want 403 reserved", h, a.Status, a.Body)
		}
	}
	if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), "founders")); a.Status != http.StatusCreated {
		t.Errorf("founders: %d %s", a.Status, a.Body)
	}
	os.WriteFile(cfg.ReservedFile, []byte("9bad\n"), 0o644)
	if _, err := chatserver.Start(context.Background(), cfg, webtest.Logger(t)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad reserved file: %v", err)
	}
}

func TestRateLimitAcrossReplicas(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.Streams.RegisterLimit = 3
	a, b := startServer(t, cfg), startServer(t, cfg)
	for i, srv := range []*chatserver.Server{a, b, a} {
		if r := register(t, srv.URL(), regBody(t, keztest.NewKey(t), fmt.Sprintf("user%d", i))); r.Status != http.StatusCreated {
			t.Fatalf("registration %d: %d %s", i, r.Status, r.Body)
		}
	}
	r := register(t, b.URL(), regBody(t, keztest.NewKey(t), "user9"))
	if r.Status != http.StatusTooManyRequests || r.Code(t) != "rate_limited" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th registration from one address = %d %s, want 429 with Retry-After", r.Status, r.Body)
	}
}

// TestRateLimitPerIPv6Net: registrations from a new /64 each, of one
// IPv6 /48, are refused across replicas once the /48 made its budget,
// each /64 far below its own: 429 rate_limited (what clients know), a
// message naming the /48, and counted apart in kez_registrations_total;
// another /48 registers.
func TestRateLimitPerIPv6Net(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.TrustProxy = true
	cfg.Streams.RegisterLimit, cfg.Streams.RegisterNetLimit = 2, 4
	a, b := startServer(t, cfg), startServer(t, cfg)
	from := func(srv *chatserver.Server, addr, handle string) webtest.Answer {
		req, err := http.NewRequest(http.MethodPost, srv.URL()+"/v1/register", bytes.NewReader(regBody(t, keztest.NewKey(t), handle)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", addr)
		return webtest.Send(t, req)
	}
	for i, srv := range []*chatserver.Server{a, b, a, b} {
		if r := from(srv, fmt.Sprintf("2001:db8:1:%x::1", i), fmt.Sprintf("net%d", i)); r.Status != http.StatusCreated {
			t.Fatalf("registration from /64 #%d of the /48: %d %s", i, r.Status, r.Body)
		}
	}
	r := from(a, "2001:db8:1:ffff::1", "net9")
	if r.Status != http.StatusTooManyRequests || r.Code(t) != "rate_limited" || r.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(r.Body), "IPv6 /48") {
		t.Fatalf("5th registration from a /48 = %d %s, want 429 rate_limited naming the /48, with Retry-After", r.Status, r.Body)
	}
	if r := from(b, "2001:db8:2::1", "othernet"); r.Status != http.StatusCreated {
		t.Fatalf("registration from another /48: %d %s", r.Status, r.Body)
	}
	m := webtest.Do(t, http.MethodGet, a.URL()+"/metrics", nil)
	if !strings.Contains(string(m.Body), `kez_registrations_total{result="rate_limited_48"} 1`) {
		t.Errorf("metrics do not count the /48 refusal as rate_limited_48:\n%s", m.Body)
	}
}

// TestBogusRegistrationsWriteNothing: registrations that fail
// verification leave no rate-limit record (nothing is written for them),
// and an address flooding them is refused in memory before its
// signatures are checked.
func TestBogusRegistrationsWriteNothing(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.Streams.RegisterLimit = 10 // per hour: the in-memory limit is then 5/s, a burst of 20
	srv := startServer(t, cfg)
	codes := map[int]int{}
	for i := range 50 {
		body := regBody(t, keztest.NewKey(t), fmt.Sprintf("bogus%d", i))
		body = bytes.Replace(body, []byte(`"registration_sig":"`), []byte(`"registration_sig":"AAAA`), 1)
		codes[register(t, srv.URL(), body).Status]++
	}
	if codes[http.StatusTooManyRequests] < 25 || codes[http.StatusCreated] != 0 {
		t.Errorf("50 bogus registrations answered %v, want most refused 429 before verification", codes)
	}
	js, _ := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	s, err := js.Stream(context.Background(), streams.RateLimitStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 0 {
		t.Fatalf("bogus registrations wrote %d rate-limit records (%v), want 0", info.State.Msgs, err)
	}
}

func TestClaimsAllOrNothing(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), "tudisco")); a.Status != http.StatusCreated {
		t.Fatal(a.Status)
	}
	k := keztest.NewKey(t)
	if a := register(t, srv.URL(), regBody(t, k, "tud1sco")); a.Status != http.StatusConflict {
		t.Fatalf("look-alike: %d %s", a.Status, a.Body)
	}
	// The refused batch left neither a handle claim nor a key claim: the
	// same key registers another handle, and tud1sco stays unknown.
	if a := register(t, srv.URL(), regBody(t, k, "francesca")); a.Status != http.StatusCreated {
		t.Fatalf("key of the refused registration: %d %s", a.Status, a.Body)
	}
	if a := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/u/tud1sco", nil); a.Status != http.StatusNotFound {
		t.Fatalf("refused handle: %d %s", a.Status, a.Body)
	}
}

func TestConcurrentRegistrationsOfOneHandle(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	servers := []*chatserver.Server{startServer(t, cfg), startServer(t, cfg)}
	const n = 200
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = regBody(t, keztest.NewKey(t), "popular")
	}
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := http.Post(servers[i%2].URL()+"/v1/register", "application/json", bytes.NewReader(bodies[i]))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
				t.Logf("request %d: %d %s", i, resp.StatusCode, b)
			}
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusCreated] != 1 || count[http.StatusConflict] != n-1 {
		t.Fatalf("statuses = %v, want exactly one 201 and %d 409", count, n-1)
	}
	// Both replicas serve the winner.
	for _, srv := range servers {
		if a := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/u/popular", nil); a.Status != http.StatusOK {
			t.Errorf("%s: %d", srv.URL(), a.Status)
		}
	}
}

func registerMany(t testing.TB, base string, n int, prefix string) []*kez.PrivateKey {
	t.Helper()
	keys := make([]*kez.PrivateKey, n)
	for i := range keys {
		keys[i] = keztest.NewKey(t)
		if a := register(t, base, regBody(t, keys[i], fmt.Sprintf("%s%d", prefix, i))); a.Status != http.StatusCreated {
			t.Fatalf("register %d: %d %s", i, a.Status, a.Body)
		}
	}
	return keys
}

func TestLateReplicaServesEarlierHandles(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	first := startServer(t, cfg)
	keys := registerMany(t, first.URL(), 20, "early")
	late := startServer(t, cfg)
	for i, k := range keys {
		a := webtest.Do(t, http.MethodGet, fmt.Sprintf("%s/v1/u/early%d", late.URL(), i), nil)
		if a.Status != http.StatusOK || !strings.Contains(string(a.Body), k.Public().Hex()) {
			t.Fatalf("late replica, early%d: %d %s", i, a.Status, a.Body)
		}
		if _, ok := late.Registry.Cache().LookupKey(k.Public()); !ok {
			t.Fatalf("late replica's cache lacks early%d", i)
		}
	}
}

func TestRebuildEqualsLiveProjection(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	srv := startServer(t, cfg)
	registerMany(t, srv.URL(), 30, "user")
	register(t, srv.URL(), regBody(t, keztest.NewKey(t), "user1")) // a refused one changes nothing

	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logger := webtest.Logger(t)
	res, err := chatserver.Rebuild(ctx, js, 1, true, logger)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Identical || res.Events != 30 {
		t.Fatalf("check rebuild = %+v, want 30 events, identical", res)
	}

	live, _ := streams.OpenProjection(ctx, js)
	before, err := live.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 30+30+1 {
		t.Fatalf("live projection has %d entries, want 61", len(before))
	}
	if _, err := chatserver.Rebuild(ctx, js, 1, false, logger); err != nil {
		t.Fatal(err)
	}
	live, _ = streams.OpenProjection(ctx, js)
	after, err := live.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("replaced projection differs:\nbefore %v\nafter  %v", before, after)
	}
}

// A replica that dies between the two writes of an event leaves the handle
// projected but not the key, and the pointer behind: the next projector
// finishes the event, with no second effect.
func TestProjectorFinishesHalfAppliedEvent(t *testing.T) {
	cfg, js := setUpStreams(t)
	ctx := context.Background()
	log, err := streams.OpenRegistry(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	k := keztest.NewKey(t)
	h, _ := kez.ParseHandle("halfway", domain)
	req := kez.NewRegistrationRequest(k, h, time.Now())
	ev := kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h, Primary: k.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}
	_, seq, err := log.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	// The dead replica's first write: the handle entry only.
	rec, _ := json.Marshal(ev.Record(seq))
	kv, _ := js.KeyValue(ctx, streams.HandlesBucket)
	if _, err := kv.Create(ctx, "halfway", rec); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, cfg)
	a := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/k/"+k.Public().String(), nil)
	if a.Status != http.StatusOK {
		t.Fatalf("key index after recovery: %d %s", a.Status, a.Body)
	}
	proj, _ := streams.OpenProjection(ctx, js)
	if cp, err := proj.Checkpoint(ctx); err != nil || cp.Seq != seq {
		t.Fatalf("applied = %d, %v; want %d", cp.Seq, err, seq)
	}
	e, err := kv.Get(ctx, "halfway")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Value(), rec) {
		t.Fatalf("handle entry = %s, want %s", e.Value(), rec)
	}
}

// setUpStreams starts a broker and makes the streams a home server on it
// would, with no home server running: a test writes the log itself first.
// It returns the home server's configuration and the admin's JetStream.
func setUpStreams(t *testing.T) (chatserver.Config, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Setup(context.Background(), js, cfg.Streams); err != nil {
		t.Fatal(err)
	}
	return cfg, js
}
