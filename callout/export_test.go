package callout

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
	return len(s.conns.open[handle])
}
