package streams_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/streams"
)

func TestRetry(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	calls := 0
	err := streams.Retry(context.Background(), log, "test", func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("an attempt without a deadline")
		}
		switch calls {
		case 1:
			return fmt.Errorf("create stream: %w", nats.ErrTimeout)
		case 2: // a cluster that does not know all its peers yet
			return fmt.Errorf("create stream: %w", &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"})
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry after a timeout and a placement failure: %v after %d calls", err, calls)
	}
	bad := errors.New("stream name already in use with a different configuration")
	calls = 0
	if err := streams.Retry(context.Background(), log, "test", func(context.Context) error { calls++; return bad }); !errors.Is(err, bad) || calls != 1 {
		t.Fatalf("Retry of a lasting error: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := streams.Retry(ctx, log, "test", func(context.Context) error { return context.DeadlineExceeded }); !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Retry with a cancelled context: %v", err)
	}
}
