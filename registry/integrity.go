package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
)

// Defaults of the background scrub.
const (
	DefaultScrubRate     = 2000
	DefaultScrubInterval = time.Hour
)

// damaged returns an error wrapping kez.ErrLogDamaged.
func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", kez.ErrLogDamaged, fmt.Sprintf(format, args...))
}

// report files err with Integrity if it is damage, and returns the
// stream ("" for the registry's log) and problem it filed.
func (s *Service) report(err error) (stream, problem string) {
	if err == nil || !errors.Is(err, kez.ErrLogDamaged) {
		return "", ""
	}
	var se *integrity.StreamError
	if errors.As(err, &se) {
		stream, err = se.Stream, se.Err
	}
	problem = strings.TrimPrefix(err.Error(), kez.ErrLogDamaged.Error()+": ")
	if stream != "" {
		s.mu.Lock()
		s.buckets[stream] = true
		s.mu.Unlock()
	}
	if s.cfg.Integrity != nil {
		s.cfg.Integrity.Report(stream, problem)
	} else {
		s.logger.Error("registry log damaged", "stream", stream, "problem", problem)
	}
	return stream, problem
}

// checkClaims refuses a registration whose handle, key or skeleton this
// replica's projection holds for another registration. The log's own
// first-come-first-served check cannot be trusted alone: a damaged stream
// leader that lost the claim would accept it again. A conflict costs one
// read of that claim from the log's leader (nothing is read when the cache
// knows of no conflict): the log agreeing gives the usual 409; the log not
// knowing the claim, or naming another holder, is damage, reported, and
// the registration is refused with kez.ErrLogDamaged.
func (s *Service) checkClaims(ctx context.Context, ev kez.RegistryEvent) error {
	local := ev.Handle.Local()
	if rec, ok := s.cache.Lookup(local); ok && rec.Primary.Equal(ev.Primary) {
		return nil // a retry: Append answers the event stored
	} else if ok {
		held, err := s.log.HandleEvent(ctx, local)
		switch {
		case errors.Is(err, kez.ErrNotFound):
			err = damaged("the log has no claim on handle %s, which this replica's projection holds for %s (sequence %d)",
				rec.Handle, rec.Primary, rec.Seq)
		case err == nil && !held.Primary.Equal(rec.Primary):
			err = damaged("the log's claim on handle %s is by %s, this replica's projection holds it for %s (sequence %d)",
				rec.Handle, held.Primary, rec.Primary, rec.Seq)
		case err == nil:
			return fmt.Errorf("%w: %s", kez.ErrHandleTaken, ev.Handle)
		}
		s.report(err)
		return err
	}
	if rec, ok := s.cache.LookupKey(ev.Primary); ok && rec.Handle != ev.Handle {
		return s.checkClaim(ctx, "key "+ev.Primary.String(), rec, kez.ErrKeyTaken,
			func(ctx context.Context) (kez.Handle, error) { return s.log.KeyHandle(ctx, ev.Primary) })
	}
	skel := ev.Handle.Skeleton()
	if rec, ok := s.cache.lookupSkeleton(skel); ok && rec.Handle != ev.Handle {
		return s.checkClaim(ctx, "skeleton "+skel, rec, kez.ErrHandleTooSimilar,
			func(ctx context.Context) (kez.Handle, error) { return s.skeletonHolder(ctx, rec) })
	}
	return nil
}

// skeletonHolder reads the log's claim on the skeleton of rec, which this
// replica's projection holds, through skeletonClaim: a handle registered
// by an older release (it holds its old-fold claim) that has no claim on
// its new skeleton yet is claimed now (a replica of that release
// registered it after this one's migration, during an upgrade), so the
// look-alike asking is refused here and everywhere; and a claim naming
// another handle of the same changed skeleton, a pair the old fold let
// through, answers for rec. Any other handle with no claim, or whose
// claim names another, is damage (checkClaim).
func (s *Service) skeletonHolder(ctx context.Context, rec kez.HandleRecord) (kez.Handle, error) {
	c, err := s.skeletonClaim(ctx, rec)
	if c.shared {
		return rec.Handle, err
	}
	return c.holder, err
}

