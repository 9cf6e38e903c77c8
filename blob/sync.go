package blob

import (
	"os"
	"sync"
)

// Syncer makes the growth of a file durable in the background: a writer
// appends to the file and reports with [Syncer.Wrote] how many bytes it
// holds; every so many bytes the Syncer syncs the file and then calls
// record with the length it synced, in that order, so a record never
// claims bytes that are not on disk. The writer does not wait for the
// disk, which a download would otherwise do at every checkpoint.
type Syncer struct {
	f      *os.File
	every  int64
	record func(n int64) error

	mu      sync.Mutex
	written int64 // reported by Wrote
	synced  int64 // recorded
	err     error // sticky
	drop    bool  // evict synced bytes from the page cache
	kick    chan struct{}
	done    chan struct{}
}

// NewSyncer starts syncing f, whose first synced bytes are already
// recorded, every every bytes written after them.
func NewSyncer(f *os.File, synced, every int64, record func(n int64) error) *Syncer {
	s := &Syncer{f: f, every: every, record: record, written: synced, synced: synced,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

// Wrote reports that f holds n bytes, all written; n never shrinks. It
// returns the error of an earlier sync or record, if any. It must not be
// called after Close.
func (s *Syncer) Wrote(n int64) error {
	s.mu.Lock()
	s.written = n
	due := n-s.synced >= s.every
	err := s.err
	s.mu.Unlock()
	if due {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// DropCache makes s evict the bytes of each sync from the page cache
// once they are on disk (where the system allows; a hint). A download
// then cycles through a few syncs' worth of cache pages instead of
// taking a fresh page for every byte of the file: on a VM whose balloon
// hands free memory back to the host, such fresh pages cost the writer a
// fault each (a GiB took about 1 s of system CPU more), and a large
// download no longer pushes the user's working set out of the cache.
func (s *Syncer) DropCache() {
	s.mu.Lock()
	s.drop = true
	s.mu.Unlock()
}

func (s *Syncer) run() {
	defer close(s.done)
	for range s.kick {
		s.checkpoint()
	}
}

// checkpoint syncs f and records what was written before the sync began.
func (s *Syncer) checkpoint() {
	s.mu.Lock()
	n, synced, failed, drop := s.written, s.synced, s.err != nil, s.drop
	s.mu.Unlock()
	if failed || n == synced {
		return
	}
	err := s.f.Sync()
	if err == nil {
		err = s.record(n)
	}
	if err == nil && drop {
		dropCache(s.f, synced, n-synced)
	}
	s.mu.Lock()
	if err != nil {
		s.err = err
	} else {
		s.synced = n
	}
	s.mu.Unlock()
}

// Close waits for a sync in progress, then syncs and records all that
// was written, and returns the first error of any sync or record. It
// does not close f.
func (s *Syncer) Close() error {
	close(s.kick)
	<-s.done
	s.checkpoint()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Synced returns the length recorded last.
func (s *Syncer) Synced() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}
