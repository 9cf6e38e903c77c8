package blob_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kez.lat/kez/blob"
)

// TestSyncer: a record comes only for lengths written before it, once a
// threshold of bytes is past the last record, in the background; Close
// records the rest; a failing record is reported and stops recording.
func TestSyncer(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "part"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	var recs []int64
	fail := false
	record := func(n int64) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("disk full")
		}
		if st, err := f.Stat(); err != nil || st.Size() < n {
			t.Errorf("record of %d bytes with %d in the file", n, st.Size())
		}
		recs = append(recs, n)
		return nil
	}
	s := blob.NewSyncer(f, 10, 100, record)
	write := func(n int64) {
		t.Helper()
		st, _ := f.Stat()
		if _, err := f.Write(make([]byte, n-st.Size())); err != nil {
			t.Fatal(err)
		}
		if err := s.Wrote(n); err != nil {
			t.Fatalf("Wrote(%d) = %v", n, err)
		}
	}
	f.Write(make([]byte, 10))
	write(50)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(recs) != 0 {
		t.Errorf("recorded %v before 100 bytes were past the last record", recs)
	}
	mu.Unlock()
	write(150)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(recs)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no record after 140 bytes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(170)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if recs[len(recs)-1] != 170 || s.Synced() != 170 {
		t.Errorf("records %v, Synced %d; want the last to be 170", recs, s.Synced())
	}

	s = blob.NewSyncer(f, 170, 1, record)
	mu.Lock()
	fail = true
	mu.Unlock()
	write(200)
	if err := s.Close(); err == nil || s.Synced() != 170 {
		t.Errorf("Close after a failed record = %v, Synced %d", err, s.Synced())
	}
}
