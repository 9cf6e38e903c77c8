package relay

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// ErrConfig is wrapped by Config.Validate errors.
var ErrConfig = errors.New("invalid relay configuration")

// Config is the whole configuration of one relay.
type Config struct {
	// KeyFile holds the relay's ed25519 seed ("kez-seed-v1 <64 hex>",
	// mode 0600). It is created on first start, so the PeerID, and with it
	// the addresses the home server advertises, stay the same across
	// restarts.
	KeyFile string
	// Listen are the libp2p listen multiaddrs (TCP and QUIC-v1).
	Listen []string
	// HomeServer is the base URL of the home server the ACL asks
	// (GET <HomeServer>/v1/k/ed25519:<hex>) whether a peer's key is registered.
	HomeServer string
	// HTTPAddr is the listen address of /healthz and /metrics.
	HTTPAddr string

	// CircuitDuration and CircuitData limit one relayed connection: it is
	// reset after CircuitDuration or once CircuitData bytes went through in
	// either direction. libp2p's defaults (2 min, 128 KiB) are meant for
	// hole-punch signalling and cut file transfers off; both 0 means no
	// limit at all.
	CircuitDuration time.Duration
	CircuitData     int64

	// ReservationTTL is how long a reservation lasts before the client must
	// refresh it.
	ReservationTTL time.Duration
	// MaxReservations is the most peers holding a reservation at once.
	MaxReservations int
	// MaxReservationsPerIP is the most reservations from one IP address
	// (peers behind one NAT share it).
	MaxReservationsPerIP int
	// MaxCircuits is the most relayed connections open to or from one peer.
	MaxCircuits int

	// MaxConns is the most connections the host keeps (resource-manager
	// system limit; the connection manager trims above it).
	MaxConns int
	// MaxMemory is the resource manager's memory limit for the whole host.
	MaxMemory int64

	// ACLPositiveTTL is how long a registered key is remembered;
	// ACLNegativeTTL how long an unknown one is (short, so a user who has
	// just registered is served soon).
	ACLPositiveTTL time.Duration
	ACLNegativeTTL time.Duration
	// ACLCacheSize bounds the number of keys remembered.
	ACLCacheSize int
	// ACLTimeout bounds one home-server look-up: the ACL runs inside the
	// relay's stream handler, so it must not block long.
	ACLTimeout time.Duration
}

// DefaultListen are the default listen addresses: TCP and QUIC-v1 on port
// 4001, IPv4 and IPv6.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/4001",
	"/ip4/0.0.0.0/udp/4001/quic-v1",
	"/ip6/::/tcp/4001",
	"/ip6/::/udp/4001/quic-v1",
}

// DefaultConfig returns the defaults; KeyFile and HomeServer must still be
// set.
func DefaultConfig() Config {
	return Config{
		Listen:               append([]string(nil), DefaultListen...),
		HTTPAddr:             ":7879",
		CircuitDuration:      time.Hour,
		CircuitData:          4 << 30,
		ReservationTTL:       time.Hour,
		MaxReservations:      1024,
		MaxReservationsPerIP: 8,
		MaxCircuits:          16,
		MaxConns:             4096,
		MaxMemory:            1 << 30,
		ACLPositiveTTL:       10 * time.Minute,
		ACLNegativeTTL:       30 * time.Second,
		ACLCacheSize:         100_000,
		ACLTimeout:           2 * time.Second,
	}
}

// Validate reports whether c is complete and consistent; errors wrap
// ErrConfig.
func (c Config) Validate() error {
	if c.KeyFile == "" {
		return fmt.Errorf("%w: key file is empty", ErrConfig)
	}
	if len(c.Listen) == 0 {
		return fmt.Errorf("%w: no listen address", ErrConfig)
	}
	for _, s := range c.Listen {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("%w: listen address %q: %v", ErrConfig, s, err)
		}
	}
	u, err := url.Parse(c.HomeServer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: home server %q: want an http(s) base URL", ErrConfig, c.HomeServer)
	}
	if c.HTTPAddr == "" {
		return fmt.Errorf("%w: http address is empty", ErrConfig)
	}
	switch {
	case c.CircuitDuration == 0 && c.CircuitData == 0: // unlimited
	case c.CircuitDuration <= 0 || c.CircuitData <= 0:
		return fmt.Errorf("%w: circuit duration and data limits must both be positive (or both 0 for no limit)", ErrConfig)
	}
	for name, v := range map[string]int{
		"max reservations": c.MaxReservations, "max reservations per ip": c.MaxReservationsPerIP,
		"max circuits": c.MaxCircuits, "max conns": c.MaxConns, "acl cache size": c.ACLCacheSize,
	} {
		if v <= 0 {
			return fmt.Errorf("%w: %s must be positive", ErrConfig, name)
		}
	}
	for name, v := range map[string]time.Duration{
		"reservation ttl": c.ReservationTTL, "acl positive ttl": c.ACLPositiveTTL,
		"acl negative ttl": c.ACLNegativeTTL, "acl timeout": c.ACLTimeout,
	} {
		if v <= 0 {
			return fmt.Errorf("%w: %s must be positive", ErrConfig, name)
		}
	}
	if c.MaxMemory < 128<<20 {
		return fmt.Errorf("%w: max memory must be at least 128 MiB", ErrConfig)
	}
	return nil
}
