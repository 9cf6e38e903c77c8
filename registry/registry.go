package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
)

// Log is the append-only registry log.
type Log interface {
	// Append stores the event with its first-come-first-served claims and
	// returns the event stored (an earlier attempt's, for a retry) and its
	// sequence; see streams.Registry.Append.
	Append(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error)
	// Follow calls fn with every entry after sequence after, in order,
	// until ctx ends or fn fails.
	Follow(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error
	// LastSeq returns the log's last sequence.
	LastSeq(ctx context.Context) (uint64, error)
	// Event returns the bytes of the event stored at seq, read from the
	// log's leader, or kez.ErrNotFound.
	Event(ctx context.Context, seq uint64) ([]byte, error)
	// HandleEvent, KeyHandle and SkeletonHandle read a claim from the
	// log's leader: the event that claimed a handle's local part, the
	// handle that claimed a key or a skeleton; kez.ErrNotFound if none.
	HandleEvent(ctx context.Context, local string) (kez.RegistryEvent, error)
	KeyHandle(ctx context.Context, key kez.PublicKey) (kez.Handle, error)
	SkeletonHandle(ctx context.Context, skel string) (kez.Handle, error)
	// ClaimSkeleton claims h's skeleton for h unless it is claimed, and
	// returns the handle holding it and whether this call stored the
	// claim; see streams.Registry.ClaimSkeleton and MigrateSkeletons.
	ClaimSkeleton(ctx context.Context, h kez.Handle) (holder kez.Handle, stored bool, err error)
}

// Projection is the shared, persistent projection of the log.
type Projection interface {
	// ApplyBatch projects registrations idempotently (each entry created
	// if absent, an existing one must be the same); see
	// streams.Projection.ApplyBatch.
	ApplyBatch(ctx context.Context, recs []kez.HandleRecord) error
	// Checkpoint returns how far the projection has applied the log, with
	// the Merkle tree over the events applied.
	Checkpoint(ctx context.Context) (integrity.Checkpoint, error)
	// SetCheckpoint raises the checkpoint (never lowers it); another tree
	// at the same sequence is an error wrapping kez.ErrLogDamaged.
	SetCheckpoint(ctx context.Context, cp integrity.Checkpoint) error
	Get(ctx context.Context, local string) (kez.HandleRecord, error)
	GetByKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error)
	// Verify checks that rec is projected: its record and its key's
	// entry are there and the same. Missing or different entries are an
	// error wrapping kez.ErrLogDamaged, inside an *integrity.StreamError
	// naming the bucket's stream.
	Verify(ctx context.Context, rec kez.HandleRecord) error
	Watch(ctx context.Context, put func(kez.HandleRecord), ready func()) error
}

// Integrity is the damage state of the logs this replica writes; see
// integrity.Scope.
type Integrity interface {
	// Err returns an error wrapping kez.ErrLogDamaged while a log is
	// damaged (nil while all are intact).
	Err() error
	// Report records damage the registry found itself, in the stream
	// named (see integrity.StreamError), or in its log if stream is "".
	Report(stream, problem string)
	// Resolve withdraws a problem Report recorded, once the registry has
	// seen it mended.
	Resolve(stream, problem string)
	// Mark returns a mark of the damage reported so far, taken as a
	// scrub begins; Cleared tells that the scrub found stream ("" for
	// the log) whole, which withdraws the damage held against it since
	// before mark (reported while no leader of it was known, so that no
	// election could drop it).
	Mark() uint64
	Cleared(stream string, mark uint64)
	// Holds reports whether such damage is held against any stream: a
	// scrub that fails for another reason is then tried again shortly.
	Holds() bool
}

// CheckpointFile keeps this replica's checkpoint on its own disk; see
// integrity.File.
type CheckpointFile interface {
	Load() (integrity.Checkpoint, error)
	Save(integrity.Checkpoint) error
}

// Limiter limits registration attempts per client address.
type Limiter interface {
	Allow(ctx context.Context, addr netip.Addr) error
}

