package health

import (
	"context"
	"sync"
	"time"
)

// Shared runs a probe for many callers: a result younger than MaxAge is
// reused, and callers that arrive while a run is in flight wait for it
// and share its result, so that any number of callers cost at most one
// run per MaxAge. The zero value reuses nothing but still shares a run.
type Shared[T any] struct {
	MaxAge time.Duration
	Now    func() time.Time // time.Now when nil

	mu      sync.Mutex
	last    T
	at      time.Time
	running chan struct{} // closed when the run in flight ends; nil if none
}

// Do returns the last result if it is fresh, else waits for the run in
// flight, else runs fn with ctx. Waiting ends with ctx's error.
func (s *Shared[T]) Do(ctx context.Context, fn func(context.Context) T) (T, error) {
	now := s.Now
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	if !s.at.IsZero() && now().Sub(s.at) < s.MaxAge {
		r := s.last
		s.mu.Unlock()
		return r, nil
	}
	if wait := s.running; wait != nil {
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.last, nil
	}
	done := make(chan struct{})
	s.running = done
	s.mu.Unlock()

	r := fn(ctx)
	s.mu.Lock()
	s.last, s.at, s.running = r, now(), nil
	s.mu.Unlock()
	close(done)
	return r, nil
}
