package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

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
	logger  *slog.Logger
	cache   *Cache

	fileCP    integrity.Checkpoint // read from CheckpointFile at start
	scrubKick chan struct{}        // starts a scrub now

	mu      sync.Mutex
	applied uint64               // last sequence this replica's projector applied
	cp      integrity.Checkpoint // this replica's checkpoint at applied
	advance chan struct{}        // closed and replaced when applied moves
	stalled bool                 // the projector stopped and has not yet started again
	caught  bool                 // projector reached the end of the log once
}

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
		cfg: cfg, log: log, proj: proj, limiter: limiter, pre: newPrelimit(cfg.PreRate, cfg.PreBurst),
		logger:    logger.With("component", "registry"),
		cache:     newCache(),
		advance:   make(chan struct{}),
		fileCP:    fileCP,
		scrubKick: make(chan struct{}, 1),
	}, nil
}

// Cache returns the replica's in-memory view of the projection.
func (s *Service) Cache() *Cache { return s.cache }

// Domain returns the home domain.
func (s *Service) Domain() string { return s.cfg.Domain }

// Register verifies req, claims its handle, key and skeleton, and returns
// the record once this replica has projected it, or after projectWait
// with the record put in this replica's cache (read-your-writes either
// way: a look-up here after the answer finds it). client is the caller's
// address for the rate limit.
//
// Errors wrap kez.ErrRateLimited, kez.ErrInvalidHandle, kez.ErrWrongDomain,
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
	if !s.pre.allow(client) {
		return kez.HandleRecord{}, fmt.Errorf("%w: too many registration attempts from this address", kez.ErrRateLimited)
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
	if err := s.waitApplied(wctx, seq); err != nil {
		// Stored and durable, but not yet projected here: still a
		// success. The log decided the claim, so its record is what the
		// projector will put in the cache: put it there now, and a
		// look-up here after the answer finds it all the same.
		s.cache.put(rec)
		s.logger.Warn("registration stored but not yet projected", "handle", h.String(), "seq", seq, "err", err)
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
// projection when the cache has not seen it yet. It returns kez.ErrNotFound
// for unknown handles and handles of other domains.
func (s *Service) Lookup(ctx context.Context, h kez.Handle) (kez.HandleRecord, error) {
	if h.Domain() != s.cfg.Domain {
		return kez.HandleRecord{}, kez.ErrNotFound
	}
	if rec, ok := s.cache.Lookup(h.Local()); ok {
		return rec, nil
	}
	return s.proj.Get(ctx, h.Local())
}

// LookupKey returns the record of the handle bound to key, or kez.ErrNotFound.
func (s *Service) LookupKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
	if rec, ok := s.cache.LookupKey(key); ok {
		return rec, nil
	}
	return s.proj.GetByKey(ctx, key)
}

// Health describes how current this replica's projection is.
type Health struct {
	Applied    uint64 `json:"applied"`     // last sequence projected by this replica
	LastSeq    uint64 `json:"last_seq"`    // last sequence of the log
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
// restarting either after a failure (a broker outage, a leader change).
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
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
	err = projectFrom(ctx, s.log, s.proj, s.logger, start, known, func(recs []kez.HandleRecord, cp integrity.Checkpoint, caughtUp bool) error {
		for _, rec := range recs {
			s.cache.put(rec)
		}
		s.mu.Lock()
		s.stalled = false // following again
		s.mu.Unlock()
		s.setApplied(cp, cp.Seq, caughtUp)
		return nil
	})
	s.report(err)
	return err
}

// maxBatch bounds the events already waiting in the log that the
// projector applies at once (their writes all in flight together).
const maxBatch = 512

// projectFrom applies the log after the checkpoint start to proj, in
// batches: the events waiting in the log (at most maxBatch) are hashed
// into the tree and applied together (ApplyBatch), then done is called with their
// records and the checkpoint after them, and only then is the shared
// checkpoint moved past them (while the next batch is applied). Every event is a leaf, whether it decodes or
// not: the tree is over what the log holds. Passing the sequence of a
// checkpoint in known, the tree must be that checkpoint's, else it returns
// an error wrapping kez.ErrLogDamaged. Every step
// is idempotent (see streams.Projection.ApplyBatch), so events applied by a
// replica that died before moving the pointer are applied again with no
// second effect, and replicas projecting side by side agree. A
// handle_registered event touches only its own handle and key, so events
// of one batch commute; the pointer still moves in log order.
func projectFrom(ctx context.Context, log Log, proj Projection, logger *slog.Logger, start integrity.Checkpoint,
	known []namedCheckpoint, done func(recs []kez.HandleRecord, cp integrity.Checkpoint, caughtUp bool) error) (err error) {
	var batch []kez.RegistryEntry
	tree, prev := start.Tree.Clone(), start.Seq
	// The shared checkpoint is written beside the next batch's writes, at
	// most one write in flight: a batch waits for the write before its
	// own, so the checkpoint still moves in log order and only past
	// applied events, but registrations waiting on the projector no
	// longer wait for the checkpoint's round trip as well.
	var writing chan error
	wrote := func() error {
		if writing == nil {
			return nil
		}
		err := <-writing
		writing = nil
		return err
	}
	// A failed write stops the projector at once, even with no event
	// after it; a projector that stops for another reason abandons its
	// write in flight (the checkpoint stays lower, applying again has no
	// effect) rather than wait out a leader that froze with it.
	fctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	wctx, abandon := context.WithCancel(ctx)
	defer func() {
		abandon()
		werr := wrote()
		switch {
		case werr == nil || errors.Is(werr, context.Canceled) && ctx.Err() == nil:
		case context.Cause(fctx) == werr:
			err = werr
		default:
			err = errors.Join(err, werr)
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
		recs, err := applyBatch(ctx, proj, logger, batch)
		if err != nil {
			return err
		}
		batch = batch[:0]
		// The previous checkpoint's write must have passed before this
		// batch is announced: a registration is answered only past a
		// checkpoint no other replica disputes.
		if err := wrote(); err != nil {
			return err
		}
		cp := integrity.Checkpoint{Seq: e.Seq, Tree: tree.Clone(), LastLeaf: leaf}
		if err := done(recs, cp, e.Pending == 0); err != nil {
			return err
		}
		ch := make(chan error, 1)
		go func() {
			err := proj.SetCheckpoint(wctx, cp)
			if err != nil {
				stop(err)
			}
			ch <- err
		}()
		writing = ch
		return nil
	})
}

// applyBatch projects entries together and returns the records it
// projected. An entry that does not decode or validate is skipped: only our
// own services can write the log, so it is a bug or tampering, reported
// loudly, but it must not stall every later registration.
func applyBatch(ctx context.Context, proj Projection, logger *slog.Logger, batch []kez.RegistryEntry) ([]kez.HandleRecord, error) {
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
	if err := proj.ApplyBatch(ctx, recs); err != nil {
		return nil, fmt.Errorf("apply events %d to %d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err)
	}
	return recs, nil
}

// setApplied records that this replica's projection reached seq; cp, if
// not zero, is its checkpoint there.
func (s *Service) setApplied(cp integrity.Checkpoint, seq uint64, caughtUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if caughtUp {
		s.caught = true
	}
	if cp.Seq > s.cp.Seq {
		s.cp = cp
	}
	if seq > s.applied {
		s.applied = seq
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

// waitApplied blocks until this replica has projected seq, or returns
// errStalled as soon as the projector is found stopped (a projector
// that lost its stream's leader or consumer restarts only once the
// cluster answers again, which can take seconds).
func (s *Service) waitApplied(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		done, stalled, ch := s.applied >= seq, s.stalled, s.advance
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
