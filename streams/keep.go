package streams

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Keeper makes sure again what a server set up at start (its streams and
// buckets, through the same idempotent setup function) whenever the
// broker may have lost it: after every reconnect of the service
// connection (a restarted nats-server, or a whole cluster, forgets its
// memory streams, and a store wiped or restored from a backup may lack
// anything), and when a request finds a stream or bucket missing (Kick).
// Subscriptions and micro endpoints need no keeper: nats.go subscribes
// them again on every reconnect.
type Keeper struct {
	nc     *nats.Conn
	setup  func(context.Context) error
	logger *slog.Logger
	what   string
	kick   chan struct{}
	runs   chan struct{} // receives after each setup run that succeeded (tests)
}

// NewKeeper returns a keeper that runs setup (what names it in logs);
// call Run to start it.
func NewKeeper(nc *nats.Conn, what string, setup func(context.Context) error, logger *slog.Logger) *Keeper {
	return &Keeper{nc: nc, setup: setup, logger: logger, what: what,
		kick: make(chan struct{}, 1), runs: make(chan struct{}, 1)}
}

// Kick asks for a setup run soon; it never blocks, and kicks that arrive
// while one is pending make one run.
func (k *Keeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Ran receives after each successful setup run (for tests).
func (k *Keeper) Ran() <-chan struct{} { return k.runs }

// Run runs setup after every reconnect and every Kick, until ctx ends.
// A run retries while JetStream is not answering yet (Retry), so a
// cluster that reconnects before it has elected its leaders is waited
// out.
func (k *Keeper) Run(ctx context.Context) {
	status := k.nc.StatusChanged(nats.CONNECTED)
	defer k.nc.RemoveStatusListener(status)
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-status:
			if !ok {
				return
			}
		case <-k.kick:
		}
		err := Retry(ctx, k.logger, k.what, k.setup)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			k.logger.Error(k.what+": could not make sure of the streams and buckets", "err", err)
			continue
		}
		k.logger.Info(k.what + ": streams and buckets made sure of")
		select {
		case k.runs <- struct{}{}:
		default:
		}
	}
}

// IsMissing reports whether err says that a stream or bucket is not
// there (deleted, or lost with the broker's store or memory).
func IsMissing(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound)
}
