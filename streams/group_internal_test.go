package streams

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestGroupedHeedsContext: a registration waiting for its group returns
// when its own context ends, with the context's error (an unknown
// outcome, which Append resolves by reading the claims), and does not
// wait for the group's batch.
func TestGroupedHeedsContext(t *testing.T) {
	var r Registry
	r.group.flushing = groupsInFlight // every flusher busy: nothing sends
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := r.grouped(ctx, []*nats.Msg{nats.NewMsg(keyClaimSubject("00"))})
	if !errors.Is(res.err, context.DeadlineExceeded) || res.shared || time.Since(start) > 5*time.Second {
		t.Errorf("grouped with its context ended: %+v after %v; want DeadlineExceeded, not shared, at once", res, time.Since(start))
	}
}
