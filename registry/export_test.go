package registry

// ErrScrubBehind is errScrubBehind, for the tests.
var ErrScrubBehind = errScrubBehind
