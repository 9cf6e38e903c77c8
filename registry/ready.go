package registry

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Defaults of [Service.ProjectionReady].
const (
	// DefaultMaxLag is the most events this replica's projection may be
	// behind the log and still be ready: a burst of registrations is
	// projected within a second, 1,000 events are not.
	DefaultMaxLag = 1000
	// DefaultStall is how long a projection behind the log may apply
	// nothing before it is not ready: read-your-writes registrations wait
	// on it, so a stalled projection fails every registration.
	DefaultStall = 10 * time.Second
)

// ProjectionReady returns a readiness check of this replica's projection:
// it fails until the projection has caught up with the log once (and the
// look-up cache holds it), when it is more than maxLag events behind, and
// when it is behind and has applied nothing for stall. now is the clock
// (time.Now if nil).
func (s *Service) ProjectionReady(maxLag uint64, stall time.Duration, now func() time.Time) func(context.Context) error {
	if now == nil {
		now = time.Now
	}
	var (
		mu    sync.Mutex
		seen  uint64    // applied at the last check
		since time.Time // when applied last moved (or the first check)
	)
	return func(ctx context.Context) error {
		h, err := s.Health(ctx)
		if err != nil {
			return fmt.Errorf("registry log does not answer: %v", err)
		}
		s.mu.Lock()
		caught := s.caught
		s.mu.Unlock()
		mu.Lock()
		if since.IsZero() || h.Applied != seen {
			seen, since = h.Applied, now()
		}
		idle := now().Sub(since)
		mu.Unlock()
		switch {
		case !h.CacheReady:
			return fmt.Errorf("look-up cache still loading (projection at %d of %d)", h.Applied, h.LastSeq)
		case h.Lag > maxLag:
			return fmt.Errorf("projection %d events behind the log (at most %d)", h.Lag, maxLag)
		case h.Lag > 0 && idle >= stall:
			return fmt.Errorf("projection %d events behind the log and stalled for %v", h.Lag, idle.Round(time.Second))
		case !caught:
			return fmt.Errorf("projection has not caught up with the log yet (at %d of %d)", h.Applied, h.LastSeq)
		}
		return nil
	}
}