// Config is the registry's configuration.
type Config struct {
	// Domain is the home domain; only its handles are registered and served.
	Domain string
	// Freshness is how far a registration timestamp may be from Now.
	Freshness time.Duration
	// Reserved local parts answer kez.ErrReservedHandle.
	Reserved kez.Reserved
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// PreRate and PreBurst are the in-memory limit per address and
	// replica that refuses attempts before they are verified (5 a second,
	// a burst of 20 if zero); set them above the shared limit's rate.
	PreRate  float64
	PreBurst int
	// PreNetRate and PreNetBurst are the same per IPv6 /48 (ten times
	// PreRate and PreBurst if zero); set them above the shared limit's
	// rate per /48.
	PreNetRate  float64
	PreNetBurst int
	// Integrity, if set, refuses registrations while a log is damaged and
	// receives the damage the registry finds (a claim its projection holds
	// and the log forgot, a checkpoint the log no longer matches).
	Integrity Integrity
	// CheckpointFile, if set, keeps this replica's checkpoint on its own
	// disk (saved at most once a second) and checks the log against it.
	CheckpointFile CheckpointFile
	// ScrubRate bounds the background scrub, in events per second
	// (DefaultScrubRate if zero); ScrubInterval is the time between scrubs
	// (DefaultScrubInterval if zero). A scrub re-hashes the log from its
	// start and compares the tree with every checkpoint known.
	ScrubRate     int
	ScrubInterval time.Duration
}

// Service is one replica's registry.
type Service struct {
	cfg     Config
	log     Log
	proj    Projection
	limiter Limiter
	pre     *prelimit
	// logReads bounds the look-ups that miss the cache and the
	// projection and so read the log's claim from its leader (see
	// logRead).
	logReads *rate.Limiter
	logger   *slog.Logger
	cache    *Cache

	fileCP    integrity.Checkpoint // read from CheckpointFile at start
	scrubKick chan struct{}        // starts a scrub now
	gated     atomic.Bool          // Run or Handler was called: registrations wait for skelDone
	skelDone  chan struct{}        // closed when MigrateSkeletons has passed

	mu      sync.Mutex
	applied uint64               // last sequence this replica's projector applied
	hashed  uint64               // last sequence it hashed, checked and cached (announced)
	cp      integrity.Checkpoint // this replica's checkpoint at applied
	advance chan struct{}        // closed and replaced when hashed moves
	stalled bool                 // the projector stopped and has not yet started again
	caught  bool                 // projector reached the end of the log once
	// conflicts are the projection writes the projector found
	// conflicting and reported (the bucket held another value than the
	// log's event), each with the last event of the write: it is mended
	// once the projection passes that event (a replica's write of it
	// passed: after a rebuild, or an entry put right).
	conflicts map[conflict]uint64
	// buckets are the streams other than the log the registry reported
	// damage against: a scrub that finds them whole says so (cleared).
	buckets map[string]bool
}

// conflict is a problem reported against a stream.
type conflict struct{ stream, problem string }

