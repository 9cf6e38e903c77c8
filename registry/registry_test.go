package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/registry"
	"kez.lat/kez/registry/mock"
)

var now = time.Unix(1_700_000_000, 0)

// newService returns a registry over fakes; nothing runs its projector.
func newService(t *testing.T, log *mock.Log, proj *mock.Projection, lim *mock.Limiter) *registry.Service {
	t.Helper()
	s, err := registry.New(registry.Config{Domain: domain, Now: func() time.Time { return now }},
		log, proj, lim, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request returns a registration of local@domain signed at when.
func request(t *testing.T, local string, when time.Time) (kez.RegistrationRequest, *kez.PrivateKey) {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := kez.ParseHandle(local+"@"+domain, "")
	if err != nil {
		t.Fatal(err)
	}
	return kez.NewRegistrationRequest(k, h, when), k
}

// noClaims is a log that holds no claim and stores what is appended at
// sequence 7.
func noClaims(appended *[]kez.RegistryEvent) *mock.Log {
	return &mock.Log{
		AppendFn: func(_ context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
			*appended = append(*appended, ev)
			return ev, 7, nil
		},
	}
}

var client = netip.MustParseAddr("192.0.2.1")

// TestRegisterAppends: a verified registration asks the shared limiter
// once, is appended as its event, and answers the record stored, even
// before this replica has projected it.
func TestRegisterAppends(t *testing.T) {
	var appended []kez.RegistryEvent
	var asked []netip.Addr
	lim := &mock.Limiter{AllowFn: func(_ context.Context, a netip.Addr) error { asked = append(asked, a); return nil }}
	s := newService(t, noClaims(&appended), &mock.Projection{}, lim)
	req, k := request(t, "alice", now)

	// Nothing projects: the wait for the projection ends with ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec, err := s.Register(ctx, req, client)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Handle.String() != "alice@"+domain || !rec.Primary.Equal(k.Public()) || rec.Seq != 7 || rec.RegisteredAt != now.Unix() {
		t.Errorf("Register = %+v", rec)
	}
	if len(asked) != 1 || asked[0] != client {
		t.Errorf("limiter asked for %v, want once for %v", asked, client)
	}
	if len(appended) != 1 || appended[0].Type != kez.EventHandleRegistered || appended[0].Handle != rec.Handle ||
		!kez.VerifyRegistration(appended[0].Handle, appended[0].Primary, appended[0].RegisteredAt, appended[0].RegistrationSig) {
		t.Errorf("appended %+v", appended)
	}
}

// TestRegisterProjectorStalled: a registration stored while this
// replica's projector is stalled (its consumer or stream leader lost to
// a frozen node) answers after projectWait, not at its deadline, and a
// look-up here finds it all the same.
func TestRegisterProjectorStalled(t *testing.T) {
	var appended []kez.RegistryEvent
	lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { return nil }}
	proj := &mock.Projection{GetFn: func(context.Context, string) (kez.HandleRecord, error) {
		return kez.HandleRecord{}, kez.ErrNotFound
	}, GetByKeyFn: func(context.Context, kez.PublicKey) (kez.HandleRecord, error) {
		return kez.HandleRecord{}, kez.ErrNotFound
	}}
	s := newService(t, noClaims(&appended), proj, lim)
	req, k := request(t, "erin", now)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	rec, err := s.Register(ctx, req, client)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > 5*time.Second {
		t.Errorf("Register with the projector stalled took %v, want about 2 s", took)
	}
	if got, err := s.Lookup(ctx, rec.Handle); err != nil || !got.Primary.Equal(k.Public()) || got.Seq != 7 {
		t.Errorf("Lookup after the answer = %+v, %v", got, err)
	}
	if got, err := s.LookupKey(ctx, k.Public()); err != nil || got.Handle != rec.Handle {
		t.Errorf("LookupKey after the answer = %+v, %v", got, err)
	}
}

