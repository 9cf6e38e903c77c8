package callout

import "time"

// Counted returns how many connections of handle s counts now (open, or
// allowed and not yet connected), for the tests of package callout_test
// that watch a replica's count without signing in.
func (s *Service) Counted(handle string) int {
	n, _ := s.conns.take(handle, connID{}, 0, s.cfg.Now()) // a cap of 0 takes nothing
	return n
}

// Opened returns how many connections of handle s counts as open, from
// the broker's connect and disconnect events alone.
func (s *Service) Opened(handle string) int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	return len(live(s.conns.open, handle, s.conns.maxAge, s.cfg.Now()))
}

// SetExpiryMargin makes s count a connection as open for at most its
// TTL and d without its disconnect event, in place of expiryMargin (a
// minute, which a test does not wait for).
func (s *Service) SetExpiryMargin(d time.Duration) {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	s.conns.maxAge = s.cfg.TTL + d
}

// HoldCounts stops s's event handlers (and its sign-ins under the cap)
// until release is called, as a handler far behind does.
func (s *Service) HoldCounts() (release func()) {
	s.conns.mu.Lock()
	return s.conns.mu.Unlock
}
