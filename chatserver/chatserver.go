// Package chatserver wires kez-chat-server together: the NATS connection,
// the streams, the registry with its projector, the HTTP API and
// WebFinger. cmd/kez-chat-server parses flags into a Config and calls
// Start; tests start it in-process on 127.0.0.1:0.
package chatserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/buildinfo"
	"kez.lat/kez/callout"
	"kez.lat/kez/door"
	"kez.lat/kez/health"
	"kez.lat/kez/integrity"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/registry"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
	"kez.lat/kez/webfinger"
)

// ErrConfig is wrapped by Config.Validate errors.
var ErrConfig = errors.New("invalid configuration")

// Config is the whole configuration of one replica.
type Config struct {
	NATSURL      string // broker the service connects to
	NATSNKeyFile string // seed of the service user (account KEZ)
	HTTPAddr     string // listen address of the HTTP API
	Domain       string // home domain
	PublicURL    string // public base URL of this server (https://kez.lat)
	SigchainURL  string // public base URL of kez-sig-server
	PublicNATS   string // NATS URL handed to clients
	ReservedFile string // optional file of extra reserved local parts
	TrustProxy   bool   // client address from X-Forwarded-For
	Streams      streams.Config
	Freshness    time.Duration

	// The auth callout; off when CalloutIssuerFile is empty.
	CalloutNKeyFile   string        // seed of the callout responder's user (account AUTH)
	CalloutIssuerFile string        // seed of auth_callout.issuer
	CalloutXKeyFile   string        // seed of auth_callout.xkey
	UsersAccount      string        // account users are placed in
	UserJWTTTL        time.Duration // lifetime of a user JWT
	MaxConnsPerKey    int           // connections one key may have open (0: no cap)

	// PublicRelays are the kez-relay multiaddrs, each ending in
	// /p2p/<peer id>, that handle records advertise to clients.
	PublicRelays []string

	// CheckpointFile, if set, is where this replica keeps its checkpoint
	// of the registry log (one file per replica, on its own disk).
	CheckpointFile string
	// IntegrityInterval is how often the append-only streams are checked
	// for damage (besides at start and on every leader change), and how
	// often damage still present is logged.
	IntegrityInterval time.Duration
	// ScrubRate (events per second) and ScrubInterval pace the background
	// re-hash of the whole registry log.
	ScrubRate     int
	ScrubInterval time.Duration

	// ProjectionMaxLag and ProjectionStall bound this replica's
	// projection for readiness (see registry.Service.ProjectionReady).
	ProjectionMaxLag uint64
	ProjectionStall  time.Duration
}

// DefaultConfig returns the defaults of a single-server deployment.
func DefaultConfig() Config {
	return Config{
		NATSURL:        "nats://127.0.0.1:4222",
		HTTPAddr:       ":8080",
		Domain:         kez.DefaultDomain,
		PublicURL:      "https://" + kez.DefaultDomain,
		SigchainURL:    "http://127.0.0.1:7878",
		PublicNATS:     "nats://127.0.0.1:4222",
		Streams:        streams.DefaultConfig(),
		Freshness:      kez.DefaultFreshness,
		UsersAccount:   "USERS",
		UserJWTTTL:     time.Hour,
		MaxConnsPerKey: 8,

		IntegrityInterval: time.Minute,
		ScrubRate:         registry.DefaultScrubRate,
		ScrubInterval:     registry.DefaultScrubInterval,
		ProjectionMaxLag:  registry.DefaultMaxLag,
		ProjectionStall:   registry.DefaultStall,
	}
}

// Validate reports whether c is complete; errors wrap ErrConfig.
func (c Config) Validate() error {
	if err := kez.ValidateDomain(c.Domain); err != nil {
		return fmt.Errorf("%w: domain: %v", ErrConfig, err)
	}
	for name, v := range map[string]string{"nats url": c.NATSURL, "http addr": c.HTTPAddr, "public url": c.PublicURL, "sigchain url": c.SigchainURL, "public nats url": c.PublicNATS} {
		if v == "" {
			return fmt.Errorf("%w: %s is empty", ErrConfig, name)
		}
	}
	if err := c.Streams.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.IntegrityInterval < time.Second || c.ScrubInterval < time.Second || c.ScrubRate < 1 {
		return fmt.Errorf("%w: integrity interval and scrub interval must be at least 1s, scrub rate at least 1", ErrConfig)
	}
	if c.ProjectionStall < 100*time.Millisecond {
		return fmt.Errorf("%w: projection stall must be at least 100ms", ErrConfig)
	}
	if len(c.PublicRelays) > kez.MaxRelays {
		return fmt.Errorf("%w: more than %d public relays", ErrConfig, kez.MaxRelays)
	}
	for _, r := range c.PublicRelays {
		if _, err := kez.ParseRelayAddr(r); err != nil {
			return fmt.Errorf("%w: public relay %q: %v", ErrConfig, r, err)
		}
	}
	return nil
}

