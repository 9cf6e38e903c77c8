package registry

// ErrScrubBehind is errScrubBehind, for the tests.
var ErrScrubBehind = errScrubBehind

// The allowance of look-ups that read the log (logReadRate, logReadBurst).
const (
	LogReadRate  = logReadRate
	LogReadBurst = logReadBurst
)