// checkClaim compares the log's claim on what (read by holder) with rec,
// the registration this replica's projection says holds it.
func (s *Service) checkClaim(ctx context.Context, what string, rec kez.HandleRecord, taken error,
	holder func(context.Context) (kez.Handle, error)) error {
	h, err := holder(ctx)
	if err == nil && h == rec.Handle {
		return fmt.Errorf("%w: %s", taken, rec.Handle)
	}
	err = claimDamage(what, rec, h, err)
	s.report(err)
	return err
}

// claimDamage returns the damage of the log's claim on what, which this
// replica's projection holds for rec, when the log answered h, err for it
// (h another handle than rec's, or err kez.ErrNotFound); other errors are
// returned as they are.
func claimDamage(what string, rec kez.HandleRecord, h kez.Handle, err error) error {
	switch {
	case errors.Is(err, kez.ErrNotFound):
		return damaged("the log has no claim on %s, which this replica's projection holds for %s (sequence %d)", what, rec.Handle, rec.Seq)
	case err == nil:
		return damaged("the log's claim on %s is by %s, this replica's projection holds it for %s (sequence %d)", what, h, rec.Handle, rec.Seq)
	}
	return err
}

// namedCheckpoint is a checkpoint and where it came from, for messages.
type namedCheckpoint struct {
	source string
	cp     integrity.Checkpoint
}

// checkAt compares the tree (and last leaf) at sequence seq with every
// known checkpoint at that sequence.
func checkAt(known []namedCheckpoint, seq uint64, tree integrity.Tree, leaf integrity.Hash) error {
	for _, k := range known {
		if k.cp.Seq == 0 || k.cp.Seq != seq {
			continue
		}
		if k.cp.Tree.Size != tree.Size || k.cp.Tree.Root() != tree.Root() || k.cp.LastLeaf != leaf {
			return damaged("up to sequence %d the log hashes to %d events, root %s; %s recorded %d events, root %s",
				seq, tree.Size, tree.Root(), k.source, k.cp.Tree.Size, k.cp.Tree.Root())
		}
	}
	return nil
}

// checkPassed is checkAt for an event at seq read right after the one at
// prev, and also catches the log skipping a known checkpoint's sequence:
// the event the checkpoint ends with is gone.
func checkPassed(known []namedCheckpoint, prev, seq uint64, tree integrity.Tree, leaf integrity.Hash) error {
	for _, k := range known {
		if k.cp.Seq > prev && k.cp.Seq < seq {
			return damaged("the log has no event at sequence %d, where %s recorded event %d", k.cp.Seq, k.source, k.cp.Tree.Size)
		}
	}
	return checkAt(known, seq, tree, leaf)
}

// knownCheckpoints returns the checkpoints this replica knows: its own, its
// file's and the projection's.
func (s *Service) knownCheckpoints(ctx context.Context) ([]namedCheckpoint, error) {
	s.mu.Lock()
	own := s.cp
	s.mu.Unlock()
	shared, err := s.proj.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return []namedCheckpoint{
		{"this replica", own},
		{"this replica's checkpoint file", s.fileCP},
		{"the projection's checkpoint", shared},
	}, nil
}

// VerifyLog checks the log against every checkpoint this replica knows:
// the log reaches each checkpoint's sequence, and the event there is the
// one hashed. It reads one event per checkpoint from the log's leader. It
// is an integrity.Verifier: run on start, on every leader change and
// periodically.
func (s *Service) VerifyLog(ctx context.Context, st integrity.State) error {
	known, err := s.knownCheckpoints(ctx)
	if err != nil {
		return err
	}
	var problems []string
	seen := map[uint64]bool{}
	for _, k := range known {
		if k.cp.Seq == 0 || seen[k.cp.Seq] {
			continue
		}
		seen[k.cp.Seq] = true
		if st.LastSeq < k.cp.Seq {
			problems = append(problems, fmt.Sprintf("the log ends at sequence %d, but %s covers events up to sequence %d", st.LastSeq, k.source, k.cp.Seq))
			continue
		}
		data, err := s.log.Event(ctx, k.cp.Seq)
		if errors.Is(err, kez.ErrNotFound) {
			problems = append(problems, fmt.Sprintf("the log has no event at sequence %d, which %s covers", k.cp.Seq, k.source))
			continue
		}
		if err != nil {
			return err
		}
		if integrity.LeafHash(data) != k.cp.LastLeaf {
			problems = append(problems, fmt.Sprintf("the event at sequence %d is not the one %s hashed", k.cp.Seq, k.source))
		}
	}
	if len(problems) > 0 {
		return damaged("%s", strings.Join(problems, "; "))
	}
	return nil
}

