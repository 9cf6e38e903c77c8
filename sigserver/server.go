package sigserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/buildinfo"
	"kez.lat/kez/health"
	"kez.lat/kez/integrity"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
)

// ErrConfig is wrapped by Config.Validate errors.
var ErrConfig = errors.New("invalid configuration")

// Config is the whole configuration of one replica.
type Config struct {
	NATSURL      string // broker the service connects to
	NATSNKeyFile string // seed of the service user (account KEZ)
	HTTPAddr     string // listen address of the HTTP API
	TrustProxy   bool   // client address (logged) from X-Forwarded-For
	// RequireRegistered accepts appends only to chains whose key has a
	// handle in the home server's projection (same NATS account).
	RequireRegistered bool
	// MaxEvents is the most events one chain may hold.
	MaxEvents int
	// CtimeSkew is how far ahead of the server clock an event's ctime may be.
	CtimeSkew time.Duration
	Streams   streams.SigchainConfig
	// IntegrityInterval is how often the sigchain stream is checked for
	// damage (besides at start and on every leader change), and how often
	// damage still present is logged.
	IntegrityInterval time.Duration
}

// DefaultConfig returns the defaults of a single-server deployment.
func DefaultConfig() Config {
	return Config{
		NATSURL:           "nats://127.0.0.1:4222",
		HTTPAddr:          ":7878",
		RequireRegistered: true,
		MaxEvents:         10000,
		CtimeSkew:         10 * time.Minute,
		Streams:           streams.DefaultSigchainConfig(),
		IntegrityInterval: time.Minute,
	}
}

// Validate reports whether c is complete; errors wrap ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.NATSURL == "":
		return fmt.Errorf("%w: nats url is empty", ErrConfig)
	case c.HTTPAddr == "":
		return fmt.Errorf("%w: http addr is empty", ErrConfig)
	case c.MaxEvents < 1:
		return fmt.Errorf("%w: max events must be at least 1", ErrConfig)
	case c.CtimeSkew < 0:
		return fmt.Errorf("%w: ctime skew must not be negative", ErrConfig)
	}
	if err := c.Streams.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return nil
}

// Server is a running kez-sig-server replica.
type Server struct {
	// Integrity watches the sigchain stream for damage.
	Integrity *integrity.Monitor

	nc     *nats.Conn
	cancel context.CancelFunc
	srv    *web.Server
	wg     sync.WaitGroup
	logger *slog.Logger

	// Ready answers /v1/readyz: broker, JetStream, a probe write, every
	// stream the sig-server writes (there, and not refusing its writes:
	// streams.WriteErrors), integrity.
	Ready  *health.Checker
	keeper *streams.Keeper
	// stopKeeper ends the keeper of the streams.
	stopKeeper context.CancelFunc
}

