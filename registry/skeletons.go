package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"kez.lat/kez"
)

// SkeletonMigration is what MigrateSkeletons did.
type SkeletonMigration struct {
	// Changed counts the handles whose skeleton the fold fix changed
	// (kez.Skeleton differs from kez.LegacySkeleton): those with a w or
	// a vv.
	Changed int
	// Claimed is how many of them this pass gave a claim on their new
	// skeleton; Held already had it (an earlier pass, another replica).
	Claimed, Held int
	// Shared is how many found their new skeleton claimed for another
	// handle registered before the fix: a look-alike pair the old fold
	// let through. Both stay registered; new look-alikes are refused.
	Shared int
}

// Bounds of the skeleton migration: an attempt gives up after
// migrateTimeout (and is tried again, at most migrateRetryMax apart), and
// a registration waits at most migrateWait for it before it is answered
// kez.ErrUnavailable.
const (
	migrateTimeout  = 5 * time.Minute
	migrateRetryMax = time.Minute
	migrateWait     = 5 * time.Second
)

// MigrateSkeletons gives every handle registered before the fold fix
// (see kez.LegacySkeleton) a claim on its new skeleton, so that a new
// look-alike of it ("avvv" next to "avw") is refused like any other. The
// old claims stay: nothing in the log is removed or rewritten, and a
// claim of the new fold never shares a subject with one of the old.
//
// It waits for this replica's projection to catch up with the log and
// its cache to load, then reads, in log order, the claim on each changed
// skeleton (see skeletonClaim). A handle without one is claimed through
// Log.ClaimSkeleton if the log's claim on its old skeleton is its own:
// first come, first served, so replicas migrating at once, or a pass
// after an interrupted one, store one claim per skeleton. Two handles the
// old fold let through as different but that now share a skeleton both
// stay registered (the claim names the earlier): it is logged, and
// counted in Shared. A handle registered after the fix has its claim
// since its registration: one the log lacks, or that names another
// handle, is damage, reported and returned (an error wrapping
// kez.ErrLogDamaged; the claim is not written again). It returns what it
// did, also logged.
//
// Handles an older release registers after this pass (replicas of both
// releases serving at once during an upgrade) are claimed when a
// registration finds one holding its skeleton (see checkClaims), and by
// the next pass: every replica runs one at start.
func (s *Service) MigrateSkeletons(ctx context.Context) (SkeletonMigration, error) {
	var m SkeletonMigration
	if err := s.awaitCaughtUp(ctx); err != nil {
		return m, err
	}
	var changed []kez.HandleRecord
	for _, rec := range s.cache.records() {
		if rec.Handle.Skeleton() != kez.LegacySkeleton(rec.Handle.Local()) {
			changed = append(changed, rec)
		}
	}
	slices.SortFunc(changed, func(a, b kez.HandleRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	m.Changed = len(changed)
	for _, rec := range changed {
		c, err := s.skeletonClaim(ctx, rec)
		switch {
		case errors.Is(err, kez.ErrNotFound) || err == nil && c.holder != rec.Handle && !c.shared:
			err = claimDamage("skeleton "+rec.Handle.Skeleton(), rec, c.holder, err)
			s.report(err)
			return m, err
		case err != nil:
			return m, fmt.Errorf("claim the skeleton of %s: %w", rec.Handle, err)
		case c.stored:
			m.Claimed++
		case c.shared:
			m.Shared++
			s.logger.Warn("two handles registered before the look-alike fold fix read alike; both stay registered, new look-alikes are refused",
				"handle", rec.Handle.String(), "seq", rec.Seq, "reads_like", c.holder.String(), "skeleton", rec.Handle.Skeleton())
		default:
			m.Held++
		}
	}
	return m, nil
}

// skeletonLookup is what skeletonClaim found of the log's claim on a
// handle's skeleton.
type skeletonLookup struct {
	holder kez.Handle // the handle the claim names
	stored bool       // skeletonClaim stored the claim, for the handle
	// shared: the claim names a look-alike, and the handle is one of a
	// pair the old fold let through (sharedBeforeFold): not damage.
	shared bool
}

// skeletonClaim reads the log's claim on the skeleton of rec, which this
// replica's projection holds. A claim naming rec's handle is answered as
// it is. Else, if the fold fix changed the skeleton and the log's claim
// on the old one (kez.LegacySkeleton) is rec's, the handle was registered
// by an older release: a missing claim is written now (ClaimSkeleton,
// logged), and a look-alike's makes a shared pair. A handle registered
// after the fix never claimed its old skeleton, so a missing claim is
// kez.ErrNotFound, and a look-alike's is returned as it is (shared
// false): damage for the caller to report, never claimed again, since
// the log's leader that lost it would take the claim of anyone.
func (s *Service) skeletonClaim(ctx context.Context, rec kez.HandleRecord) (skeletonLookup, error) {
	h, skel, legacy := rec.Handle, rec.Handle.Skeleton(), kez.LegacySkeleton(rec.Handle.Local())
	holder, err := s.log.SkeletonHandle(ctx, skel)
	switch {
	case errors.Is(err, kez.ErrNotFound) && skel != legacy:
		// Not claimed: an old handle yet to be, or damage.
	case err != nil, holder == h, !sharedBeforeFold(holder.Local(), h.Local()):
		return skeletonLookup{holder: holder}, err
	}
	switch old, oerr := s.log.SkeletonHandle(ctx, legacy); {
	case oerr != nil && !errors.Is(oerr, kez.ErrNotFound):
		return skeletonLookup{}, fmt.Errorf("read the old-fold claim of %s: %w", h, oerr)
	case oerr != nil || old != h:
		return skeletonLookup{holder: holder}, err // registered after the fix
	case err == nil:
		return skeletonLookup{holder: holder, shared: true}, nil
	}
	holder, stored, err := s.log.ClaimSkeleton(ctx, h)
	if err != nil {
		return skeletonLookup{}, err
	}
	if stored {
		s.logger.Info("claimed the look-alike skeleton of a handle registered before the fold fix", "handle", h.String(), "seq", rec.Seq, "skeleton", skel)
	}
	return skeletonLookup{holder: holder, stored: stored, shared: holder != h && sharedBeforeFold(holder.Local(), h.Local())}, nil
}

// awaitCaughtUp waits until this replica's projector has reached the end
// of the log once and its cache holds the whole projection.
func (s *Service) awaitCaughtUp(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		caught := s.caught
		s.mu.Unlock()
		if caught && s.cache.Ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the projection to catch up: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// migrateSkeletons runs MigrateSkeletons until a pass succeeds or ctx
// ends, each pass bounded by migrateTimeout, and then lets registrations
// through (see awaitSkeletons).
func (s *Service) migrateSkeletons(ctx context.Context) {
	for delay := time.Second; ; delay = min(2*delay, migrateRetryMax) {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, migrateTimeout)
		m, err := s.MigrateSkeletons(pctx)
		cancel()
		if err == nil {
			if m.Changed > 0 {
				s.logger.Info("look-alike skeleton migration done",
					"changed", m.Changed, "claimed", m.Claimed, "held", m.Held, "shared", m.Shared, "took", time.Since(start).Round(time.Millisecond))
			}
			close(s.skelDone)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.logger.Error("look-alike skeleton migration failed; registrations here wait for it", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// errSkeletonsPending: the skeleton migration has not finished on this
// replica.
var errSkeletonsPending = fmt.Errorf("%w: the look-alike claims of handles registered before this release are still being written; try again shortly", kez.ErrUnavailable)

// awaitSkeletons holds a registration until this replica's skeleton
// migration is done, at most migrateWait: before it, a new look-alike of
// a handle whose new skeleton is not claimed yet would get through. A
// Service neither Run nor serving HTTP (tests of Register alone) does not
// wait.
func (s *Service) awaitSkeletons(ctx context.Context) error {
	if !s.gated.Load() {
		return nil
	}
	t := time.NewTimer(migrateWait)
	defer t.Stop()
	select {
	case <-s.skelDone:
		return nil
	case <-ctx.Done():
	case <-t.C:
	}
	return errSkeletonsPending
}

// SkeletonsReady is a readiness check: it fails until this replica's
// skeleton migration (MigrateSkeletons) is done.
func (s *Service) SkeletonsReady(context.Context) error {
	select {
	case <-s.skelDone:
		return nil
	default:
		return errors.New("look-alike claims of handles registered before this release are still being written")
	}
}

// sharedBeforeFold reports whether the local parts a and b may both be
// registered though they read alike: they share a skeleton that the fold
// fix changed (it has a vv), which the old fold let through as two
// ("avw" and "avvv"), before the upgrade or from a replica of the old
// release during it. Such a pair is not damage: both stay registered,
// the claim on the skeleton names one, new look-alikes are refused. It
// reads no claim: skeletonClaim and the scrub also check that the handle
// the claim does not name holds its old-fold claim, which tells a pair
// of the old fold from one a damaged log let through after the fix; the
// cache, which cannot read the log, lets both through.
func sharedBeforeFold(a, b string) bool {
	sa := kez.Skeleton(a)
	return a != b && sa == kez.Skeleton(b) && sa != kez.LegacySkeleton(a)
}