// New returns a registry service; call Run to start its projector and
// cache.
func New(cfg Config, log Log, proj Projection, limiter Limiter, logger *slog.Logger) (*Service, error) {
	if err := kez.ValidateDomain(cfg.Domain); err != nil {
		return nil, fmt.Errorf("registry domain: %w", err)
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = kez.DefaultFreshness
	}
	if cfg.Reserved == nil {
		cfg.Reserved = kez.NewReserved(kez.DefaultReserved...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ScrubRate <= 0 {
		cfg.ScrubRate = DefaultScrubRate
	}
	if cfg.ScrubInterval <= 0 {
		cfg.ScrubInterval = DefaultScrubInterval
	}
	var fileCP integrity.Checkpoint
	if cfg.CheckpointFile != nil {
		var err error
		if fileCP, err = cfg.CheckpointFile.Load(); err != nil {
			return nil, err
		}
	}
	return &Service{
		cfg: cfg, log: log, proj: proj, limiter: limiter, pre: newPrelimit(cfg),
		logReads:  rate.NewLimiter(logReadRate, logReadBurst),
		logger:    logger.With("component", "registry"),
		cache:     newCache(),
		advance:   make(chan struct{}),
		conflicts: map[conflict]uint64{},
		buckets:   map[string]bool{},
		fileCP:    fileCP,
		scrubKick: make(chan struct{}, 1),
		skelDone:  make(chan struct{}),
	}, nil
}

// Cache returns the replica's in-memory view of the projection.
func (s *Service) Cache() *Cache { return s.cache }

// Domain returns the home domain.
func (s *Service) Domain() string { return s.cfg.Domain }

// Register verifies req, claims its handle, key and skeleton, and returns
// the record once this replica's projector has hashed its event into the
// tree, checked the tree against every checkpoint it knows and put the
// record in the cache (the projection's bucket writes follow: look-ups
// here read the cache), or after projectWait with the record put in this
// replica's cache (read-your-writes either way: a look-up here after the
// answer finds it). client is the caller's address for the rate limit.
//
// Errors wrap kez.ErrRateLimited (kez.ErrNetRateLimited when the
// client's IPv6 /48 is over its limit), kez.ErrInvalidHandle, kez.ErrWrongDomain,
// kez.ErrStaleTimestamp, kez.ErrBadSignature, kez.ErrReservedHandle,
// kez.ErrHandleTaken, kez.ErrKeyTaken, kez.ErrHandleTooSimilar,
// kez.ErrLogDamaged or kez.ErrUnavailable.
//
// While a log is damaged every registration is refused (ErrLogDamaged),
// and a handle, key or skeleton this replica's projection holds for
// another registration is never claimed again, whatever the log says.
func (s *Service) Register(ctx context.Context, req kez.RegistrationRequest, client netip.Addr) (kez.HandleRecord, error) {
	// A request that fails verification writes nothing: the shared limit
	// (a JetStream record per request) counts only verified ones, and an
	// address sending faster than any person registers is refused in
	// memory before its signature costs anything.
	if err := s.pre.allow(client); err != nil {
		return kez.HandleRecord{}, err
	}
	h, err := req.Verify(s.cfg.Domain, s.cfg.Now(), s.cfg.Freshness)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	if err := s.limiter.Allow(ctx, client); err != nil {
		return kez.HandleRecord{}, err
	}
	if s.cfg.Reserved.Contains(h) {
		return kez.HandleRecord{}, fmt.Errorf("%w: %s", kez.ErrReservedHandle, h.Local())
	}
	ev := kez.RegistryEvent{
		Type:            kez.EventHandleRegistered,
		Handle:          h,
		Primary:         req.Primary,
		RegisteredAt:    req.Timestamp,
		RegistrationSig: req.RegistrationSig,
	}
	if s.cfg.Integrity != nil {
		if err := s.cfg.Integrity.Err(); err != nil {
			return kez.HandleRecord{}, err
		}
	}
	if err := s.awaitSkeletons(ctx); err != nil {
		return kez.HandleRecord{}, err
	}
	if err := s.checkClaims(ctx, ev); err != nil {
		return kez.HandleRecord{}, err
	}
	stored, seq, err := s.log.Append(ctx, ev)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	rec := stored.Record(seq)
	wctx, cancel := context.WithTimeout(ctx, projectWait)
	defer cancel()
	if err := s.waitHashed(wctx, seq); err != nil {
		// Stored and durable, but not yet projected here: still a
		// success. The log decided the claim, so its record is what the
		// projector will put in the cache: it goes there now (below),
		// and a look-up here after the answer finds it all the same.
		s.logger.Warn("registration stored but not yet projected", "handle", h.String(), "seq", seq, "err", err)
	}
	// The projector cached the record when it hashed the event, unless
	// the cache holds its handle, key or skeleton for another
	// registration: then the log holds two claims to one of them (a
	// damaged leader stored this one after another), and this replica
	// would never serve the answer. putFree finds the record cached, or
	// puts it: hashed may have been raised past it by the shared
	// checkpoint of a replica that projected it, before this replica's
	// watch of the bucket brought it here.
	if !s.cache.putFree(rec) {
		err := damaged("registration %d of %s is stored, but this replica holds another registration of its handle, key or look-alike", seq, h)
		s.report(err)
		return kez.HandleRecord{}, err
	}
	return rec, nil
}

// projectWait bounds a registration's wait for this replica's projector
// after its event is stored. A projector that lost its consumer or its
// stream's leader to a frozen or dead node restarts, which can take
// seconds; the registration does not wait for it. Under a load average of
// 17 on two cores, 99 % of projections took under 0.5 s (make chaos).
const projectWait = 2 * time.Second

// Lookup returns the record of h, served from the cache, or from the
// projection when the cache has not seen it yet, or else from the log's
// claim (see logRecord). It returns kez.ErrNotFound for handles the log
// holds no claim on and handles of other domains; kez.ErrUnavailable when
// the log cannot be read, and kez.ErrLogDamaged when its claim
// contradicts itself or this replica's cache.
func (s *Service) Lookup(ctx context.Context, h kez.Handle) (kez.HandleRecord, error) {
	if h.Domain() != s.cfg.Domain {
		return kez.HandleRecord{}, kez.ErrNotFound
	}
	if rec, ok := s.cache.Lookup(h.Local()); ok {
		return rec, nil
	}
	rec, err := s.proj.Get(ctx, h.Local())
	if !errors.Is(err, kez.ErrNotFound) {
		return rec, err
	}
	if err := s.logRead(); err != nil {
		return kez.HandleRecord{}, err
	}
	return s.logRecord(ctx, h)
}

// logReadRate and logReadBurst bound, per replica, the look-ups that
// read the log's leader: anyone may look up handles and keys (HTTP, no
// sign-in), and every unknown one misses the cache and the projection.
// Registered ones miss them only while this replica's projection lags,
// seconds at a time.
const (
	logReadRate  = 200
	logReadBurst = 400
)

// logRead takes one of the look-ups that may read the log's leader, or
// answers kez.ErrUnavailable (503: a client holds the message of a
// sender it cannot identify, and asks again later) once a flood of
// unknown handles or keys has taken them all.
func (s *Service) logRead() error {
	if !s.logReads.Allow() {
		return fmt.Errorf("%w: too many look-ups of handles and keys this server does not know yet; try again shortly", kez.ErrUnavailable)
	}
	return nil
}

// LookupKey returns the record of the handle bound to key, from the
// cache, the projection or else the log's claim (see logRecord); errors
// are Lookup's.
func (s *Service) LookupKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
	if rec, ok := s.cache.LookupKey(key); ok {
		return rec, nil
	}
	rec, err := s.proj.GetByKey(ctx, key)
	if !errors.Is(err, kez.ErrNotFound) {
		return rec, err
	}
	if err := s.logRead(); err != nil {
		return kez.HandleRecord{}, err
	}
	h, err := s.log.KeyHandle(ctx, key)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	// The key, the skeleton and the handle are claimed in one atomic
	// batch: the handle the key's claim names is registered, to key.
	rec, err = s.Lookup(ctx, h)
	switch {
	case errors.Is(err, kez.ErrNotFound):
		err = damaged("the log's claim on key %s names handle %s, which has no registration", key, h)
	case err == nil && !rec.Primary.Equal(key):
		err = damaged("the log's claim on key %s names handle %s, registered to %s (sequence %d)", key, h, rec.Primary, rec.Seq)
	}
	if err != nil {
		s.report(err)
		return kez.HandleRecord{}, err
	}
	return rec, nil
}

// logRecord returns the registration of h as the log's leader holds it,
// for a look-up that this replica's cache and projection miss. They lag
// the log (a projector restarting, a bucket read from a follower), while
// the callout and the door admit whoever the log holds: "not found" here
// would deny a registered user to those it writes to (a client drops a
// message from a key with no handle). The log's event is the truth the
// projection is made of, and it carries the registration signature
// clients check, so it is answered as it is, not with a 503 that makes
// every caller wait for this replica's projector. It is not cached: the
// projector caches records in log order, with their sequence; this one
// has Seq 0.
//
// It returns kez.ErrNotFound if the log holds no claim on h, and an error
// wrapping kez.ErrLogDamaged (reported) for a claim that is not a valid
// registration of h, or whose key or look-alike this replica's cache holds
// for another handle: a replica never serves two holders of one claim.
func (s *Service) logRecord(ctx context.Context, h kez.Handle) (kez.HandleRecord, error) {
	ev, err := s.log.HandleEvent(ctx, h.Local())
	if err != nil {
		return kez.HandleRecord{}, err
	}
	rec := ev.Record(0)
	switch verr := ev.Validate(); {
	case verr != nil:
		err = damaged("the log's claim on handle %s is not a valid registration: %v", h, verr)
	case ev.Handle != h:
		err = damaged("the log's claim on handle %s is a registration of %s", h, ev.Handle)
	case s.cache.holdsOther(rec):
		err = damaged("the log's claim on handle %s is by %s, whose key or look-alike this replica's projection holds for another handle", h, ev.Primary)
	}
	if err != nil {
		s.report(err)
		return kez.HandleRecord{}, err
	}
	return rec, nil
}

// Health describes how current this replica's projection is.
type Health struct {
	Applied    uint64 `json:"applied"`     // last sequence projected by this replica
	LastSeq    uint64 `json:"last_seq"`    // sequence of the log's last event
	Lag        uint64 `json:"lag"`         // events not yet projected here
	CacheReady bool   `json:"cache_ready"` // the look-up cache holds the whole projection
	CaughtUp   bool   `json:"caught_up"`   // Lag is 0 and the cache is ready
	// Events and Root are this replica's tree head: the number of events
	// up to Applied and the RFC 6962 root hash over them.
	Events uint64         `json:"events"`
	Root   integrity.Hash `json:"root"`
}

// Health reports the projection lag of this replica.
func (s *Service) Health(ctx context.Context) (Health, error) {
	last, err := s.log.LastSeq(ctx)
	if err != nil {
		return Health{}, err
	}
	s.mu.Lock()
	h := Health{Applied: s.applied, LastSeq: last, CacheReady: s.cache.Ready(), Events: s.cp.Tree.Size, Root: s.cp.Tree.Root()}
	caught := s.caught
	s.mu.Unlock()
	if last > h.Applied {
		h.Lag = last - h.Applied
	}
	h.CaughtUp = caught && h.Lag == 0 && h.CacheReady
	return h, nil
}

// Run keeps the projector and the cache watch running until ctx ends,
// restarting either after a failure (a broker outage, a leader change),
// and runs the skeleton migration (MigrateSkeletons) once they have
// caught up; registrations wait for it.
func (s *Service) Run(ctx context.Context) error {
	s.gated.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { s.migrateSkeletons(ctx) })
	wg.Go(func() { s.forever(ctx, "projector", s.project) })
	wg.Go(func() {
		s.forever(ctx, "cache watch", func(ctx context.Context) error {
			return s.proj.Watch(ctx, s.cache.put, s.cache.setReady)
		})
	})
	wg.Go(func() { s.scrubLoop(ctx) })
	if s.cfg.CheckpointFile != nil {
		wg.Go(func() { s.saveLoop(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func (s *Service) forever(ctx context.Context, what string, fn func(context.Context) error) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		started := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			// It ran a good while: this failure is not one of a series
			// (a projector that fails now and then must not wait 5 s
			// every time, with registrations waiting on it).
			attempt = 0
		}
		wait := min(time.Duration(attempt+1)*250*time.Millisecond, 5*time.Second)
		s.logger.Error(what+" stopped; restarting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// project applies the log from the shared checkpoint on; see
// projectFrom. The tree it extends is checked against this replica's own
// checkpoints (in memory and in its file) as it passes them.
func (s *Service) project(ctx context.Context) error {
	defer s.setStalled()
	start, err := s.proj.Checkpoint(ctx)
	if err != nil {
		return err
	}
	last, err := s.log.LastSeq(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	own := s.cp
	s.mu.Unlock()
	known := []namedCheckpoint{{"this replica", own}, {"this replica's checkpoint file", s.fileCP}}
	if err := checkAt(known, start.Seq, start.Tree, start.LastLeaf); err != nil {
		s.report(err)
		return err
	}
	s.setApplied(start, start.Seq, start.Seq >= last)
	err = projectFrom(ctx, s.log, s.proj, s.logger, start, known, func(recs []kez.HandleRecord, seq uint64) {
		// Hashed and checked: the registrations waiting are answered
		// now, their records in the cache; a record the cache holds
		// for another registration is left to the bucket write, which
		// is refused and reported.
		for _, rec := range recs {
			s.cache.putFree(rec)
		}
		s.setHashed(seq)
	}, func(recs []kez.HandleRecord, cp integrity.Checkpoint, caughtUp bool) error {
		for _, rec := range recs {
			s.cache.put(rec)
		}
		s.mu.Lock()
		s.stalled = false // following again
		s.mu.Unlock()
		s.setApplied(cp, cp.Seq, caughtUp)
		return nil
	})
	if stream, problem := s.report(err); stream != "" {
		// Damage of a bucket, found by a projection write: it stands
		// until the projection passes the events of that write.
		var ae *applyError
		if errors.As(err, &ae) {
			s.mu.Lock()
			c := conflict{stream, problem}
			s.conflicts[c] = max(s.conflicts[c], ae.last)
			s.mu.Unlock()
		}
	}
	return err
}

// maxBatch bounds the events the projector applies at once (their
// writes all in flight together), and maxQueued the events it has
// hashed and announced but not yet applied.
const (
	maxBatch  = 512
	maxQueued = 8 * maxBatch
)

// applyEvery is the least time between the starts of two rounds of
// projection writes while fewer than maxBatch events wait for one. The
// writes are not what a registration waits for (it is answered once its
// event is hashed, checked and cached), and each round costs a
// replicated write (a Raft round with an fsync on every node) in each of
// the three buckets however few events it holds: spacing the rounds lets
// a busy projector write many events a round. Idle, the wait is a few
// milliseconds of lag of the buckets and their checkpoint.
const applyEvery = 25 * time.Millisecond

// projectFrom applies the log after the checkpoint start to proj, in
// batches: the events waiting in the log (at most maxBatch) are hashed
// into the tree and checked, announced to hashed (if not nil) with their
// records, then applied (ApplyBatch, several batches together if they
// wait), then done is called with their records and the checkpoint after
// them, and only then may the shared checkpoint move past them. Every
// event is a leaf, whether it decodes or not: the tree is over what the
// log holds. Passing the sequence of a checkpoint in known, the tree must
// be that checkpoint's, else it returns an error wrapping
// kez.ErrLogDamaged, before that event is announced. Every step is
// idempotent (see streams.Projection.ApplyBatch), so events applied by a
// replica that died before moving the checkpoint are applied again with
// no second effect, and replicas projecting side by side agree. A
// handle_registered event touches only its own handle and key, so events
// commute; done and the checkpoint still move in log order.
//
// The events are hashed as they arrive and applied by another goroutine
// (at most maxQueued behind), and the shared checkpoint is written by a
// third, one write in flight, each of the latest checkpoint done when it
// starts. A batch is announced only once the write of every checkpoint
// done before it has passed. A failed write or application stops the
// projector at once, and no event is announced after it.
func projectFrom(ctx context.Context, log Log, proj Projection, logger *slog.Logger, start integrity.Checkpoint,
	known []namedCheckpoint, hashed func(recs []kez.HandleRecord, seq uint64),
	done func(recs []kez.HandleRecord, cp integrity.Checkpoint, caughtUp bool) error) (err error) {
	var batch []kez.RegistryEntry
	tree, prev := start.Tree.Clone(), start.Seq
	fctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// A projector that stops for another reason than a failed write
	// abandons its writes in flight (the checkpoint stays lower, applying
	// again has no effect) rather than wait out a leader that froze
	// with them.
	wctx, abandon := context.WithCancel(ctx)
	cw := newCheckpointWriter()
	ap := &applier{kick: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan error, 1)}
	go cw.run(wctx, proj, stop)
	go ap.run(wctx, proj, done, cw, stop)
	defer func() {
		abandon()
		for _, werr := range []error{<-ap.done, <-cw.done} {
			switch {
			case werr == nil || errors.Is(werr, context.Canceled) && ctx.Err() == nil:
			case context.Cause(fctx) == werr:
				err = werr
			default:
				err = errors.Join(err, werr)
			}
		}
	}()
	return log.Follow(fctx, start.Seq, func(e kez.RegistryEntry) error {
		leaf := integrity.LeafHash(e.Data)
		tree.Append(leaf)
		if err := checkPassed(known, prev, e.Seq, tree, leaf); err != nil {
			return err
		}
		prev = e.Seq
		batch = append(batch, e)
		if e.Pending > 0 && len(batch) < maxBatch {
			return nil
		}
		// A registration is answered only past a checkpoint no other
		// replica disputes: the write of the latest checkpoint applied
		// must have passed (it is usually done: writes are paced with
		// the rounds of bucket writes, and cover several batches).
		if err := cw.settle(fctx); err != nil {
			return err // a write failed: announce nothing more
		}
		recs := batchRecords(logger, batch)
		if hashed != nil {
			hashed(recs, e.Seq)
		}
		item := applyItem{recs: recs, events: len(batch), first: batch[0].Seq,
			cp: integrity.Checkpoint{Seq: e.Seq, Tree: tree.Clone(), LastLeaf: leaf}, caughtUp: e.Pending == 0}
		batch = batch[:0]
		return ap.add(fctx, item)
	})
}

// applyError is a failed application of the events first to last.
type applyError struct {
	first, last uint64
	err         error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("apply events %d to %d: %v", e.first, e.last, e.err)
}

func (e *applyError) Unwrap() error { return e.err }

// applyItem is a batch of events hashed and announced, to be applied.
type applyItem struct {
	recs     []kez.HandleRecord
	events   int    // the events of the batch, recs and those skipped
	first    uint64 // the sequence of its first event
	cp       integrity.Checkpoint
	caughtUp bool
}

// applier applies the batches the projector hashed, in order, several
// waiting batches in one round, a round at most every applyEvery unless
// maxBatch events wait.
type applier struct {
	mu     sync.Mutex
	queue  []applyItem
	events int
	kick   chan struct{} // a batch was added
	room   chan struct{} // batches were taken
	done   chan error    // the applier's end: nil, or what failed
}

// add queues it, waiting while maxQueued events are queued.
func (a *applier) add(ctx context.Context, it applyItem) error {
	for {
		a.mu.Lock()
		if a.events < maxQueued {
			a.queue = append(a.queue, it)
			a.events += it.events
			a.mu.Unlock()
			break
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-a.room:
		}
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// take removes the batches of the next round: the oldest, and those
// after it while the round holds at most maxBatch events.
func (a *applier) take() []applyItem {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, events := 0, 0
	for n < len(a.queue) && (n == 0 || events+a.queue[n].events <= maxBatch) {
		events += a.queue[n].events
		n++
	}
	items := append([]applyItem(nil), a.queue[:n]...)
	a.queue = append(a.queue[:0], a.queue[n:]...)
	a.events -= events
	select {
	case a.room <- struct{}{}:
	default:
	}
	return items
}

// waiting returns the events queued.
func (a *applier) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.events
}

// run applies queued batches until ctx ends or a round fails, which it
// passes to stop; after each round it calls done once, with the round's
// records and the checkpoint after its last batch, and hands that
// checkpoint to cw.
func (a *applier) run(ctx context.Context, proj Projection, done func([]kez.HandleRecord, integrity.Checkpoint, bool) error,
	cw *checkpointWriter, stop context.CancelCauseFunc) {
	fail := func(err error) {
		stop(err)
		a.done <- err
	}
	var last time.Time
	for {
		if a.waiting() == 0 {
			select {
			case <-ctx.Done():
				a.done <- nil
				return
			case <-a.kick:
				continue
			}
		}
		if wait := applyEvery - time.Since(last); wait > 0 && a.waiting() < maxBatch {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				a.done <- nil
				return
			case <-t.C:
			}
		}
		items := a.take()
		last = time.Now()
		var recs []kez.HandleRecord
		for _, it := range items {
			recs = append(recs, it.recs...)
		}
		end := items[len(items)-1]
		if err := proj.ApplyBatch(ctx, recs); err != nil {
			fail(&applyError{first: items[0].first, last: end.cp.Seq, err: err})
			return
		}
		if err := done(recs, end.cp, end.caughtUp); err != nil {
			fail(err)
			return
		}
		cw.set(end.cp)
	}
}

// checkpointWriter writes the shared checkpoint, one write at a time,
// each of the latest checkpoint set.
type checkpointWriter struct {
	mu      sync.Mutex
	next    integrity.Checkpoint
	written uint64        // the sequence of the last checkpoint written
	wrote   chan struct{} // closed and replaced at every write that passed
	kick    chan struct{}
	done    chan error // the writer's end: nil, or the write that failed
}

func newCheckpointWriter() *checkpointWriter {
	return &checkpointWriter{wrote: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan error, 1)}
}

// set makes cp the checkpoint to write next.
func (w *checkpointWriter) set(cp integrity.Checkpoint) {
	w.mu.Lock()
	w.next = cp
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// settle waits until every checkpoint set so far is written (the write
// of the latest passed: no other replica disputes it), or ctx ends.
func (w *checkpointWriter) settle(ctx context.Context) error {
	for {
		w.mu.Lock()
		settled, wrote := w.written >= w.next.Seq, w.wrote
		w.mu.Unlock()
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-wrote:
		}
	}
}

// run writes checkpoints until ctx ends or a write fails, which it passes
// to stop.
func (w *checkpointWriter) run(ctx context.Context, proj Projection, stop context.CancelCauseFunc) {
	for {
		select {
		case <-ctx.Done():
			w.done <- nil
			return
		case <-w.kick:
		}
		w.mu.Lock()
		cp, written := w.next, w.written
		w.mu.Unlock()
		if cp.Seq <= written {
			continue
		}
		if err := proj.SetCheckpoint(ctx, cp); err != nil {
			stop(err)
			w.done <- err
			return
		}
		w.mu.Lock()
		w.written = cp.Seq
		close(w.wrote)
		w.wrote = make(chan struct{})
		w.mu.Unlock()
	}
}

// batchRecords returns the records of the entries of batch. An entry that
// does not decode or validate is skipped: only our own services can write
// the log, so it is a bug or tampering, reported loudly, but it must not
// stall every later registration.
func batchRecords(logger *slog.Logger, batch []kez.RegistryEntry) []kez.HandleRecord {
	recs := make([]kez.HandleRecord, 0, len(batch))
	for _, e := range batch {
		err := e.Err
		if err == nil {
			err = e.Event.Validate()
		}
		if err != nil {
			logger.Error("skipping invalid registry event", "seq", e.Seq, "err", err)
			continue
		}
		recs = append(recs, e.Event.Record(e.Seq))
	}
	return recs
}

// setApplied records that this replica's projection reached seq; cp, if
// not zero, is its checkpoint there.
func (s *Service) setApplied(cp integrity.Checkpoint, seq uint64, caughtUp bool) {
	s.mu.Lock()
	if caughtUp {
		s.caught = true
	}
	if cp.Seq > s.cp.Seq {
		s.cp = cp
	}
	if seq > s.applied {
		s.applied = seq
	}
	s.raiseHashed(seq)
	var mended []conflict
	for c, upTo := range s.conflicts {
		if seq >= upTo {
			mended = append(mended, c)
			delete(s.conflicts, c)
		}
	}
	s.mu.Unlock()
	for _, c := range mended {
		if s.cfg.Integrity != nil {
			s.cfg.Integrity.Resolve(c.stream, c.problem)
		}
		s.logger.Info("projection conflict mended", "stream", c.stream, "problem", c.problem, "seq", seq)
	}
}

// setHashed records that this replica's projector hashed, checked and
// cached the events up to seq, and wakes the registrations waiting.
func (s *Service) setHashed(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = false // following again
	s.raiseHashed(seq)
}

// raiseHashed moves hashed up to seq; s.mu is held.
func (s *Service) raiseHashed(seq uint64) {
	if seq > s.hashed {
		s.hashed = seq
		close(s.advance)
		s.advance = make(chan struct{})
	}
}

// setStalled records that the projector stopped: registrations waiting
// on it stop waiting.
func (s *Service) setStalled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = true
	close(s.advance)
	s.advance = make(chan struct{})
}

// errStalled: the projector stopped and is starting again.
var errStalled = errors.New("the projector is restarting")

// waitHashed blocks until this replica's projector has hashed, checked
// and cached seq, or returns errStalled as soon as the projector is found
// stopped (a projector that lost its stream's leader or consumer
// restarts only once the cluster answers again, which can take seconds).
func (s *Service) waitHashed(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		done, stalled, ch := s.hashed >= seq, s.stalled, s.advance
		s.mu.Unlock()
		if done {
			return nil
		}
		if stalled {
			return errStalled
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