// Start connects, creates the streams and starts the HTTP API, and returns
// once the HTTP listener is bound.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nc, err := streams.Connect(cfg.NATSURL, cfg.NATSNKeyFile, "kez-sig-server", logger)
	if err != nil {
		return nil, err
	}
	s := &Server{nc: nc, logger: logger}
	if err := s.start(ctx, cfg); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, cfg Config) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	setup := func(ctx context.Context) error { return streams.SetupSigchains(ctx, js, cfg.Streams) }
	if err := streams.Retry(ctx, s.logger, "stream setup", setup); err != nil {
		return err
	}
	s.keep(setup)
	writer := "sig." + rand.Text()
	store, err := streams.OpenSigchains(ctx, js)
	if err != nil {
		return err
	}
	probe := streams.NewStoreProbe(js, cfg.Streams.Replicas, writer)
	writes := streams.NewWriteErrors(js, probe)
	store.TrackWrites(writes)
	s.Integrity = integrity.New(integrity.Config{
		Streams: streams.SigchainAppendOnly, Inspect: streams.Inspector(js),
		Interval: cfg.IntegrityInterval, Logger: s.logger.With("component", "integrity"),
	})
	// Checked before anything is served; should it fail, appends are
	// refused until Run's next check passes.
	if err := streams.Retry(ctx, s.logger, "integrity check", s.Integrity.Check); err != nil {
		s.logger.Warn("integrity check at start", "err", err)
	}
	leaders, stopLeaders, err := streams.WatchLeaders(s.nc, streams.SigchainAppendOnly)
	if err != nil {
		return err
	}
	hc := HandlerConfig{
		Integrity:       s.Integrity.Err,
		IntegrityStatus: s.Integrity.Status,
		Store:           store,
		Limiter:         streams.NewSigchainLimiter(js, cfg.Streams),
		MaxEvents:       uint64(cfg.MaxEvents),
		CtimeSkew:       cfg.CtimeSkew,
		TrustProxy:      cfg.TrustProxy,
		Logger:          s.logger,
		Checks: map[string]func(context.Context) error{
			"nats": func(context.Context) error {
				if !s.nc.IsConnected() {
					return errors.New("not connected")
				}
				return nil
			},
			"store": func(ctx context.Context) error { _, err := store.LastSeq(ctx); return err },
		},
	}
	if cfg.RequireRegistered {
		idx := &keyIndex{js: js}
		hc.Registered = idx
		hc.Checks["registry"] = func(ctx context.Context) error { _, err := idx.open(ctx); return err }
	}
	reg := web.NewRegistry()
	if err := s.Integrity.Register(reg); err != nil {
		stopLeaders()
		return err
	}
	checks := []health.Check{
		{Name: "nats", Fn: streams.Connected(s.nc)},
		{Name: "jetstream", Fn: func(ctx context.Context) error { return streams.JetStreamReady(ctx, js) }},
		{Name: "store", Fn: probe.Check},
		{Name: "integrity", Fn: func(context.Context) error { return s.Integrity.Err() }},
	}
	for _, name := range streams.SigchainStreams {
		checks = append(checks, health.Check{Name: "stream:" + name, Fn: func(ctx context.Context) error {
			if err := writes.Err(name); err != nil {
				return err
			}
			return streams.StreamReady(ctx, js, name, s.keeper.Kick)
		}})
	}
	if cfg.RequireRegistered {
		checks = append(checks, health.Check{Name: "registry", Fn: hc.Checks["registry"]})
	}
	s.Ready = health.New(health.Config{}, checks, reg, s.logger.With("component", "health"))
	hc.Ready = s.Ready
	handler := NewHandler(hc, reg)

	s.srv, err = web.Listen(cfg.HTTPAddr, handler, s.logger)
	if err != nil {
		stopLeaders()
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = func() { stopLeaders(); cancel() }
	s.wg.Go(func() { s.Integrity.Run(runCtx, leaders) })
	s.wg.Go(func() { s.Ready.Run(runCtx) })
	s.logger.Info("kez-sig-server started", "http", s.srv.Addr().String(), "nats", s.nc.ConnectedUrlRedacted(),
		"require_registered", cfg.RequireRegistered, "build", buildinfo.Get())
	return nil
}

// keep makes sure of the streams again after every reconnect, until
// Close (see streams.Keeper).
func (s *Server) keep(setup func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopKeeper = cancel
	s.keeper = streams.NewKeeper(s.nc, "stream setup", setup, s.logger)
	s.wg.Go(func() { s.keeper.Run(ctx) })
}

// Addr returns the HTTP listen address.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// URL returns http://<listen address>.
func (s *Server) URL() string { return s.srv.URL() }

// Close shuts down gracefully: in-flight HTTP requests finish (within
// ctx), then the NATS connection drains.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if s.stopKeeper != nil {
		s.stopKeeper()
	}
	s.cancel()
	s.wg.Wait()
	return errors.Join(err, streams.Drain(ctx, s.nc))
}

// keyIndex answers whether a key has a handle from the registry stream's
// key claims, read from the stream leader: a key registered a moment ago
// is seen, even on a cluster where KV reads may come from a follower. The
// stream is opened on first use: the sig-server may start before the home
// server has created it.
type keyIndex struct {
	js  jetstream.JetStream
	mu  sync.Mutex
	reg *streams.Registry
}

func (k *keyIndex) open(ctx context.Context) (*streams.Registry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.reg != nil {
		return k.reg, nil
	}
	reg, err := streams.OpenRegistry(ctx, k.js)
	if err != nil {
		return nil, fmt.Errorf("%w: registry: %v", kez.ErrUnavailable, err)
	}
	k.reg = reg
	return reg, nil
}

// GetByKey returns the handle bound to key (in a record with only Handle
// and Primary set), kez.ErrNotFound, or kez.ErrUnavailable.
func (k *keyIndex) GetByKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
	reg, err := k.open(ctx)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	h, err := reg.KeyHandle(ctx, key)
	if err != nil {
		return kez.HandleRecord{}, err
	}
	return kez.HandleRecord{Handle: h, Primary: key}, nil
}