// Server is a running kez-chat-server replica.
type Server struct {
	Registry  *registry.Service
	Callout   *callout.Service
	Door      *door.Service
	Keeper    *streams.Keeper // makes sure of the streams and buckets again after a broker restart
	Integrity *integrity.Monitor
	Ready     *health.Checker // readiness: /v1/readyz and kez_ready{check}
	probe     *streams.StoreProbe
	writes    *streams.WriteErrors // the streams the broker refuses writes to
	stopTurns func()
	users     calloutUsers
	nc        *nats.Conn
	calloutNC *nats.Conn
	web       *web.Server
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	logger    *slog.Logger
}

// Start connects, creates the streams, starts the projector, the cache and
// the HTTP API, and returns once the HTTP listener is bound.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reserved := kez.NewReserved(kez.DefaultReserved...)
	if cfg.ReservedFile != "" {
		f, err := os.Open(cfg.ReservedFile)
		if err != nil {
			return nil, fmt.Errorf("reserved file: %w", err)
		}
		err = reserved.ReadReserved(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reserved file %s: %w", cfg.ReservedFile, err)
		}
	}
	nc, err := streams.Connect(cfg.NATSURL, cfg.NATSNKeyFile, "kez-chat-server", logger)
	if err != nil {
		return nil, err
	}
	s := &Server{nc: nc, logger: logger}
	if err := s.start(ctx, cfg, reserved); err != nil {
		nc.Close()
		if s.calloutNC != nil {
			s.calloutNC.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, cfg Config, reserved kez.Reserved) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	setup := func(ctx context.Context) error {
		kept, err := streams.Setup(ctx, js, cfg.Streams)
		if kept {
			s.warnKeptLimit(cfg.Streams)
		}
		return err
	}
	if err := streams.Retry(ctx, s.logger, "stream setup", setup); err != nil {
		return err
	}
	s.Keeper = streams.NewKeeper(s.nc, "stream setup", setup, s.logger)
	log, err := streams.OpenRegistry(ctx, js)
	if err != nil {
		return err
	}
	proj, err := streams.OpenProjection(ctx, js)
	if err != nil {
		return err
	}
	s.Integrity = integrity.New(integrity.Config{
		Streams: streams.RegistryAppendOnly, Inspect: streams.Inspector(js),
		Interval: cfg.IntegrityInterval, Logger: s.logger.With("component", "integrity"),
	})
	rcfg := registry.Config{
		Domain: cfg.Domain, Freshness: cfg.Freshness, Reserved: reserved,
		// Far above the shared limit, which is per hour by default.
		PreRate:     max(5, 4*float64(cfg.Streams.RegisterLimit)/cfg.Streams.RegisterWindow.Seconds()),
		PreBurst:    max(20, min(cfg.Streams.RegisterLimit, 1<<20)),
		PreNetRate:  max(50, 4*float64(cfg.Streams.NetLimit())/cfg.Streams.RegisterWindow.Seconds()),
		PreNetBurst: max(200, min(cfg.Streams.NetLimit(), 1<<20)),
		Integrity:   s.Integrity.Scope(streams.RegistryStream),
		ScrubRate:   cfg.ScrubRate, ScrubInterval: cfg.ScrubInterval,
	}
	if cfg.CheckpointFile != "" {
		rcfg.CheckpointFile = integrity.File{Path: cfg.CheckpointFile}
	}
	// Writes in flight are sent again at a leader election or reconnect,
	// and a registration answers 503 store_unavailable at once when a
	// probe finds the store refusing or not answering writes.
	turns, stopTurns, err := streams.WatchTurns(s.nc,
		append([]string{streams.RegistryStream, streams.RateLimitStream, streams.NetRateLimitStream}, streams.ProjectionStreams...))
	if err != nil {
		return err
	}
	s.stopTurns = stopTurns
	s.probe = streams.NewStoreProbe(js, cfg.Streams.Replicas, "chat."+rand.Text())
	log.Guard(turns, s.probe)
	s.writes = streams.NewWriteErrors(js, s.probe)
	log.TrackWrites(s.writes)
	proj.Guard(turns)
	limiter := streams.NewRateLimiter(js, cfg.Streams, streams.RateLimitRegister)
	limiter.Guard(turns)
	s.Registry, err = registry.New(rcfg, log, proj, limiter, s.logger)
	if err != nil {
		return err
	}
	s.Integrity.AddVerifier(streams.RegistryStream, s.Registry.VerifyLog)
	// A new leader may serve another copy: scrub the log and the
	// projection against what this replica knows. Damage reported while
	// no leader was known is held until such a scrub passes.
	s.Integrity.OnNewLeader(func(string) { s.Registry.Kick() })
	// Checked before anything is served; should it fail, registrations
	// are refused until Run's next check passes.
	if err := streams.Retry(ctx, s.logger, "integrity check", s.Integrity.Check); err != nil {
		s.logger.Warn("integrity check at start", "err", err)
	}
	leaders, stopLeaders, err := streams.WatchLeaders(s.nc, streams.RegistryAppendOnly)
	if err != nil {
		return err
	}
	s.users = calloutUsers{s.Registry.Cache(), log}

	reg := web.NewRegistry()
	if err := s.Integrity.Register(reg); err != nil {
		stopLeaders()
		return err
	}
	s.Door, err = door.New(ctx, js, s.users, door.Config{SenderMaxMsgs: cfg.Streams.SenderMaxMsgs, Missing: s.Keeper.Kick, Store: s.probe, Writes: s.writes}, reg, s.logger)
	if err != nil {
		stopLeaders()
		return err
	}
	if err := s.Door.Start(); err != nil {
		stopLeaders()
		return err
	}
	if err := s.watchDisconnects(ctx, js, cfg.UsersAccount, cfg.Domain); err != nil {
		stopLeaders()
		return err
	}
	if cfg.CalloutIssuerFile != "" {
		if err := s.startCallout(cfg, reg); err != nil {
			return err
		}
	} else {
		s.logger.Warn("auth callout off: no callout issuer key configured")
	}
	s.Ready = health.New(health.Config{}, s.readyChecks(js, cfg), reg, s.logger.With("component", "health"))
	publicURL := strings.TrimRight(cfg.PublicURL, "/")
	sigchainURL := func(k kez.PublicKey) string { return kez.SigchainURL(cfg.SigchainURL, k) }
	handler := s.Registry.Handler(registry.HTTPConfig{
		SigchainURL:   cfg.SigchainURL,
		NATSURL:       cfg.PublicNATS,
		Inbox:         kez.InboxSubject,
		TrustProxy:    cfg.TrustProxy,
		NATSConnected: s.nc.IsConnected,
		Relays:        relays(cfg.PublicRelays),
		Integrity:     s.Integrity.Status,
		Extra: map[string]http.Handler{
			"GET /v1/livez":  http.HandlerFunc(health.ServeLive),
			"GET /v1/readyz": http.HandlerFunc(s.Ready.ServeReady),
			"GET /.well-known/webfinger": webfinger.Handler{
				Domain:      cfg.Domain,
				Lookup:      s.Registry.Lookup,
				RecordURL:   func(h kez.Handle) string { return publicURL + "/v1/u/" + h.Local() },
				SigchainURL: sigchainURL,
				Logger:      s.logger,
			},
		},
	}, reg)

	s.web, err = web.Listen(cfg.HTTPAddr, handler, s.logger)
	if err != nil {
		stopLeaders()
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = func() { stopLeaders(); cancel() }
	s.wg.Go(func() { s.Registry.Run(runCtx) })
	s.wg.Go(func() { s.Keeper.Run(runCtx) })
	s.wg.Go(func() { s.migrate(runCtx, js, cfg.Streams) })
	s.wg.Go(func() { s.Integrity.Run(runCtx, leaders) })
	s.wg.Go(func() { s.Ready.Run(runCtx) })
	s.logger.Info("kez-chat-server started", "http", s.web.Addr().String(), "domain", cfg.Domain, "nats", s.nc.ConnectedUrlRedacted(), "build", buildinfo.Get())
	return nil
}

// readyChecks are the replica's readiness checks: the broker connection,
// JetStream, a probe write to the store, every stream the server writes
// (there, and not refusing its writes: streams.WriteErrors),
// the projection, the look-alike skeleton migration, the integrity of the append-only streams, the door and
// (when on) the auth callout.
func (s *Server) readyChecks(js jetstream.JetStream, cfg Config) []health.Check {
	checks := []health.Check{
		{Name: "nats", Fn: streams.Connected(s.nc)},
		{Name: "jetstream", Fn: func(ctx context.Context) error { return streams.JetStreamReady(ctx, js) }},
		{Name: "store", Fn: s.probe.Check},
		{Name: "projection", Fn: s.Registry.ProjectionReady(cfg.ProjectionMaxLag, cfg.ProjectionStall, nil)},
		{Name: "skeletons", Fn: s.Registry.SkeletonsReady},
		{Name: "integrity", Fn: func(context.Context) error { return s.Integrity.Err() }},
		{Name: "door", Fn: s.Door.Serving},
	}
	for _, name := range streams.HomeStreams {
		checks = append(checks, health.Check{Name: "stream:" + name, Fn: func(ctx context.Context) error {
			if err := s.writes.Err(name); err != nil {
				return err
			}
			return streams.StreamReady(ctx, js, name, s.Keeper.Kick)
		}})
	}
	if s.Callout != nil {
		checks = append(checks, health.Check{Name: "callout", Fn: s.Callout.Serving})
	}
	return checks
}

// calloutUsers answers the callout's look-ups: this replica's cache, and on
// a miss the registry's key claim, read from the stream leader.
type calloutUsers struct {
	*registry.Cache
	*streams.Registry
}

func (s *Server) startCallout(cfg Config, reg prometheus.Registerer) error {
	issuer, err := natskeys.ReadSeedFile(cfg.CalloutIssuerFile)
	if err != nil {
		return fmt.Errorf("callout issuer: %w", err)
	}
	var xkey nkeys.KeyPair
	if cfg.CalloutXKeyFile != "" {
		if xkey, err = natskeys.ReadSeedFile(cfg.CalloutXKeyFile); err != nil {
			return fmt.Errorf("callout xkey: %w", err)
		}
	}
	s.Callout, err = callout.New(callout.Config{
		Issuer: issuer, XKey: xkey, Account: cfg.UsersAccount, TTL: cfg.UserJWTTTL, MaxConnsPerKey: cfg.MaxConnsPerKey,
	}, s.users, streams.UserPermissions, reg, s.logger)
	if err != nil {
		return err
	}
	s.calloutNC, err = streams.Connect(cfg.NATSURL, cfg.CalloutNKeyFile, "kez-chat-server callout", s.logger)
	if err != nil {
		return err
	}
	if err := s.Callout.Track(s.nc, cfg.UsersAccount); err != nil {
		return err
	}
	return s.Callout.Start(s.calloutNC)
}

// migrate upgrades an inbox stream of the release before the door (see
// door.MigrateLegacy), retrying until it succeeds or ctx ends.
func (s *Server) migrate(ctx context.Context, js jetstream.JetStream, cfg streams.Config) {
	moved := 0
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		m, err := door.MigrateLegacy(ctx, js, s.logger)
		moved += m.Moved // across retries: a retry after a partial move moves 0
		// Moved to one subject per sender: the per-sender share can take
		// its configured limit (the setup at start applied it if nothing
		// moved), unless a sender still holds more unread messages in
		// one inbox than it allows.
		if err == nil && moved > 0 {
			var kept bool
			if kept, err = streams.ApplyInboxConfig(ctx, js, cfg); kept {
				s.warnKeptLimit(cfg)
			}
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		s.logger.Warn("inbox upgrade, retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// warnKeptLimit tells the operator that the inbox stream kept a higher
// per-subject limit than cfg's (streams.ApplyInboxConfig).
func (s *Server) warnKeptLimit(cfg streams.Config) {
	s.logger.Warn("inbox: a sender holds more unread messages in one inbox than --inbox-max-msgs allows, from before the upgrade; the stream keeps its higher limit until they are read (the next start checks again)", "inbox_max_msgs", cfg.InboxMaxMsgs)
}

// Addr returns the HTTP listen address.
func (s *Server) Addr() net.Addr { return s.web.Addr() }

// URL returns http://<listen address>.
func (s *Server) URL() string { return s.web.URL() }

// Close shuts down gracefully: in-flight HTTP requests finish (within
// ctx), then the projector stops and the NATS connection drains.
func (s *Server) Close(ctx context.Context) error {
	err := s.web.Shutdown(ctx)
	if s.Door != nil {
		s.Door.Stop()
	}
	if s.Callout != nil {
		s.Callout.Stop()
		err = errors.Join(err, streams.Drain(ctx, s.calloutNC))
	}
	s.cancel()
	s.wg.Wait()
	s.stopTurns()
	return errors.Join(err, streams.Drain(ctx, s.nc))
}

// relays returns the canonical form of the (validated) relay addresses.
func relays(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		c, _ := kez.ParseRelayAddr(a)
		out = append(out, c)
	}
	return out
}

// The JetStream implementations of the registry's interfaces.
var (
	_ registry.Log        = (*streams.Registry)(nil)
	_ registry.Projection = (*streams.Projection)(nil)
	_ registry.Limiter    = (*streams.RateLimiter)(nil)
)
