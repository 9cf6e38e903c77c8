package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/keztest"
	"kez.lat/kez/registry"
)

const domain = "kez.test"

// fakeLog is a registry log in memory: events at sequences 3, 6, 9, ...
// (each after its two claims), as Append stores them. The claim readers
// answer from fields the test sets, so that the log can disagree with
// the projection as a damaged leader would.
type fakeLog struct {
	mu       sync.Mutex
	events   []kez.RegistryEntry
	appended int
	handle   map[string]kez.RegistryEvent // HandleEvent
	keys     map[kez.PublicKey]kez.Handle // KeyHandle
	skels    map[string]kez.Handle        // SkeletonHandle
	stored   map[uint64][]byte            // Event, if set; else the events
	last     uint64                       // LastSeq, if set
}

func (l *fakeLog) add(t *testing.T, k *kez.PrivateKey, name string) kez.RegistryEvent {
	t.Helper()
	h, err := kez.ParseHandle(name, domain)
	if err != nil {
		t.Fatal(err)
	}
	req := kez.NewRegistrationRequest(k, h, time.Now())
	ev := kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h, Primary: k.Public(), RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig}
	data, _ := json.Marshal(ev)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, kez.RegistryEntry{Seq: uint64(3 * (len(l.events) + 1)), Event: ev, Data: data})
	l.handle[h.Local()] = ev
	l.keys[k.Public()] = h
	l.skels[h.Skeleton()] = h
	return ev
}

func (l *fakeLog) Append(_ context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appended++
	return ev, 0, errors.New("the test expects no append")
}

func (l *fakeLog) Follow(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error {
	l.mu.Lock()
	events := append([]kez.RegistryEntry(nil), l.events...)
	l.mu.Unlock()
	for i, e := range events {
		if e.Seq <= after {
			continue
		}
		e.Pending = uint64(len(events) - 1 - i)
		if err := fn(e); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (l *fakeLog) LastSeq(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != 0 {
		return l.last, nil
	}
	return uint64(3 * len(l.events)), nil
}

func (l *fakeLog) Event(_ context.Context, seq uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stored != nil {
		if b, ok := l.stored[seq]; ok {
			return b, nil
		}
		return nil, kez.ErrNotFound
	}
	for _, e := range l.events {
		if e.Seq == seq {
			return e.Data, nil
		}
	}
	return nil, kez.ErrNotFound
}

func (l *fakeLog) HandleEvent(_ context.Context, local string) (kez.RegistryEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev, ok := l.handle[local]; ok {
		return ev, nil
	}
	return kez.RegistryEvent{}, kez.ErrNotFound
}

func (l *fakeLog) KeyHandle(_ context.Context, key kez.PublicKey) (kez.Handle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.keys[key]; ok {
		return h, nil
	}
	return kez.Handle{}, kez.ErrNotFound
}

func (l *fakeLog) SkeletonHandle(_ context.Context, skel string) (kez.Handle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.skels[skel]; ok {
		return h, nil
	}
	return kez.Handle{}, kez.ErrNotFound
}

func (l *fakeLog) ClaimSkeleton(_ context.Context, h kez.Handle) (kez.Handle, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if held, ok := l.skels[h.Skeleton()]; ok {
		return held, false, nil
	}
	l.skels[h.Skeleton()] = h
	return h, true, nil
}

// fakeProj is a projection in memory.
type fakeProj struct {
	mu   sync.Mutex
	recs map[string]kez.HandleRecord
	cp   integrity.Checkpoint
}

func (p *fakeProj) ApplyBatch(_ context.Context, recs []kez.HandleRecord) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rec := range recs {
		p.recs[rec.Handle.Local()] = rec
	}
	return nil
}

func (p *fakeProj) Checkpoint(context.Context) (integrity.Checkpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cp, nil
}

func (p *fakeProj) SetCheckpoint(_ context.Context, cp integrity.Checkpoint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cp.Seq > p.cp.Seq {
		p.cp = cp
	}
	return nil
}

func (p *fakeProj) Get(_ context.Context, local string) (kez.HandleRecord, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rec, ok := p.recs[local]; ok {
		return rec, nil
	}
	return kez.HandleRecord{}, kez.ErrNotFound
}

func (p *fakeProj) GetByKey(context.Context, kez.PublicKey) (kez.HandleRecord, error) {
	return kez.HandleRecord{}, kez.ErrNotFound
}

func (p *fakeProj) Verify(ctx context.Context, rec kez.HandleRecord) error {
	got, err := p.Get(ctx, rec.Handle.Local())
	if err != nil || !got.Primary.Equal(rec.Primary) {
		return &integrity.StreamError{Stream: "KV_test", Err: kez.ErrLogDamaged}
	}
	return nil
}

func (p *fakeProj) Watch(ctx context.Context, _ func(kez.HandleRecord), ready func()) error {
	ready()
	<-ctx.Done()
	return ctx.Err()
}

type allow struct{}

func (allow) Allow(context.Context, netip.Addr) error { return nil }

// reports records what the registry reports; err is what Err returns.
type reports struct {
	mu       sync.Mutex
	err      error
	problems []string
}

func (r *reports) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *reports) Report(stream, problem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, stream+": "+problem)
}