// TestRegisterProjectorDown: while the projector fails and restarts (its
// consumer cannot be made while the cluster elects leaders), a stored
// registration does not wait for it at all.
func TestRegisterProjectorDown(t *testing.T) {
	var appended []kez.RegistryEvent
	log := noClaims(&appended)
	log.LastSeqFn = func(context.Context) (uint64, error) { return 0, nil }
	log.FollowFn = func(context.Context, uint64, func(kez.RegistryEntry) error) error {
		return errors.New("JetStream system temporarily unavailable")
	}
	proj := &mock.Projection{
		CheckpointFn: func(context.Context) (integrity.Checkpoint, error) { return integrity.Checkpoint{}, nil },
		WatchFn: func(ctx context.Context, _ func(kez.HandleRecord), ready func()) error {
			ready()
			<-ctx.Done()
			return ctx.Err()
		},
	}
	lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { return nil }}
	s := newService(t, log, proj, lim)
	run(t, s)
	time.Sleep(100 * time.Millisecond) // the projector has failed once

	req, k := request(t, "frank", now)
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	start := time.Now()
	rec, err := s.Register(rctx, req, client)
	if took := time.Since(start); err != nil || took > time.Second {
		t.Fatalf("Register with the projector down = %v after %v; want the record within 1s", err, took)
	}
	if got, ok := s.Cache().LookupKey(k.Public()); !ok || got.Handle != rec.Handle {
		t.Errorf("cache after the answer: %+v %v", got, ok)
	}
}

// TestRegisterPastSharedCheckpoint: a replica whose projector starts
// from a shared checkpoint that another replica moved past a
// registration's event (a restarted replica: the event is in the buckets,
// not yet in this replica's cache, and this projector never hashes it)
// answers that registration as a success and serves it at once.
func TestRegisterPastSharedCheckpoint(t *testing.T) {
	var appended []kez.RegistryEvent
	log := noClaims(&appended)
	log.LastSeqFn = func(context.Context) (uint64, error) { return 100, nil }
	log.FollowFn = func(ctx context.Context, _ uint64, _ func(kez.RegistryEntry) error) error {
		<-ctx.Done()
		return ctx.Err()
	}
	proj := &mock.Projection{
		CheckpointFn: func(context.Context) (integrity.Checkpoint, error) { return integrity.Checkpoint{Seq: 100}, nil },
		// The bucket watch has loaded the bucket, but not brought the
		// other replica's records yet. (Registrations wait for the
		// skeleton migration, which waits for the loaded cache.)
		WatchFn: func(ctx context.Context, _ func(kez.HandleRecord), ready func()) error {
			ready()
			<-ctx.Done()
			return ctx.Err()
		},
	}
	lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { return nil }}
	s := newService(t, log, proj, lim)
	ctx := run(t, s)
	// The projector has started from the shared checkpoint.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if h, err := s.Health(ctx); err == nil && h.Applied == 100 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the projector did not start from the shared checkpoint")
		}
	}
	req, k := request(t, "grace", now)
	rec, err := s.Register(ctx, req, client)
	if err != nil {
		t.Fatalf("Register past the shared checkpoint: %v", err)
	}
	if got, ok := s.Cache().LookupKey(k.Public()); !ok || got.Handle != rec.Handle {
		t.Errorf("cache after the answer: %+v %v", got, ok)
	}
}

