//go:build integration

package integration_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/integrity"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/registry"
	"kez.lat/kez/registry/mock"
	"kez.lat/kez/streams"
	"kez.lat/kez/web/webtest"
)

// TestDamageReportedDuringAnElection: a replica's scrub reports damage
// while its integrity monitor last saw the stream without a leader (its
// check ran mid-election). On a 3-node R3 cluster, one node's copy of
// kez_handles has a bit flipped (acked30's record, which the stream's
// state does not show: only a read of the record does), two nodes are
// stopped so that the monitor sees the bucket with no leader, and once
// they are back and the damaged node leads the bucket, the scrub finds
// the record missing. When the monitor then sees the election over (the
// damaged node leading), the damage stands: registrations are refused
// log_damaged and the status names the stream, why and the leader last
// seen, instead of the report being dropped as filed against no leader.
// Once the bucket is led by a whole copy, the next scrub withdraws it and
// registrations go on.
//
// The monitor is driven by hand (its checks are what the test orders):
// chatserver.Server runs the same monitor and registry, checking on every
// leader advisory and again while a stream has no leader.
func TestDamageReportedDuringAnElection(t *testing.T) {
	ctx := context.Background()
	c := natstest.StartCluster(t, 3)
	n1 := c.Servers[0]
	nc, err := streams.Connect(c.ClientURL(), n1.KeyFile(natskeys.KeyChatServer), "election-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	scfg := clienttest.ChatConfig(n1).Streams
	scfg.Replicas = 3
	if _, err := streams.Setup(ctx, js, scfg); err != nil {
		t.Fatal(err)
	}
	log, err := streams.OpenRegistry(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := streams.OpenProjection(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	logger := webtest.Logger(t)
	mon := integrity.New(integrity.Config{Streams: streams.RegistryAppendOnly, Inspect: streams.Inspector(js), Interval: time.Hour, Logger: logger})
	svc, err := registry.New(registry.Config{Domain: clienttest.Domain, PreRate: 1000, PreBurst: 1000,
		Integrity: mon.Scope(streams.RegistryStream)}, log, proj, &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { return nil }}, logger)
	if err != nil {
		t.Fatal(err)
	}
	mon.AddVerifier(streams.RegistryStream, svc.VerifyLog)
	hooked := make(chan string, 16)
	mon.OnNewLeader(func(s string) {
		select {
		case hooked <- s:
		default:
		}
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := mon.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := registerWith(svc, fmt.Sprintf("acked%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitCaughtUp(t, svc)

	bucket := streams.RegistryAppendOnly[1] // KV_kez_handles
	admin, err := jetstream.New(n1.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	// W leads the bucket, V (to be damaged) and R follow it.
	before := leaderOf(t, admin, bucket)
	var victim, rest *natstest.Server
	for _, s := range c.Servers {
		switch {
		case s.Name() == before:
		case victim == nil:
			victim = s
		default:
			rest = s
		}
	}
	if victim == nil || rest == nil {
		t.Fatalf("%s led by %q: no two followers", bucket, before)
	}
	if err := mon.Check(ctx); err != nil {
		t.Fatal(err)
	}
	others := []*natstest.Server{victim}
	for _, s := range c.Servers {
		if s.Name() == before {
			others = append(others, s)
		}
	}

	// Two nodes down: R alone cannot elect a leader, and the monitor's
	// check finds the bucket with none. The victim's copy is damaged
	// meanwhile.
	for _, s := range others {
		s.Stop()
	}
	for _, blk := range victim.MessageBlocks(bucket) {
		flipBitInData(t, blk)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := mon.LeaderChanged(ctx, bucket)
		if st := streamStatus(mon, bucket); err == nil && st.Leader == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor never saw %s without a leader: %+v, %v", bucket, streamStatus(mon, bucket), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range others {
		s.Restart()
	}
	waitBroker(t, c.Servers)
	admin, err = jetstream.New(rest.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	adminNC := rest.Connect(natskeys.KeyAdmin)
	moveLeader(t, admin, adminNC, bucket, victim.Name())

	// The scrub reads the damaged copy, before the monitor looks again:
	// the report comes while the last check saw no leader. (A scrub
	// started again only when one timed out, and then the scrubs left
	// to end: none reports once the monitor knows the leader.)
	if !scrubUntil(svc, 12*time.Second, func() bool { return errors.Is(mon.Err(), kez.ErrLogDamaged) }) {
		t.Fatalf("the scrub reported no damage of %s led by %s: %v", bucket, victim.Name(), mon.Err())
	}
	time.Sleep(2 * time.Second)
	// The election is over, as the monitor sees it.
	drain(hooked)
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := mon.Check(ctx)
		if st := streamStatus(mon, bucket); err == nil && st.Leader == victim.Name() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor never saw %s led by %s: %+v, %v", bucket, victim.Name(), streamStatus(mon, bucket), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := mon.Err(); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "acked30") || !strings.Contains(err.Error(), "no known leader") {
		t.Fatalf("Err after the election = %v, want the damage reported during it, held", err)
	}
	st := streamStatus(mon, bucket)
	if st.Status != "damaged" || len(st.Held) != 1 || !strings.Contains(st.Held[0].Problem, "acked30") || st.Held[0].LastLeader != before {
		t.Fatalf("status of %s after the election: %+v, want damaged, held since the leader %s", bucket, st, before)
	}
	t.Logf("status after the election: %s led by %s, %s: %s", bucket, st.Leader, st.Status, strings.Join(st.Problems, "; "))
	if err := registerWith(svc, "during"); !errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("registration after the election = %v, want ErrLogDamaged", err)
	}
	if !slices.Contains(drain(hooked), bucket) {
		t.Fatalf("no new-leader hook for %s once its leader was known again", bucket)
	}

	// A whole copy leads: the scrub that the leader change starts finds
	// the bucket whole, and what was held is withdrawn.
	moveLeader(t, admin, adminNC, bucket, before)
	if err := mon.LeaderChanged(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	if !scrubUntil(svc, 2*time.Second, func() bool { return mon.Err() == nil }) {
		t.Fatalf("still refused with %s led by the whole copy on %s: %v", bucket, before, mon.Err())
	}
	if err := registerWith(svc, "after"); err != nil {
		t.Fatalf("registration once the copy leading is whole: %v", err)
	}
}

// registerWith registers name with a new key through svc.
func registerWith(svc *registry.Service, name string) error {
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	h, err := kez.ParseHandle(name, clienttest.Domain)
	if err != nil {
		return err
	}
	_, err = svc.Register(context.Background(), kez.NewRegistrationRequest(k, h, time.Now()), netip.MustParseAddr("127.0.0.1"))
	return err
}

// scrubUntil starts a scrub of svc at once and again every (a scrub's
// read can time out just after a leader moved) until done, for a minute
// at most, and reports whether done.
func scrubUntil(svc *registry.Service, every time.Duration, done func() bool) bool {
	var kicked time.Time
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if done() {
			return true
		}
		if time.Since(kicked) > every {
			svc.Kick()
			kicked = time.Now()
		}
	}
	return done()
}

// waitCaughtUp waits until svc's projection has applied the whole log.
func waitCaughtUp(t *testing.T, svc *registry.Service) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := svc.Health(context.Background())
		if err == nil && h.CaughtUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection not caught up: %+v, %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamStatus returns the monitor's status of stream.
func streamStatus(m *integrity.Monitor, stream string) integrity.StreamStatus {
	for _, s := range m.Status().Streams {
		if s.Stream == stream {
			return s
		}
	}
	return integrity.StreamStatus{}
}

// drain returns what ch holds now.
func drain(ch chan string) []string {
	var out []string
	for {
		select {
		case s := <-ch:
			out = append(out, s)
		default:
			return out
		}
	}
}