func (r *reports) Resolve(stream, problem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, "resolved "+stream+": "+problem)
}

func (r *reports) Mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(len(r.problems))
}

func (r *reports) Cleared(stream string, mark uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf("cleared %s: %d", stream, mark))
}

func (r *reports) Holds() bool { return false }

func (r *reports) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.problems, "\n")
}

// run runs svc until the test ends, and returns the context it runs in.
func run(t *testing.T, svc *registry.Service) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}

// start runs a registry over log and proj until its projection has caught
// up with the log.
func start(t *testing.T, log *fakeLog, proj registry.Projection, rep *reports, file registry.CheckpointFile) *registry.Service {
	t.Helper()
	cfg := registry.Config{Domain: domain, Integrity: rep, CheckpointFile: file}
	svc, err := registry.New(cfg, log, proj, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := run(t, svc)
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err := svc.Health(ctx)
		if err == nil && h.CaughtUp {
			return svc
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection not caught up: %+v, %v", h, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newLog() *fakeLog {
	return &fakeLog{handle: map[string]kez.RegistryEvent{}, keys: map[kez.PublicKey]kez.Handle{}, skels: map[string]kez.Handle{}}
}

func register(t *testing.T, svc *registry.Service, k *kez.PrivateKey, name string) error {
	t.Helper()
	h, err := kez.ParseHandle(name, domain)
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Register(context.Background(), kez.NewRegistrationRequest(k, h, time.Now()), netip.MustParseAddr("127.0.0.1"))
	return err
}

func TestRegisterRefusedWhileALogIsDamaged(t *testing.T) {
	log, rep := newLog(), &reports{}
	svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
	rep.err = kez.ErrLogDamaged
	if err := register(t, svc, keztest.NewKey(t), "newcomer"); !errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("Register on a damaged log = %v, want ErrLogDamaged", err)
	}
	if log.appended != 0 {
		t.Fatal("a registration reached the log while it was damaged")
	}
}

// TestNoClaimAgainstTheProjection: a handle, key or skeleton this
// replica's projection holds is never claimed again for someone else,
// whatever the log says: the log agreeing gives the usual conflict, the
// log having forgotten the claim is damage.
func TestNoClaimAgainstTheProjection(t *testing.T) {
	alice, mallory := keztest.NewKey(t), keztest.NewKey(t)
	for _, tt := range []struct {
		name     string
		key      *kez.PrivateKey
		handle   string
		forget   func(l *fakeLog, ev kez.RegistryEvent)
		want     error
		reported string
	}{
		{"handle, log agrees", mallory, "alice", nil, kez.ErrHandleTaken, ""},
		{"handle, log forgot", mallory, "alice", func(l *fakeLog, ev kez.RegistryEvent) { delete(l.handle, "alice") }, kez.ErrLogDamaged, "no claim on handle alice@kez.test"},
		{"handle, log names another key", mallory, "alice", func(l *fakeLog, ev kez.RegistryEvent) {
			ev.Primary = mallory.Public()
			l.handle["alice"] = ev
		}, kez.ErrLogDamaged, "claim on handle alice@kez.test is by"},
		{"key, log agrees", alice, "alice2", nil, kez.ErrKeyTaken, ""},
		{"key, log forgot", alice, "alice2", func(l *fakeLog, ev kez.RegistryEvent) { delete(l.keys, ev.Primary) }, kez.ErrLogDamaged, "no claim on key"},
		{"skeleton, log agrees", mallory, "a1ice", nil, kez.ErrHandleTooSimilar, ""},
		{"skeleton, log forgot", mallory, "a1ice", func(l *fakeLog, ev kez.RegistryEvent) { delete(l.skels, ev.Handle.Skeleton()) }, kez.ErrLogDamaged, "no claim on skeleton"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log, rep := newLog(), &reports{}
			ev := log.add(t, alice, "alice")
			svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
			if tt.forget != nil {
				log.mu.Lock()
				tt.forget(log, ev)
				log.mu.Unlock()
			}
			err := register(t, svc, tt.key, tt.handle)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register(%s) = %v, want %v", tt.handle, err, tt.want)
			}
			if log.appended != 0 {
				t.Fatal("the claim reached the log")
			}
			if got := rep.got(); (tt.reported == "") != (got == "") || !strings.Contains(got, tt.reported) {
				t.Fatalf("reported %q, want %q", got, tt.reported)
			}
		})
	}
}

