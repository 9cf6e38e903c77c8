package streams

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDrainKeys: a listing that ends gives every key; one that stops
// handing out keys without ending (a damaged bucket's) fails after the
// idle bound rather than waiting for the context.
func TestDrainKeys(t *testing.T) {
	ctx := context.Background()
	keys := make(chan string, 3)
	keys <- "a"
	keys <- "b"
	close(keys)
	got, err := drainKeys(ctx, keys, time.Second)
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("an ended listing: %v %v, want [a b]", got, err)
	}

	stuck := make(chan string, 1)
	stuck <- "a"
	start := time.Now()
	got, err = drainKeys(ctx, stuck, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "after 1 keys") || got != nil || time.Since(start) > 5*time.Second {
		t.Errorf("a listing that never ends: %v %v after %v, want an error after the idle bound", got, err, time.Since(start))
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := drainKeys(cctx, make(chan string), time.Minute); err != context.Canceled {
		t.Errorf("an ended context: %v, want context.Canceled", err)
	}
}
