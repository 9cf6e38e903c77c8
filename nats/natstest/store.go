package natstest

import (
	"os"
	"path/filepath"
)

// BlockBatches makes the file store unable to stage atomic batches for
// each named stream, as a disk full or failing below max_file_store does
// (plain writes still go into the blocks the store has open): a plain
// file takes the place of the stream's batches folder. The returned
// function removes the files again. The streams must exist.
func (s *Server) BlockBatches(names ...string) (unblock func()) {
	s.tb.Helper()
	var blockers []string
	unblock = func() {
		for _, b := range blockers {
			if err := os.Remove(b); err != nil {
				s.tb.Errorf("unblock batches: %v", err)
			}
		}
		blockers = nil
	}
	for _, name := range names {
		dirs, _ := filepath.Glob(filepath.Join(s.storeDir, "jetstream", "*", "streams", name))
		if len(dirs) != 1 {
			unblock()
			s.tb.Fatalf("store folder of stream %s: found %v", name, dirs)
		}
		b := filepath.Join(dirs[0], "batches")
		if err := os.RemoveAll(b); err != nil {
			unblock()
			s.tb.Fatal(err)
		}
		if err := os.WriteFile(b, nil, 0o600); err != nil {
			unblock()
			s.tb.Fatal(err)
		}
		blockers = append(blockers, b)
	}
	return unblock
}