// TestRegisterRefuses: a registration that fails a check writes nothing
// to the log, and one that fails verification does not reach the shared
// limiter either.
func TestRegisterRefuses(t *testing.T) {
	limited := errors.New("limited")
	for _, tt := range []struct {
		name    string
		local   string
		when    time.Time
		limit   error
		want    error
		limiter bool // the shared limiter is asked
	}{
		{"stale", "bob", now.Add(-time.Hour), nil, kez.ErrStaleTimestamp, false},
		{"from the future", "bob", now.Add(time.Hour), nil, kez.ErrStaleTimestamp, false},
		{"reserved", "admin", now, nil, kez.ErrReservedHandle, true},
		{"rate limited", "bob", now, limited, limited, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var appended []kez.RegistryEvent
			asked := 0
			lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { asked++; return tt.limit }}
			s := newService(t, noClaims(&appended), &mock.Projection{}, lim)
			req, _ := request(t, tt.local, tt.when)
			_, err := s.Register(context.Background(), req, client)
			if !errors.Is(err, tt.want) {
				t.Errorf("Register = %v, want %v", err, tt.want)
			}
			if len(appended) != 0 {
				t.Errorf("appended %d events", len(appended))
			}
			if (asked == 1) != tt.limiter || asked > 1 {
				t.Errorf("limiter asked %d times, want asked: %v", asked, tt.limiter)
			}
		})
	}

	// Another domain's handle is refused before anything is asked.
	s := newService(t, &mock.Log{}, &mock.Projection{}, &mock.Limiter{})
	k, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("carol@other.test", "")
	if _, err := s.Register(context.Background(), kez.NewRegistrationRequest(k, h, now), client); !errors.Is(err, kez.ErrWrongDomain) {
		t.Errorf("Register of another domain = %v, want ErrWrongDomain", err)
	}
}

// TestRegisterLogErrors: the log's refusal (a claim lost to another
// replica) and its failure come back as they are.
func TestRegisterLogErrors(t *testing.T) {
	for _, want := range []error{kez.ErrHandleTaken, kez.ErrUnavailable} {
		log := &mock.Log{AppendFn: func(context.Context, kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
			return kez.RegistryEvent{}, 0, want
		}}
		lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error { return nil }}
		s := newService(t, log, &mock.Projection{}, lim)
		req, _ := request(t, "dave", now)
		if _, err := s.Register(context.Background(), req, client); !errors.Is(err, want) {
			t.Errorf("Register = %v, want %v", err, want)
		}
	}
}

// TestLookup: a handle of the domain not yet in the cache is read from
// the projection, and one the projection misses from the log; another
// domain's is not found without asking.
func TestLookup(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	alice, _ := kez.ParseHandle("alice@"+domain, "")
	var gets []string
	proj := &mock.Projection{
		GetFn: func(_ context.Context, local string) (kez.HandleRecord, error) {
			gets = append(gets, local)
			if local == "alice" {
				return kez.HandleRecord{Handle: alice, Primary: k.Public(), Seq: 3}, nil
			}
			return kez.HandleRecord{}, kez.ErrNotFound
		},
		GetByKeyFn: func(_ context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
			if key.Equal(k.Public()) {
				return kez.HandleRecord{Handle: alice, Primary: k.Public(), Seq: 3}, nil
			}
			return kez.HandleRecord{}, kez.ErrNotFound
		},
	}
	var asked []string
	log := &mock.Log{HandleEventFn: func(_ context.Context, local string) (kez.RegistryEvent, error) {
		asked = append(asked, local)
		return kez.RegistryEvent{}, kez.ErrNotFound
	}}
	s := newService(t, log, proj, &mock.Limiter{})
	ctx := context.Background()
	if rec, err := s.Lookup(ctx, alice); err != nil || rec.Seq != 3 {
		t.Errorf("Lookup(alice) = %+v, %v", rec, err)
	}
	bob, _ := kez.ParseHandle("bob@"+domain, "")
	if _, err := s.Lookup(ctx, bob); !errors.Is(err, kez.ErrNotFound) {
		t.Errorf("Lookup(bob) = %v, want ErrNotFound", err)
	}
	other, _ := kez.ParseHandle("alice@other.test", "")
	if _, err := s.Lookup(ctx, other); !errors.Is(err, kez.ErrNotFound) {
		t.Errorf("Lookup(another domain) = %v, want ErrNotFound", err)
	}
	if len(gets) != 2 || gets[0] != "alice" || gets[1] != "bob" {
		t.Errorf("projection asked for %q, want alice and bob only", gets)
	}
	if len(asked) != 1 || asked[0] != "bob" {
		t.Errorf("log asked for %q, want bob only (the projection's miss)", asked)
	}
	if rec, err := s.LookupKey(ctx, k.Public()); err != nil || rec.Handle != alice {
		t.Errorf("LookupKey = %+v, %v", rec, err)
	}
}