// TestVerifyLog: the log must still hold, at each known checkpoint's
// sequence, the event the checkpoint ends with.
func TestVerifyLog(t *testing.T) {
	setup := func(t *testing.T) (*fakeLog, *registry.Service, integrity.Checkpoint) {
		log, proj := newLog(), &fakeProj{recs: map[string]kez.HandleRecord{}}
		for _, name := range []string{"alice", "bob", "carol"} {
			log.add(t, keztest.NewKey(t), name)
		}
		svc := start(t, log, proj, &reports{}, nil)
		// The checkpoint is written beside the next batch, after the
		// batch is announced: it follows the projector, not at once.
		var cp integrity.Checkpoint
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			cp, _ = proj.Checkpoint(context.Background())
			if cp.Seq == 9 || time.Now().After(deadline) {
				break
			}
		}
		if cp.Seq != 9 || cp.Tree.Size != 3 {
			t.Fatalf("checkpoint after 3 events = %+v", cp)
		}
		return log, svc, cp
	}
	ctx := context.Background()
	st := integrity.State{Stream: "KEZ_REGISTRY", Leader: "n1", FirstSeq: 1, LastSeq: 9, Msgs: 9}

	log, svc, cp := setup(t)
	if err := svc.VerifyLog(ctx, st); err != nil {
		t.Fatalf("VerifyLog of the log written = %v", err)
	}
	res, err := svc.Scrub(ctx)
	if err != nil || res.Tree.Root() != cp.Tree.Root() {
		t.Fatalf("Scrub = %+v, %v; want root %s", res, err, cp.Tree.Root())
	}

	short := st
	short.LastSeq = 6
	if err := svc.VerifyLog(ctx, short); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "ends at sequence 6") {
		t.Fatalf("VerifyLog of a shorter log = %v", err)
	}

	log.mu.Lock()
	log.stored = map[uint64][]byte{9: []byte(`{"type":"handle_registered","handle":"mallory@kez.test"}`)}
	log.mu.Unlock()
	if err := svc.VerifyLog(ctx, st); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "not the one") {
		t.Fatalf("VerifyLog of a changed event = %v", err)
	}
	log.mu.Lock()
	log.stored = map[uint64][]byte{}
	log.mu.Unlock()
	if err := svc.VerifyLog(ctx, st); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "no event at sequence 9") {
		t.Fatalf("VerifyLog of a missing event = %v", err)
	}

	// A read that ends early while the log's last sequence passes the
	// checkpoint (a new leader still applying) is not damage: it is read
	// again later. One that ends where the log says it ends is damage.
	log, svc, _ = setup(t)
	log.mu.Lock()
	log.events, log.last = log.events[:1], 9
	log.mu.Unlock()
	if _, err := svc.Scrub(ctx); errors.Is(err, kez.ErrLogDamaged) || !errors.Is(err, registry.ErrScrubBehind) {
		t.Fatalf("Scrub of a read that ends early = %v, want ErrScrubBehind", err)
	}
	log.mu.Lock()
	log.last = 3
	log.mu.Unlock()
	if _, err := svc.Scrub(ctx); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "ends at sequence 3") {
		t.Fatalf("Scrub of a log that ends early = %v", err)
	}

	// A changed event in the middle is what the scrub finds.
	log, svc, _ = setup(t)
	log.mu.Lock()
	log.events[1].Data = append([]byte(nil), log.events[1].Data...)
	log.events[1].Data[10] ^= 1
	log.mu.Unlock()
	if _, err := svc.Scrub(ctx); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "hashes to 3 events") {
		t.Fatalf("Scrub of a log with a changed event = %v", err)
	}
}

