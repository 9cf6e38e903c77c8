package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kez.lat/kez/buildinfo"
	"kez.lat/kez/health"
	"kez.lat/kez/p2p"
	"kez.lat/kez/web"
)

// Service is a running relay: the libp2p host, the circuit-relay-v2
// service on it, the ACL and the HTTP server of /healthz, /livez,
// /readyz and /metrics.
type Service struct {
	host   host.Host
	relay  *relayv2.Relay
	acl    *ACL
	tracer *tracer
	ready  *health.Checker
	stop   func() // ends the readiness refresh and waits for its last run
	web    *web.Server
	logger *slog.Logger
}

// Start loads (or creates) the relay's key, starts the host and the relay
// service, and serves /healthz and /metrics on cfg.HTTPAddr. It returns
// once every listener is bound.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := LoadKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	priv, err := p2p.Identity(key)
	if err != nil {
		return nil, err
	}
	reg := web.NewRegistry()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits(cfg)))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	// Reservations are tagged by the relay, so trimming above the low
	// water mark drops idle untagged connections first.
	cm, err := connmgr.NewConnManager(cfg.MaxConns*3/4, cfg.MaxConns, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	h, err := libp2p.New(append(p2p.HostOptions(priv, cfg.Listen),
		libp2p.UserAgent("kez-relay"),
		// A relay does not dial through other relays, is public by
		// definition (no AutoNAT probing of itself), and answers clients'
		// AutoNAT dial-back requests: a closed kez network has no public
		// AutoNAT servers otherwise.
		libp2p.DisableRelay(),
		libp2p.ForceReachabilityPublic(),
		libp2p.EnableNATService(),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(reg),
	)...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	s := &Service{host: h, logger: logger.With("component", "relay")}
	s.acl = NewACL(cfg, reg, s.logger)
	s.tracer = newTracer(reg)
	rc := relayv2.DefaultResources()
	rc.ReservationTTL = cfg.ReservationTTL
	rc.MaxReservations = cfg.MaxReservations
	rc.MaxReservationsPerIP = cfg.MaxReservationsPerIP
	// Per-ASN limit: our users are few per relay and many share a few
	// ISPs; the overall and per-IP limits bound abuse.
	rc.MaxReservationsPerASN = cfg.MaxReservations
	rc.MaxCircuits = cfg.MaxCircuits
	rc.BufferSize = circuitBuffer
	rc.Limit = &relayv2.RelayLimit{Duration: cfg.CircuitDuration, Data: cfg.CircuitData}
	if cfg.CircuitDuration == 0 && cfg.CircuitData == 0 {
		rc.Limit = nil
	}
	s.relay, err = relayv2.New(h, relayv2.WithResources(rc), relayv2.WithACL(s.acl), relayv2.WithMetricsTracer(s.tracer))
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("start relay service: %w", err)
	}
	s.ready = health.New(health.Config{}, []health.Check{
		{Name: "listening", Fn: func(context.Context) error {
			if len(s.host.Network().ListenAddresses()) == 0 {
				return errors.New("no listen address")
			}
			return nil
		}},
		{Name: "home", Fn: s.acl.HomeReady},
	}, reg, s.logger.With("component", "health"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /livez", health.ServeLive)
	mux.HandleFunc("GET /readyz", s.ready.ServeReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.web, err = web.Listen(cfg.HTTPAddr, web.NewMetrics(reg).Wrap(mux), s.logger)
	if err != nil {
		s.relay.Close()
		h.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	s.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		s.ready.Run(rctx)
	}()
	s.logger.Info("relay started", "peer_id", h.ID().String(), "addrs", fmt.Sprint(s.Addrs()), "http", s.web.Addr().String(), "build", buildinfo.Get())
	return s, nil
}

// ID returns the relay's peer ID.
func (s *Service) ID() peer.ID { return s.host.ID() }

// Addrs returns the relay's full multiaddrs, /p2p/<id> included: the
// values for kez-chat-server --public-relay (with a wildcard listen
// address, one per local interface; operators pick the public ones).
func (s *Service) Addrs() []ma.Multiaddr {
	p2p, err := ma.NewComponent("p2p", s.host.ID().String())
	if err != nil {
		return nil
	}
	var out []ma.Multiaddr
	for _, a := range s.host.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()))
	}
	return out
}

// HTTPURL returns http://<address of the /healthz and /metrics server>.
func (s *Service) HTTPURL() string { return s.web.URL() }

// ACL returns the relay's access control.
func (s *Service) ACL() *ACL { return s.acl }

// Reservations returns the number of reservations held now.
func (s *Service) Reservations() int { return int(s.tracer.reservations.Load()) }

// Close stops the HTTP server (within ctx), the relay service and the
// host.
func (s *Service) Close(ctx context.Context) error {
	s.stop()
	err := s.web.Shutdown(ctx)
	err = errors.Join(err, s.relay.Close(), s.host.Close())
	return err
}

func (s *Service) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	type body struct {
		Status       string         `json:"status"`
		PeerID       string         `json:"peer_id"`
		Listening    int            `json:"listen_addrs"`
		Reservations int64          `json:"reservations"`
		Circuits     int64          `json:"circuits"`
		Build        buildinfo.Info `json:"build"`
	}
	b := body{Status: "ok", PeerID: s.host.ID().String(), Listening: len(s.host.Network().ListenAddresses()),
		Reservations: s.tracer.reservations.Load(), Circuits: s.tracer.circuits.Load(), Build: buildinfo.Get()}
	status := http.StatusOK
	if b.Listening == 0 {
		b.Status, status = "unavailable", http.StatusServiceUnavailable
	}
	web.WriteJSON(w, status, b)
}