// TestLookupAsksTheLog: a replica whose cache and projection lag the log
// (its projector restarting, its bucket read from a follower) answers a
// handle or key the log holds from the log's claim, read from the log's
// leader as the callout reads it, not "not found": a client takes a
// sender's key with no handle for a forgery. What the log does not hold
// is not found; a log that cannot be read is unavailable, never "not
// found"; a claim that contradicts itself or the cache is damage.
func TestLookupAsksTheLog(t *testing.T) {
	req, k := request(t, "carol", now)
	carol, _ := kez.ParseHandle(req.Handle, domain)
	ev := kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: carol, Primary: k.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}
	other, _ := kez.GenerateKey(nil)
	forged := ev
	forged.Primary = other.Public() // carol's signature does not cover another key
	tests := []struct {
		name     string
		key      kez.Handle // the handle the key's claim names
		keyErr   error
		event    kez.RegistryEvent
		eventErr error
		want     error // of both look-ups; nil: carol's record
		wantKey  error // of LookupKey, if not want
		reported bool
	}{
		{name: "held", key: carol, event: ev},
		{name: "not held", keyErr: kez.ErrNotFound, eventErr: kez.ErrNotFound, want: kez.ErrNotFound},
		{name: "log unreachable", keyErr: kez.ErrUnavailable, eventErr: kez.ErrUnavailable, want: kez.ErrUnavailable},
		{name: "key's handle not registered", key: carol, eventErr: kez.ErrNotFound, want: kez.ErrNotFound, wantKey: kez.ErrLogDamaged, reported: true},
		{name: "event does not verify", key: carol, event: forged, want: kez.ErrLogDamaged, reported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &mock.Log{
				KeyHandleFn: func(_ context.Context, key kez.PublicKey) (kez.Handle, error) {
					if !key.Equal(k.Public()) {
						t.Errorf("KeyHandle(%s), want carol's key", key)
					}
					return tt.key, tt.keyErr
				},
				HandleEventFn: func(_ context.Context, local string) (kez.RegistryEvent, error) {
					if local != "carol" {
						t.Errorf("HandleEvent(%q), want carol", local)
					}
					return tt.event, tt.eventErr
				},
			}
			proj := &mock.Projection{
				GetByKeyFn: func(context.Context, kez.PublicKey) (kez.HandleRecord, error) {
					return kez.HandleRecord{}, kez.ErrNotFound
				},
				GetFn: func(context.Context, string) (kez.HandleRecord, error) { return kez.HandleRecord{}, kez.ErrNotFound },
			}
			rep := &reports{}
			s, err := registry.New(registry.Config{Domain: domain, Now: func() time.Time { return now }, Integrity: rep},
				log, proj, &mock.Limiter{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			wantKey := tt.wantKey
			if wantKey == nil {
				wantKey = tt.want
			}
			for _, c := range []struct {
				what string
				want error
				look func() (kez.HandleRecord, error)
			}{
				{"Lookup", tt.want, func() (kez.HandleRecord, error) { return s.Lookup(ctx, carol) }},
				{"LookupKey", wantKey, func() (kez.HandleRecord, error) { return s.LookupKey(ctx, k.Public()) }},
			} {
				rec, err := c.look()
				switch {
				case c.want != nil && !errors.Is(err, c.want):
					t.Errorf("%s = %+v, %v; want %v", c.what, rec, err, c.want)
				case c.want == nil && (err != nil || rec.Handle != carol || !rec.Primary.Equal(k.Public()) || rec.RegisteredAt != req.Timestamp):
					t.Errorf("%s = %+v, %v; want carol's registration from the log", c.what, rec, err)
				}
			}
			if got := rep.got(); (got != "") != tt.reported {
				t.Errorf("reported %q; want a report: %v", got, tt.reported)
			}
			if _, ok := s.Cache().Lookup("carol"); ok {
				t.Error("the log's record was cached: the projector caches in log order")
			}
		})
	}
}