// TestCheckpointFile: a replica checks the log against the checkpoint in
// its own file, which the KV cannot lose with the broker.
func TestCheckpointFile(t *testing.T) {
	file := integrity.File{Path: t.TempDir() + "/registry.checkpoint"}
	log := newLog()
	for _, name := range []string{"alice", "bob"} {
		log.add(t, keztest.NewKey(t), name)
	}
	svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, &reports{}, file)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp, err := file.Load()
		if err != nil {
			t.Fatal(err)
		}
		if cp.Seq == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint file at %+v, want sequence 6", cp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = svc

	// A new replica, on a broker that lost the projection and the last
	// event: the file remembers.
	lost := newLog()
	lost.events = log.events[:1]
	svc2 := start(t, lost, &fakeProj{recs: map[string]kez.HandleRecord{}}, &reports{}, file)
	st := integrity.State{Stream: "KEZ_REGISTRY", Leader: "n2", FirstSeq: 1, LastSeq: 3, Msgs: 3}
	if err := svc2.VerifyLog(context.Background(), st); !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "checkpoint file") {
		t.Fatalf("VerifyLog against the file = %v", err)
	}
}

// refusingCP is a projection whose checkpoint write finds another tree at
// its sequence.
type refusingCP struct{ *fakeProj }

func (p refusingCP) SetCheckpoint(context.Context, integrity.Checkpoint) error {
	return fmt.Errorf("%w: the projection's checkpoint holds another tree", kez.ErrLogDamaged)
}

// TestCheckpointDamageReported: the checkpoint is written beside the next
// batch, yet a write that finds another tree at its sequence is still
// reported as damage (and the projector stops and starts again).
func TestCheckpointDamageReported(t *testing.T) {
	log, rep := newLog(), &reports{}
	log.add(t, keztest.NewKey(t), "alice")
	log.add(t, keztest.NewKey(t), "bob")
	start(t, log, refusingCP{&fakeProj{recs: map[string]kez.HandleRecord{}}}, rep, nil)
	for end := time.Now().Add(5 * time.Second); !strings.Contains(rep.got(), "another tree"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no damage reported; reports: %q", rep.got())
		}
	}
}

