package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/registry"
)

// liveLog is a registry log in memory that stores what is appended (each
// event after its two claims, at sequences 3, 6, 9, ...) and delivers it
// to its followers as it comes.
type liveLog struct {
	fakeLog
	grew chan struct{} // closed and replaced at every append
}

func newLiveLog() *liveLog {
	return &liveLog{fakeLog: fakeLog{handle: map[string]kez.RegistryEvent{}, keys: map[kez.PublicKey]kez.Handle{}, skels: map[string]kez.Handle{}},
		grew: make(chan struct{})}
}

func (l *liveLog) Append(_ context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return ev, 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := uint64(3 * (len(l.events) + 1))
	l.events = append(l.events, kez.RegistryEntry{Seq: seq, Event: ev, Data: data})
	l.handle[ev.Handle.Local()] = ev
	l.keys[ev.Primary] = ev.Handle
	l.skels[ev.Handle.Skeleton()] = ev.Handle
	close(l.grew)
	l.grew = make(chan struct{})
	return ev, seq, nil
}

func (l *liveLog) Follow(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error {
	next := 0
	for {
		l.mu.Lock()
		events, grew := append([]kez.RegistryEntry(nil), l.events[next:]...), l.grew
		l.mu.Unlock()
		for i, e := range events {
			next++
			if e.Seq <= after {
				continue
			}
			e.Pending = uint64(len(events) - 1 - i)
			if err := fn(e); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grew:
		}
	}
}

// gatedProj is a projection in memory whose bucket writes wait for the
// test (gate) and whose checkpoint writes are counted.
type gatedProj struct {
	fakeProj
	gate     chan struct{} // closed: writes go
	applied  chan []kez.HandleRecord
	cpWrites int
}

func (p *gatedProj) ApplyBatch(ctx context.Context, recs []kez.HandleRecord) error {
	select {
	case <-p.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.fakeProj.ApplyBatch(ctx, recs); err != nil {
		return err
	}
	p.applied <- recs
	return nil
}

func (p *gatedProj) SetCheckpoint(ctx context.Context, cp integrity.Checkpoint) error {
	p.mu.Lock()
	p.cpWrites++
	p.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a replicated write's round
	return p.fakeProj.SetCheckpoint(ctx, cp)
}

func (p *gatedProj) checkpoint() (integrity.Checkpoint, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cp, p.cpWrites
}

func runService(t *testing.T, log registry.Log, proj registry.Projection) *registry.Service {
	t.Helper()
	svc, err := registry.New(registry.Config{Domain: domain, PreRate: 1000, PreBurst: 1000}, log, proj, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	return svc
}

// TestRegisterAnsweredOnceHashed: a registration is answered once this
// replica's projector has hashed its event (the tree covers it) and
// cached its record, not after the projection's bucket writes; the
// shared checkpoint moves past the event only after those writes.
func TestRegisterAnsweredOnceHashed(t *testing.T) {
	log := newLiveLog()
	proj := &gatedProj{fakeProj: fakeProj{recs: map[string]kez.HandleRecord{}}, gate: make(chan struct{}),
		applied: make(chan []kez.HandleRecord, 100)}
	svc := runService(t, log, proj)
	k, _ := kez.GenerateKey(nil)
	start := time.Now()
	if err := register(t, svc, k, "alice"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Register took %v with the bucket writes held: it waited for them (or for projectWait)", took)
	}
	h, _ := kez.ParseHandle("alice", domain)
	if rec, err := svc.Lookup(context.Background(), h); err != nil || !rec.Primary.Equal(k.Public()) || rec.Seq != 3 {
		t.Errorf("Lookup after the answer = %+v, %v", rec, err)
	}
	health, err := svc.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if health.Events != 0 || health.Applied != 0 {
		t.Errorf("before the bucket writes, Health = %+v: the checkpoint covers an event not applied", health)
	}
	if cp, _ := proj.checkpoint(); cp.Seq != 0 {
		t.Errorf("shared checkpoint at %d before the bucket writes", cp.Seq)
	}
	close(proj.gate)
	<-proj.applied
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp, _ := proj.checkpoint()
		if cp.Seq == 3 && cp.Tree.Size == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shared checkpoint %+v after the bucket writes, want sequence 3, one event", cp)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProjectorCheckpointsCoalesce: registrations arriving faster than
// the shared checkpoint is written are applied in few rounds, and the
// checkpoint is written fewer times than there are registrations, ending
// at the last one.
func TestProjectorCheckpointsCoalesce(t *testing.T) {
	log := newLiveLog()
	proj := &gatedProj{fakeProj: fakeProj{recs: map[string]kez.HandleRecord{}}, gate: make(chan struct{}),
		applied: make(chan []kez.HandleRecord, 1000)}
	close(proj.gate)
	svc := runService(t, log, proj)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			k, _ := kez.GenerateKey(nil)
			h, _ := kez.ParseHandle(fmt.Sprintf("user%d", i), domain)
			_, err := svc.Register(context.Background(), kez.NewRegistrationRequest(k, h, time.Now()), netip.MustParseAddr("127.0.0.1"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp, writes := proj.checkpoint()
		if cp.Seq == 3*n {
			if cp.Tree.Size != n {
				t.Errorf("checkpoint over %d events, want %d", cp.Tree.Size, n)
			}
			if writes >= n {
				t.Errorf("%d checkpoint writes for %d registrations: not coalesced", writes, n)
			}
			t.Logf("%d registrations, %d checkpoint writes", n, writes)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %+v after %d registrations", cp, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(proj.recs) != n {
		t.Errorf("%d records projected, want %d", len(proj.recs), n)
	}
}

// conflictProj refuses to project a record for a handle it holds for
// another key, as the KV projection does.
type conflictProj struct {
	fakeProj
	refused chan struct{}
	once    sync.Once
}

func (p *conflictProj) ApplyBatch(_ context.Context, recs []kez.HandleRecord) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rec := range recs {
		if held, ok := p.recs[rec.Handle.Local()]; ok && !held.Primary.Equal(rec.Primary) {
			p.once.Do(func() { close(p.refused) })
			return fmt.Errorf("%w: %s", errors.New("projection conflict"), rec.Handle)
		}
		p.recs[rec.Handle.Local()] = rec
	}
	return nil
}

// TestHashedConflictNotCached: a log that lost a claim and holds a
// second registration of a handle (a damaged leader) does not make the
// projector put that registration in the cache when it hashes it: the
// cache keeps the first holder, and the bucket write refuses the second.
func TestHashedConflictNotCached(t *testing.T) {
	log := newLiveLog()
	proj := &conflictProj{fakeProj: fakeProj{recs: map[string]kez.HandleRecord{}}, refused: make(chan struct{})}
	svc := runService(t, log, proj)
	first, _ := kez.GenerateKey(nil)
	if err := register(t, svc, first, "alice"); err != nil {
		t.Fatal(err)
	}
	// The damaged log takes another key's claim on the same handle.
	second, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", domain)
	req := kez.NewRegistrationRequest(second, h, time.Now())
	if _, _, err := log.Append(context.Background(), kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h,
		Primary: second.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proj.refused:
	case <-time.After(5 * time.Second):
		t.Fatal("the second registration of the handle was not refused by the projection")
	}
	if rec, err := svc.Lookup(context.Background(), h); err != nil || !rec.Primary.Equal(first.Public()) {
		t.Errorf("Lookup = %+v, %v; want the first holder", rec, err)
	}
	if rec, err := svc.LookupKey(context.Background(), second.Public()); err == nil {
		t.Errorf("LookupKey of the second key = %+v: cached at hash time", rec)
	}
}

// racingLog is a liveLog whose first Append stores other first: another
// key's registration of the same handle, which a damaged leader that lost
// its claim took while this one was checked.
type racingLog struct {
	*liveLog
	once  sync.Once
	other kez.RegistryEvent
}

func (l *racingLog) Append(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	var err error
	l.once.Do(func() { _, _, err = l.liveLog.Append(ctx, l.other) })
	if err != nil {
		return ev, 0, err
	}
	return l.liveLog.Append(ctx, ev)
}

// TestRegisterRefusedWhenCacheHoldsAnother: when another registration of
// the same handle is stored just before this one (a damaged leader), the
// projector caches the first and refuses this one at hash time; this
// replica then does not answer it as a success it would not serve, and
// reports the damage.
func TestRegisterRefusedWhenCacheHoldsAnother(t *testing.T) {
	h, _ := kez.ParseHandle("alice", domain)
	first, _ := kez.GenerateKey(nil)
	req := kez.NewRegistrationRequest(first, h, time.Now())
	log := &racingLog{liveLog: newLiveLog(), other: kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h,
		Primary: first.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}}
	proj := &conflictProj{fakeProj: fakeProj{recs: map[string]kez.HandleRecord{}}, refused: make(chan struct{})}
	rep := &reports{}
	svc, err := registry.New(registry.Config{Domain: domain, PreRate: 1000, PreBurst: 1000, Integrity: rep}, log, proj, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	second, _ := kez.GenerateKey(nil)
	if err := register(t, svc, second, "alice"); !errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("registration stored after another of the same handle: %v, want ErrLogDamaged", err)
	}
	if got := rep.got(); !strings.Contains(got, "holds another registration") {
		t.Errorf("reported: %q, want the registration's conflict", got)
	}
	if rec, ok := svc.Cache().LookupKey(second.Public()); ok {
		t.Errorf("the refused registration was cached: %+v", rec)
	}
	if rec, err := svc.Lookup(context.Background(), h); err != nil || !rec.Primary.Equal(first.Public()) {
		t.Errorf("Lookup = %+v, %v; want the first holder", rec, err)
	}
}

// damagedProj refuses, as damage of its bucket, to project a record for
// a handle it holds for another key, until mend drops that entry (an
// operator repairing the bucket).
type damagedProj struct {
	conflictProj
}

func (p *damagedProj) ApplyBatch(ctx context.Context, recs []kez.HandleRecord) error {
	if err := p.conflictProj.ApplyBatch(ctx, recs); err != nil {
		return &integrity.StreamError{Stream: "KV_handles", Err: fmt.Errorf("%w: %v", kez.ErrLogDamaged, err)}
	}
	return nil
}

func (p *damagedProj) mend(local string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.recs, local)
}

// TestProjectionConflictResolved: damage found by a projection write is
// reported, stands while the write keeps failing, and is resolved once
// the bucket is mended and the projector passes that write's events.
func TestProjectionConflictResolved(t *testing.T) {
	log, proj, _, rep, h := runWithStrayAlice(t)
	owner, _ := kez.GenerateKey(nil)
	req := kez.NewRegistrationRequest(owner, h, time.Now())
	if _, _, err := log.Append(context.Background(), kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h,
		Primary: owner.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proj.refused:
	case <-time.After(5 * time.Second):
		t.Fatal("the projection never refused the write")
	}
	waitReport := func(want string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !strings.Contains(rep.got(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("reports %q, want %q", rep.got(), want)
			}
		}
	}
	waitReport("KV_handles: projection conflict: alice@" + domain)
	if strings.Contains(rep.got(), "resolved") {
		t.Fatalf("resolved before the bucket was mended: %q", rep.got())
	}
	proj.mend("alice")
	waitReport("resolved KV_handles: projection conflict: alice@" + domain)
	if rec, err := proj.Get(context.Background(), "alice"); err != nil || !rec.Primary.Equal(owner.Public()) {
		t.Fatalf("projected after the mend: %+v, %v; want the log's owner", rec, err)
	}
}

// TestScrubLeavesAPendingConflict: a scrub that finds every record whole
// does not clear a bucket whose projection conflict is pending: the
// entry with no event behind it is not what the scrub reads.
func TestScrubLeavesAPendingConflict(t *testing.T) {
	log, proj, svc, rep, h := runWithStrayAlice(t)
	bob, _ := kez.GenerateKey(nil)
	if err := register(t, svc, bob, "bob"); err != nil {
		t.Fatal(err)
	}
	// bob's checkpoint saved before alice's event stops the projector: a
	// scrub with no checkpoint checks nothing and clears nothing.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cp, err := proj.Checkpoint(context.Background()); err == nil && cp.Seq > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no checkpoint saved after bob's registration")
		}
	}
	owner, _ := kez.GenerateKey(nil)
	req := kez.NewRegistrationRequest(owner, h, time.Now())
	if _, _, err := log.Append(context.Background(), kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h,
		Primary: owner.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !strings.Contains(rep.got(), "KV_handles: projection conflict"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("reports %q, want the conflict", rep.got())
		}
	}
	svc.Kick()
	for end := time.Now().Add(10 * time.Second); !strings.Contains(rep.got(), "cleared : "); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("reports %q, want the log cleared by the scrub", rep.got())
		}
	}
	time.Sleep(50 * time.Millisecond) // the projection scrub's end
	if got := rep.got(); strings.Contains(got, "cleared KV_handles") {
		t.Fatalf("reports %q: a bucket with a conflict pending was cleared", got)
	}
}

// runWithStrayAlice runs a registry whose bucket holds alice for a key
// the log never registered (a projection write of alice's event is
// refused), and returns its log, bucket, service, reports and alice's
// handle.
func runWithStrayAlice(t *testing.T) (*liveLog, *damagedProj, *registry.Service, *reports, kez.Handle) {
	t.Helper()
	log := newLiveLog()
	proj := &damagedProj{conflictProj{fakeProj: fakeProj{recs: map[string]kez.HandleRecord{}}, refused: make(chan struct{})}}
	stray, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", domain)
	proj.recs["alice"] = kez.HandleRecord{Handle: h, Primary: stray.Public()}
	rep := &reports{}
	svc, err := registry.New(registry.Config{Domain: domain, PreRate: 1000, PreBurst: 1000, Integrity: rep}, log, proj, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc)
	return log, proj, svc, rep, h
}