// TestLookupLogReadsBounded: anyone may look up keys and handles, and
// each unknown one reads the log's leader; a flood of them is answered
// unavailable (a client holds and asks again) once the replica's
// allowance of log reads is spent, not with a read each.
func TestLookupLogReadsBounded(t *testing.T) {
	var reads atomic.Int64
	log := &mock.Log{
		KeyHandleFn: func(context.Context, kez.PublicKey) (kez.Handle, error) {
			reads.Add(1)
			return kez.Handle{}, kez.ErrNotFound
		},
	}
	proj := &mock.Projection{
		GetByKeyFn: func(context.Context, kez.PublicKey) (kez.HandleRecord, error) {
			return kez.HandleRecord{}, kez.ErrNotFound
		},
	}
	s, err := registry.New(registry.Config{Domain: domain}, log, proj, &mock.Limiter{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	start := time.Now()
	notFound, unavailable := 0, 0
	for range n {
		k, err := kez.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.LookupKey(context.Background(), k.Public())
		switch {
		case errors.Is(err, kez.ErrNotFound):
			notFound++
		case errors.Is(err, kez.ErrUnavailable):
			unavailable++
		default:
			t.Fatalf("LookupKey of an unknown key: %v", err)
		}
	}
	// The allowance: a burst, then a rate (with a second to spare).
	bound := int64(registry.LogReadBurst + registry.LogReadRate*(time.Since(start).Seconds()+1))
	if got := reads.Load(); got > bound || unavailable == 0 || int64(notFound) != got {
		t.Fatalf("%d look-ups: %d log reads (bound %d), %d not found, %d unavailable", n, got, bound, notFound, unavailable)
	}
}

// TestPrelimitPerIPv6Net: bogus registrations from one IPv6 /48, each
// from a /64 of its own (each /64 far below its budget), are refused in
// memory, before their signatures are checked, once the /48 is over its
// budget; another /48 is not, nor is a /24 of IPv4 addresses (no wider
// IPv4 tier).
func TestPrelimitPerIPv6Net(t *testing.T) {
	lim := &mock.Limiter{AllowFn: func(context.Context, netip.Addr) error {
		t.Error("a bogus registration reached the shared limit")
		return nil
	}}
	s, err := registry.New(registry.Config{Domain: domain, Now: func() time.Time { return now },
		PreRate: 1000, PreBurst: 1000, PreNetRate: 1e-6, PreNetBurst: 5},
		&mock.Log{}, &mock.Projection{}, lim, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	bogus := func() kez.RegistrationRequest {
		req, _ := request(t, "mallory", now)
		req.RegistrationSig[0] ^= 1
		return req
	}
	ctx := context.Background()
	for i := range 5 {
		addr := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:%x::1", i))
		if _, err := s.Register(ctx, bogus(), addr); !errors.Is(err, kez.ErrBadSignature) {
			t.Fatalf("bogus registration from /64 #%d of the /48: %v, want its signature checked (ErrBadSignature)", i, err)
		}
	}
	_, err = s.Register(ctx, bogus(), netip.MustParseAddr("2001:db8:1:ffff::1"))
	if !errors.Is(err, kez.ErrNetRateLimited) {
		t.Fatalf("bogus registration from a new /64 of a /48 that made 5: %v, want ErrNetRateLimited before the signature check", err)
	}
	if _, err := s.Register(ctx, bogus(), netip.MustParseAddr("2001:db8:2::1")); !errors.Is(err, kez.ErrBadSignature) {
		t.Fatalf("another /48: %v, want ErrBadSignature", err)
	}
	for i := range 10 {
		addr := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i+1))
		if _, err := s.Register(ctx, bogus(), addr); !errors.Is(err, kez.ErrBadSignature) {
			t.Fatalf("%s: %v, want ErrBadSignature", addr, err)
		}
	}
}