// Kick starts a scrub now (if none is running).
func (s *Service) Kick() {
	select {
	case s.scrubKick <- struct{}{}:
	default:
	}
}

// scrubLoop scrubs every ScrubInterval, and when kicked, until ctx ends.
// A scrub that fails for a reason that is not damage (a read with no
// responders right after an election) is tried again after
// scrubRetryMin, doubling up to scrubRetryMax, while Integrity holds
// damage: only a scrub that passes withdraws it, and the new leader that
// started this one kicks no other, so waiting ScrubInterval would refuse
// registrations that long.
func (s *Service) scrubLoop(ctx context.Context) {
	t := time.NewTimer(s.cfg.ScrubInterval)
	defer t.Stop()
	behind := 0 // reads in a row that ended before the log's last sequence
	retry := scrubRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.scrubKick:
		}
		var mark uint64
		if s.cfg.Integrity != nil {
			mark = s.cfg.Integrity.Mark()
		}
		res, err := s.Scrub(ctx)
		if errors.Is(err, errScrubBehind) {
			// A new leader still applying the log: again shortly, and
			// damage only if it lasts.
			if behind++; behind < scrubBehindTries {
				s.logger.Info("registry scrub: the log read ended early; trying again", "err", err, "in", scrubBehindWait)
				t.Reset(scrubBehindWait)
				continue
			}
			err = damaged("%v (%d reads, %v apart)", err, behind, scrubBehindWait)
		}
		behind = 0
		failed := false // for a reason that is not damage
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, kez.ErrLogDamaged):
			s.report(err)
		case err != nil:
			s.logger.Warn("registry scrub", "err", err)
			failed = true
		default:
			s.logger.Info("registry scrub: the log matches every checkpoint", "events", res.Tree.Size, "seq", res.Seq, "root", res.Tree.Root().String())
			s.cleared(mark, res.Seq, nil)
		}
		if err == nil {
			n, bad, err := s.scrubProjection(ctx, res.Seq)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				s.logger.Warn("projection scrub", "err", err)
				failed = true
			default:
				s.logger.Info("projection scrub: every record checked", "records", n)
				s.cleared(mark, res.Seq, bad)
			}
		}
		if failed && s.cfg.Integrity != nil && s.cfg.Integrity.Holds() {
			s.logger.Info("registry scrub: damage is held until a scrub passes; trying again", "in", retry)
			t.Reset(retry)
			retry = min(2*retry, scrubRetryMax)
			continue
		}
		retry = scrubRetryMin
		t.Reset(s.cfg.ScrubInterval)
	}
}

// A scrub that failed while damage is held is tried again after
// scrubRetryMin, doubling up to scrubRetryMax (see scrubLoop).
const (
	scrubRetryMin = time.Second
	scrubRetryMax = 30 * time.Second
)

// cleared tells Integrity that a scrub begun at mark, which checked the
// log up to sequence upTo, found it whole (bad nil), or found the
// projection's records whole but in the buckets' streams of bad. The
// damage held since before mark (reported while no leader was known) is
// withdrawn from the log, or from each bucket the registry reported
// against that is not in bad and has no projection conflict pending (a
// conflict is an entry without an event, which the scrub does not see;
// it is withdrawn when mended). A scrub that checked nothing (no
// checkpoint yet) clears nothing. The log's scrub re-hashes its events
// and reads no claim, yet withdraws the claim damage held against the
// log too: a claim still wrong is found again (checkClaims) by any
// registration that meets it, which is refused.
func (s *Service) cleared(mark, upTo uint64, bad map[string]bool) {
	if s.cfg.Integrity == nil || upTo == 0 {
		return
	}
	if bad == nil {
		s.cfg.Integrity.Cleared("", mark)
		return
	}
	s.mu.Lock()
	whole := maps.Clone(s.buckets)
	for c := range s.conflicts {
		delete(whole, c.stream)
	}
	s.mu.Unlock()
	for stream := range whole {
		if !bad[stream] {
			s.cfg.Integrity.Cleared(stream, mark)
		}
	}
}

// errScrubbed stops the scrub's read of the log.
var errScrubbed = errors.New("scrubbed")

