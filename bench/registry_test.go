//go:build bench

package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

func signedBodies(t testing.TB, prefix string, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		k, err := kez.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := kez.ParseHandle(fmt.Sprintf("%s%d", prefix, i), "kez.test")
		if err != nil {
			t.Fatal(err)
		}
		out[i], _ = json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
	}
	return out
}

// TestBenchLookup: GET /v1/u/{handle} against a bare net/http handler that
// returns the same JSON from memory, both over loopback HTTP/1.1 with
// keep-alive, 8 concurrent clients.
func TestBenchLookup(t *testing.T) {
	ns := natstest.Start(t)
	srv := startChatServer(t, ns)
	body := signedBodies(t, "alice", 1)[0]
	resp, err := http.Post(srv.URL()+"/v1/register", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %v %v", err, resp.Status)
	}
	record, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(record)
	})}
	go bare.Serve(ln)
	t.Cleanup(func() { bare.Close() })

	c := httpClient()
	const n, conc = 20000, 8
	base := "http://" + ln.Addr().String() + "/v1/u/alice0"
	target := srv.URL() + "/v1/u/alice0"
	ratio := compare(t, "lookup GET /v1/u/{handle} (8 clients)",
		func() float64 { return rate(t, n, conc, func(int) error { return get(c, base) }) },
		func() float64 { return rate(t, n, conc, func(int) error { return get(c, target) }) })
	if ratio < 0.8 {
		t.Logf("below the 0.8 target")
	}
}

// TestBenchRegister: POST /v1/register (verify, rate limit, atomic claim
// batch, projection, read-your-writes) against raw synchronous JetStream
// publishes to a stream with the registry's settings, serial and 16-way,
// on one server (R1) and on a 3-node cluster (R3, streams replicated).
func TestBenchRegister(t *testing.T) {
	t.Run("R1", func(t *testing.T) {
		ns := natstest.Start(t)
		benchRegister(t, ns, ns.ClientURL(), 1)
	})
	t.Run("R3", func(t *testing.T) {
		c := natstest.StartCluster(t, 3)
		benchRegister(t, c.Servers[0], c.ClientURL(), 3)
	})
}

// TestBenchRegisterAccumulating: on a 3-node R3 cluster, 16 clients, the
// registration rate over registrations 1-1,000 against 10,001-11,000:
// with no JetStream object per user it must not fall as users
// accumulate (the consumer-per-user design slowed with every Raft
// group). Raw R3 publishes in the same run are the baseline.
func TestBenchRegisterAccumulating(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ns := c.Servers[0]
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = c.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = "kez.test"
	cfg.Streams.RegisterLimit = 1 << 30
	cfg.Streams.Replicas = 3
	srv := startChatServerCfg(t, cfg)
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	payload := signedBodies(t, "raw", 1)[0]
	cl := httpClient()
	const conc, step = 16, 1000
	register := func(prefix string, n int) float64 {
		return registerAll(t, cl, srv.URL(), signedBodies(t, prefix, n), conc)
	}
	raw := rate(t, 2*step, conc, func(i int) error {
		_, err := js.Publish(ctx, fmt.Sprintf("bench.raw.%d", i), payload)
		return err
	})
	first := register("first", step)
	register("bulk", 9*step)
	later := register("later", step)
	s, _ := js.Stream(ctx, kez.InboxStream)
	consumers := 0
	for range s.ConsumerNames(ctx).Name() {
		consumers++
	}
	t.Logf("R3 16 clients: raw publishes %.0f/s; registrations 1-1,000 %.0f/s (%.2f of raw), 10,001-11,000 %.0f/s (%.2f of raw, %.2f of the first); inbox consumers %d",
		raw, first, first/raw, later, later/raw, later/first, consumers)
	fmt.Printf("BENCH register accumulating R3 16 clients: 1-1000 %.0f/s, 10001-11000 %.0f/s (later/first %.2f), raw %.0f/s, ratio first %.2f later %.2f, inbox consumers %d\n",
		first, later, later/first, raw, first/raw, later/raw, consumers)
	if consumers != 0 {
		t.Errorf("%d inbox consumers after 11,000 registrations", consumers)
	}
}

