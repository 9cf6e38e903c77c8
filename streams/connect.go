package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/nats/natskeys"
)

// ConnectWait is how long Connect keeps retrying a broker that is not
// reachable yet (a container started alongside nats-server, a node still
// booting) before it gives up.
const ConnectWait = 60 * time.Second

// How our services' connections detect a server that stopped answering.
const (
	ServicePingInterval = time.Second
	ServiceMaxPingsOut  = 3
)

// Connect connects to NATS as a service user (seed file, if set, read
// with natskeys.ReadSeedFile: one that group or others can read is
// refused), with unlimited reconnects logged to logger. A broker that does not answer the
// first attempt is retried for up to ConnectWait.
func Connect(url, nkeyFile, name string, logger *slog.Logger) (*nats.Conn, error) {
	connected := make(chan struct{})
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) { close(connected) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A broker that refuses the service user twice in a row (a
		// configuration being reloaded, a node restarted with old keys)
		// would otherwise close the connection for good, leaving a
		// replica that never serves again.
		nats.IgnoreAuthErrorAbort(),
		// nats.go's default (a ping every 2 min, 2 outstanding) leaves a
		// connection to a frozen server, or to a host gone without a
		// FIN, for up to 6 minutes: requests time out one by one and
		// the micro services stay subscribed where nobody can reach
		// them. A ping every second, 3 outstanding, moves the
		// connection to another node 3-4 s after the server stopped
		// answering (docs/operations.md, "Faults").
		nats.PingInterval(ServicePingInterval),
		nats.MaxPingsOutstanding(ServiceMaxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { logger.Warn("nats error", "err", err) }),
	}
	if nkeyFile != "" {
		// natskeys.ReadSeedFile, not nats.NkeyOptionFromSeed: it refuses
		// a seed file that group or others can read, like every other
		// seed our programs load (docs/operations.md).
		kp, err := natskeys.ReadSeedFile(nkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", nkeyFile, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
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

// setupAttempt bounds one attempt of Retry's fn.
const setupAttempt = 10 * time.Second

// Retry runs fn (the creation of streams and buckets at start-up) until
// it succeeds, an error other than a timeout or an unavailable JetStream
// comes back, or ConnectWait has passed: a broker that has just started,
// or a cluster electing its meta leader after a restart, answers nothing
// for a few seconds. Each attempt gets its own deadline of 10 s.
func Retry(ctx context.Context, logger *slog.Logger, what string, fn func(context.Context) error) error {
	end := time.Now().Add(ConnectWait)
	for {
		actx, cancel := context.WithTimeout(ctx, setupAttempt)
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(end) || !transient(err) {
			return err
		}
		logger.Warn("JetStream not ready, retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// errCodeNoPeers is nats-server's "no suitable peers for placement"
// (JSClusterNoPeersErrF): a cluster that has just started may not know
// all its peers yet. (Asking for more replicas than the cluster has gives
// it too; Retry then gives up after ConnectWait, having logged it.)
const errCodeNoPeers jetstream.ErrorCode = 10005

// transient reports whether err is JetStream not answering, or not ready
// to place a stream, yet.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.Code == 503 ||
		apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled || apiErr.ErrorCode == errCodeNoPeers)
}
