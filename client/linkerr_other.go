//go:build !unix && !windows

package client

// linkUnsupported reports false: errors.ErrUnsupported is all this system
// is known to answer.
func linkUnsupported(error) bool { return false }
