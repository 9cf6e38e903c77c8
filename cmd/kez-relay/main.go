// Command kez-relay is kez-chat's circuit-relay-v2 service: peers that
// cannot reach each other directly move files through it. It serves only
// keys registered on the home server and raises libp2p's per-circuit
// limits enough for files.
package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/p2p"
	"kez.lat/kez/relay"
	"kez.lat/kez/web"
)

func main() { cli.Main("kez-relay", run) }

// keyFlags name the relay's key file and listen addresses, which serve
// and id share.
type keyFlags struct {
	KeyFile string   `name:"key-file" env:"KEZ_RELAY_KEY_FILE" required:"" type:"path" help:"The relay's ed25519 key (kez-seed-v1, mode 0600); created if missing, so the peer ID stays the same across restarts."`
	Listen  []string `name:"listen" env:"KEZ_RELAY_LISTEN" default:"/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1,/ip6/::/tcp/4001,/ip6/::/udp/4001/quic-v1" help:"libp2p listen multiaddr (repeatable; env: comma-separated)."`
}

type serveCmd struct {
	keyFlags
	cli.LogFlags
	HomeServer           string        `name:"home-server" env:"KEZ_RELAY_HOME_SERVER" default:"http://127.0.0.1:8080" help:"Base URL of the home server (kez-chat-server) asked whether a peer's key is registered."`
	HTTP                 string        `name:"http" env:"KEZ_RELAY_HTTP" default:":7879" help:"Listen address of /healthz and /metrics."`
	CircuitDuration      time.Duration `name:"circuit-duration" env:"KEZ_RELAY_CIRCUIT_DURATION" default:"1h" help:"A relayed connection is reset after this long (0 together with --circuit-data 0: no limits)."`
	CircuitData          int64         `name:"circuit-data" env:"KEZ_RELAY_CIRCUIT_DATA" default:"4294967296" help:"A relayed connection is reset after this many bytes in either direction (default 4 GiB)."`
	ReservationTTL       time.Duration `name:"reservation-ttl" env:"KEZ_RELAY_RESERVATION_TTL" default:"1h" help:"Lifetime of a reservation; clients refresh it."`
	MaxReservations      int           `name:"max-reservations" env:"KEZ_RELAY_MAX_RESERVATIONS" default:"1024" help:"Most peers holding a reservation at once."`
	MaxReservationsPerIP int           `name:"max-reservations-per-ip" env:"KEZ_RELAY_MAX_RESERVATIONS_PER_IP" default:"8" help:"Most reservations from one IP address."`
	MaxCircuits          int           `name:"max-circuits" env:"KEZ_RELAY_MAX_CIRCUITS" default:"16" help:"Most relayed connections open to or from one peer."`
	MaxConns             int           `name:"max-conns" env:"KEZ_RELAY_MAX_CONNS" default:"4096" help:"Most connections the relay keeps (resource-manager limit)."`
	MaxMemory            int64         `name:"max-memory" env:"KEZ_RELAY_MAX_MEMORY" default:"1073741824" help:"Memory limit of the libp2p resource manager in bytes (default 1 GiB)."`
	ACLTTL               time.Duration `name:"acl-ttl" env:"KEZ_RELAY_ACL_TTL" default:"10m" help:"How long a registered key is remembered."`
	ACLNegativeTTL       time.Duration `name:"acl-negative-ttl" env:"KEZ_RELAY_ACL_NEGATIVE_TTL" default:"30s" help:"How long an unregistered key is remembered."`
}

func (c *serveCmd) config() relay.Config {
	cfg := relay.DefaultConfig()
	cfg.KeyFile, cfg.Listen, cfg.HomeServer, cfg.HTTPAddr = c.KeyFile, c.Listen, c.HomeServer, c.HTTP
	cfg.CircuitDuration, cfg.CircuitData = c.CircuitDuration, c.CircuitData
	cfg.ReservationTTL, cfg.MaxReservations, cfg.MaxReservationsPerIP = c.ReservationTTL, c.MaxReservations, c.MaxReservationsPerIP
	cfg.MaxCircuits, cfg.MaxConns, cfg.MaxMemory = c.MaxCircuits, c.MaxConns, c.MaxMemory
	cfg.ACLPositiveTTL, cfg.ACLNegativeTTL = c.ACLTTL, c.ACLNegativeTTL
	return cfg
}

func (c *serveCmd) Run(ctx context.Context, e *cli.Env) error {
	logger := c.Logger(e.Stderr)
	srv, err := relay.Start(ctx, c.config(), logger)
	if err != nil {
		return err
	}
	for _, a := range srv.Addrs() {
		fmt.Fprintln(e.Stdout, a)
	}
	return cli.ServeUntilDone(ctx, logger, srv.Close)
}

type idCmd struct {
	keyFlags
}

// Run prints the peer ID, then each listen address with /p2p/<id>: the
// values for kez-chat-server --public-relay once a wildcard address
// (0.0.0.0, ::) is replaced by the relay's public IP or DNS name (/dns/...).
func (c *idCmd) Run(e *cli.Env) error {
	key, err := relay.LoadKey(c.KeyFile)
	if err != nil {
		return err
	}
	id, err := p2p.PeerID(key.Public())
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, id)
	for _, s := range c.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("listen address %q: %v", s, err)
		}
		full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{a}})
		if err != nil {
			return err
		}
		fmt.Fprintln(e.Stdout, full[0])
	}
	return nil
}

type healthcheckCmd struct {
	URL  string        `default:"http://127.0.0.1:7879/readyz" env:"HEALTHCHECK_URL" help:"Readiness endpoint to query."`
	Wait time.Duration `default:"0s" help:"Keep asking, once a second, until it answers 200 or this long has passed."`
	Live bool          `help:"Ask the liveness endpoint beside --url instead (livez: the process serves HTTP; systemd ExecStartPost)."`
}

func (c *healthcheckCmd) Run(ctx context.Context) error {
	return web.Healthcheck(ctx, c.URL, c.Live, c.Wait)
}

type command struct {
	Serve       serveCmd       `cmd:"" default:"withargs" help:"Run the relay (the default command); prints its multiaddrs on stdout."`
	ID          idCmd          `cmd:"" name:"id" help:"Print the relay's peer ID and its listen addresses with /p2p/<id> (creates the key file if missing)."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 if the relay's /readyz answers 200: it is ready (for container health checks); with --live, its livez."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, &command{}, "kez-relay",
		"kez-chat relay: circuit relay v2 for registered kez keys, with limits raised for file transfers.", args, stdout, stderr)
}