// errScrubBehind: the scrub's read of the log ended (its consumer saw
// nothing more) before the sequence the log's last sequence and a
// checkpoint both pass. A stream leader elected a moment ago can serve a
// read while it still applies what the log holds (make chaos saw one end
// at 159 of 669 after a node froze under load), which is not damage: the
// scrub reads again scrubBehindWait later, and calls it damage only after
// scrubBehindTries such reads in a row. A log that really ends early has
// a last sequence before the checkpoint, damage at once.
var errScrubBehind = errors.New("the log read ended before its last sequence")

const (
	scrubBehindTries = 4
	scrubBehindWait  = 15 * time.Second
)

// Scrub re-hashes the log from its first event, at most ScrubRate events
// a second, up to the highest checkpoint this replica knows, and compares
// the tree with every checkpoint on the way. It returns the checkpoint
// recomputed at the end, or an error wrapping kez.ErrLogDamaged.
func (s *Service) Scrub(ctx context.Context) (integrity.Checkpoint, error) {
	known, err := s.knownCheckpoints(ctx)
	if err != nil {
		return integrity.Checkpoint{}, err
	}
	var target uint64
	for _, k := range known {
		target = max(target, k.cp.Seq)
	}
	if target == 0 {
		return integrity.Checkpoint{}, nil
	}
	last, err := s.log.LastSeq(ctx)
	if err != nil {
		return integrity.Checkpoint{}, err
	}
	if last < target {
		return integrity.Checkpoint{}, damaged("the log ends at sequence %d, before the checkpoint at sequence %d", last, target)
	}
	// A log with no events left would never call back: bound the read.
	rate := s.cfg.ScrubRate
	ctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(target/uint64(rate)+1)*time.Second)
	defer cancel()
	var cp integrity.Checkpoint
	start := time.Now()
	err = s.log.Follow(ctx, 0, func(e kez.RegistryEntry) error {
		leaf := integrity.LeafHash(e.Data)
		cp.Tree.Append(leaf)
		prev := cp.Seq
		cp.Seq, cp.LastLeaf = e.Seq, leaf
		if err := checkPassed(known, prev, e.Seq, cp.Tree, leaf); err != nil {
			return err
		}
		if e.Seq >= target {
			return errScrubbed
		}
		if e.Pending == 0 {
			if last, err := s.log.LastSeq(ctx); err == nil && last >= target {
				return fmt.Errorf("%w: the events read end at sequence %d, the log's at %d, the checkpoint is at %d", errScrubBehind, e.Seq, last, target)
			}
			return damaged("the log's events end at sequence %d, before the checkpoint at sequence %d", e.Seq, target)
		}
		if n := cp.Tree.Size; n%64 == 0 {
			if d := time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate))); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		return nil
	})
	if errors.Is(err, errScrubbed) {
		return cp, nil
	}
	return cp, err
}

// scrubProjection checks, at most ScrubRate records a second, that every
// record this replica holds, up to sequence upTo, is in the projection
// buckets as it is here. Damage is reported, against the bucket's stream,
// and the check goes on; other errors stop it. It returns the records
// checked and the streams found damaged (never nil).
func (s *Service) scrubProjection(ctx context.Context, upTo uint64) (int, map[string]bool, error) {
	recs := s.cache.records()
	start := time.Now()
	n := 0
	bad := map[string]bool{}
	for _, rec := range recs {
		if rec.Seq > upTo {
			continue
		}
		err := s.proj.Verify(ctx, rec)
		if errors.Is(err, kez.ErrLogDamaged) {
			stream, _ := s.report(err)
			bad[stream] = true
		} else if err != nil {
			return n, bad, err
		}
		n++
		if d := time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(s.cfg.ScrubRate))); d > 0 {
			select {
			case <-ctx.Done():
				return n, bad, ctx.Err()
			case <-time.After(d):
			}
		}
	}
	return n, bad, nil
}

// saveLoop saves this replica's checkpoint to its file at most once a
// second while it moves, and once more when ctx ends.
func (s *Service) saveLoop(ctx context.Context) {
	saved := s.fileCP.Seq
	save := func() {
		s.mu.Lock()
		cp := s.cp
		s.mu.Unlock()
		if cp.Seq <= saved {
			return
		}
		if err := s.cfg.CheckpointFile.Save(cp); err != nil {
			s.logger.Warn("save checkpoint file", "err", err)
			return
		}
		saved = cp.Seq
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case <-t.C:
			save()
		}
	}
}
