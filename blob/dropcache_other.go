//go:build !linux

package blob

import "os"

// dropCache does nothing here: no posix_fadvise (see the Linux version).
func dropCache(f *os.File, off, n int64) {}