func benchRegister(t *testing.T, ns *natstest.Server, url string, replicas int) {
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = url
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = "kez.test"
	cfg.Streams.RegisterLimit = 1 << 30
	cfg.Streams.Replicas = replicas
	srv := startChatServerCfg(t, cfg)
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.RegistryStream)
	if err != nil {
		t.Fatal(err)
	}
	scfg := s.CachedInfo().Config
	scfg.Name, scfg.Subjects = "BENCH_RAW", []string{"bench.raw.>"}
	if _, err := js.CreateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	payload := signedBodies(t, "raw", 1)[0]
	c := httpClient()
	round := 0
	for _, conc := range []int{1, 16} {
		n := 300 * conc
		if n > 2000 {
			n = 2000
		}
		compare(t, fmt.Sprintf("register POST /v1/register R%d (%d clients)", replicas, conc),
			func() float64 {
				return rate(t, n, conc, func(i int) error {
					_, err := js.Publish(ctx, fmt.Sprintf("bench.raw.%d.%d", round, i), payload)
					return err
				})
			},
			func() float64 {
				round++
				return registerAll(t, c, srv.URL(), signedBodies(t, fmt.Sprintf("r%dc%d", round, conc), n), conc)
			})
	}
}

// registerAll posts every body to base's /v1/register from conc clients
// and returns the rate of 201 answers; any other answer fails.
func registerAll(t testing.TB, c *http.Client, base string, bodies [][]byte, conc int) float64 {
	return rate(t, len(bodies), conc, func(i int) error {
		resp, err := c.Post(base+"/v1/register", "application/json", bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("register: %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
}

// TestBenchRebuild: time to replay 100,000 registration events into an
// empty projection, against the store's own speed measured in the same
// run: raw asynchronous KV puts of the same entries (the record under the
// handle, the handle under the key) into the same, emptied, buckets. The
// rebuild must reach half of it.
func TestBenchRebuild(t *testing.T) {
	const events = 100_000
	ns := natstest.Start(t)
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := streams.DefaultConfig()
	if _, err := streams.Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	// Seed the log directly (the events, without the claims, which the
	// projection does not read), as fast as async publishing goes.
	start := time.Now()
	key, _ := kez.GenerateKey(nil)
	recs := make([]kez.HandleRecord, 0, events)
	for i := range events {
		k := key
		if i > 0 {
			k, _ = kez.GenerateKey(nil)
		}
		h, _ := kez.ParseHandle(fmt.Sprintf("user%d", i), "kez.test")
		req := kez.NewRegistrationRequest(k, h, time.Now())
		e := kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h, Primary: k.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}
		ev, _ := json.Marshal(e)
		if _, err := js.PublishAsync("kez.registry.handle."+h.Local(), ev); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, e.Record(uint64(i+1)))
		if i%2000 == 1999 || i == events-1 {
			waitAsync(t, js)
		}
	}
	t.Logf("seeded %d events in %v", events, time.Since(start).Round(time.Millisecond))

	res, err := chatserver.Rebuild(ctx, js, 1, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != events {
		t.Fatalf("rebuilt %d events, want %d", res.Events, events)
	}
	rebuild := float64(events) / res.Seconds

	// The baseline: the same entries, put asynchronously into the same
	// buckets, emptied.
	if _, err := streams.ResetProjection(ctx, js, 1, ""); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for i, rec := range recs {
		val, _ := json.Marshal(rec)
		if _, err := js.PublishAsync("$KV."+streams.HandlesBucket+"."+rec.Handle.Local(), val); err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync("$KV."+streams.KeysBucket+"."+rec.Primary.Hex(), []byte(rec.Handle.Local())); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			waitAsync(t, js)
		}
	}
	waitAsync(t, js)
	raw := float64(events) / time.Since(start).Seconds()
	fmt.Printf("BENCH rebuild of %d registration events: %.1f s (%.0f events/s); raw async KV puts of the same entries: %.0f events/s; ratio %.2f (want >= 0.5)\n",
		events, res.Seconds, rebuild, raw, rebuild/raw)
	if rebuild/raw < 0.5 {
		t.Errorf("rebuild at %.2f of raw async puts, want at least 0.5", rebuild/raw)
	}
}

func waitAsync(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("async publishes not acknowledged within a minute")
	}
}
