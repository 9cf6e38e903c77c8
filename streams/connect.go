package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectWait is how long Connect keeps retrying a broker that is not
// reachable yet (a container started alongside nats-server, a node still
// booting) before it gives up.
const ConnectWait = 60 * time.Second

// Connect connects to NATS as a service user (seed file, if set), with
// unlimited reconnects logged to logger. A broker that does not answer the
// first attempt is retried for up to ConnectWait.
func Connect(url, nkeyFile, name string, logger *slog.Logger) (*nats.Conn, error) {
	connected := make(chan struct{})
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) { close(connected) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { logger.Warn("nats error", "err", err) }),
	}
	if nkeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(nkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", nkeyFile, err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	// With RetryOnFailedConnect a first attempt that failed returns an
	// unconnected conn and the ConnectHandler fires once a retry succeeds.
	logger.Warn("nats not reachable yet, retrying", "url", url, "err", nc.LastError())
	select {
	case <-connected:
		return nc, nil
	case <-time.After(ConnectWait):
		err := nc.LastError()
		nc.Close()
		return nil, fmt.Errorf("connect to NATS at %s: not connected after %v: %v", url, ConnectWait, err)
	}
}

// Drain drains nc (pending messages are delivered and published ones
// flushed) and waits for it to close, within ctx; past that it closes nc.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return err
	}
	for nc.IsDraining() {
		select {
		case <-ctx.Done():
			nc.Close()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