// TestScrubClearsWhatItFindsWhole: a scrub that finds the log whole says
// so (Cleared, with the mark taken as it began), and so for each bucket
// the registry reported damage against, once a scrub finds that bucket
// whole too: damage held since an election is withdrawn by it.
func TestScrubClearsWhatItFindsWhole(t *testing.T) {
	log, rep := newLog(), &reports{}
	log.add(t, keztest.NewKey(t), "alice")
	proj := &fakeProj{recs: map[string]kez.HandleRecord{}}
	svc := start(t, log, proj, rep, nil)
	waitReports := func(want ...string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := rep.got()
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(got, w) }) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("reports = %q, want %q", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// alice's record gone from the bucket: the log is whole, the bucket
	// is not.
	proj.mu.Lock()
	rec := proj.recs["alice"]
	delete(proj.recs, "alice")
	proj.mu.Unlock()
	svc.Kick()
	waitReports("cleared : 0", "KV_test: ")
	time.Sleep(50 * time.Millisecond) // the scrub's end
	if got := rep.got(); strings.Contains(got, "cleared KV_test") {
		t.Fatalf("reports = %q: a bucket found damaged was cleared", got)
	}

	// Put back: the next scrub finds it whole.
	proj.mu.Lock()
	proj.recs["alice"] = rec
	proj.mu.Unlock()
	svc.Kick()
	waitReports("cleared : 2", "cleared KV_test: 2")
}

// flakyCheckpoint is a projection whose checkpoint read fails once, as
// one can right after an election.
type flakyCheckpoint struct {
	*fakeProj
	mu   sync.Mutex
	fail bool
}

func (p *flakyCheckpoint) Checkpoint(ctx context.Context) (integrity.Checkpoint, error) {
	p.mu.Lock()
	fail := p.fail
	p.fail = false // fails once
	p.mu.Unlock()
	if fail {
		return integrity.Checkpoint{}, errors.New("read checkpoint: nats: no responders available for request")
	}
	return p.fakeProj.Checkpoint(ctx)
}

// TestHeldDamageRetriesAFailedScrub: damage held from an election goes
// only with a scrub begun since that passes, and the new leader starts
// one scrub. Should it fail for a reason that is not damage (a checkpoint
// read with no responders), the scrub is tried again shortly while
// anything is held, not at the next ScrubInterval (an hour of refused
// registrations).
func TestHeldDamageRetriesAFailedScrub(t *testing.T) {
	var (
		mu     sync.Mutex
		leader = "n1"
	)
	mon := integrity.New(integrity.Config{
		Streams: []string{"KEZ_REGISTRY"},
		Inspect: func(context.Context, string) (integrity.State, error) {
			mu.Lock()
			defer mu.Unlock()
			return integrity.State{Stream: "KEZ_REGISTRY", Leader: leader, FirstSeq: 1, LastSeq: 3, Msgs: 3}, nil
		},
	})
	log := newLog()
	alice := keztest.NewKey(t)
	ev := log.add(t, alice, "alice")
	proj := &flakyCheckpoint{fakeProj: &fakeProj{recs: map[string]kez.HandleRecord{}}}
	svc, err := registry.New(registry.Config{Domain: domain, Integrity: mon.Scope("KEZ_REGISTRY")}, log, proj, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mon.OnNewLeader(func(string) { svc.Kick() })
	ctx := run(t, svc)
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		if h, err := svc.Health(ctx); err == nil && h.CaughtUp && svc.SkeletonsReady(ctx) == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("not caught up")
		}
	}
	if err := mon.Check(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	leader = "" // n1 dies: mid-election
	mu.Unlock()
	if err := mon.Check(ctx); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	delete(log.handle, "alice")
	log.mu.Unlock()
	if err := register(t, svc, keztest.NewKey(t), "alice"); !errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("Register = %v, want ErrLogDamaged", err)
	}
	log.mu.Lock()
	log.handle["alice"] = ev
	log.mu.Unlock()
	proj.mu.Lock()
	proj.fail = true
	proj.mu.Unlock()
	mu.Lock()
	leader = "n2"
	mu.Unlock()
	if err := mon.Check(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for mon.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the leader is back and the stream whole, registrations are still refused (no scrub until ScrubInterval): %v", mon.Err())
		}
		if err := mon.Check(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
