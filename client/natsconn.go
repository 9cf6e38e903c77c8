package client

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// ConnectNATS connects to the broker at url as the user of key. The
// connection presents the key's nkey and signs the server's nonce with it;
// the home server's auth callout checks the signature and the registration
// and answers with a short-lived user JWT. Replies use the user's own inbox
// prefix (_I.<hex>), the only one its permissions let it subscribe to.
//
// When the user JWT expires the server closes the connection; the client
// reconnects and is authorised again, without limit (nats.go would
// otherwise give up after the second "authentication expired" from one
// server). opts are appended (handlers, name, timeouts).
func ConnectNATS(url string, key *kez.PrivateKey, opts ...nats.Option) (*nats.Conn, error) {
	pub := key.Public()
	base := []nats.Option{
		nats.Name("kez-chat " + pub.String()),
		NATSAuth(key),
		nats.CustomInboxPrefix(kez.UserInboxPrefix(pub)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.IgnoreAuthErrorAbort(),
		// A server that stops answering (frozen, its host gone without a
		// FIN) is left 4-6 s later (2 s x 2 pings), not after nats.go's
		// 2 min x 2, so that a client moves to another node within
		// seconds.
		nats.PingInterval(UserPingInterval),
		nats.MaxPingsOutstanding(2),
	}
	// The dialer takes the connect timeout of the options as nats.go's
	// own dialer would (nats.Timeout, 2 s by default).
	o := nats.GetDefaultOptions()
	for _, opt := range append(base, opts...) {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("connect to %s as %s: %w", url, pub, err)
		}
	}
	base = append(base, nats.SetCustomDialer(&closingDialer{d: net.Dialer{Timeout: o.Timeout}}))
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", url, pub, signInError(err))
	}
	return nc, nil
}

// signInError names a sign-in that the broker never answered as refused.
// nats-server sends a client its first PING about 2 s after it connected,
// as long as it waits for the auth callout (nats.conf: authorization
// timeout 2): a sign-in the callout left unanswered then fails on that
// PING, which nats.go reports as a protocol surprise, instead of the
// authorization error that would have followed.
func signInError(err error) error {
	if err.Error() == "nats: expected 'PONG', got 'PING'" {
		return fmt.Errorf("%w: %w (%v)", nats.ErrAuthorization, ErrSignInUnanswered, err)
	}
	return err
}

// UserPingInterval is how often a user's connection pings its server.
const UserPingInterval = 2 * time.Second

// NATSAuth is the nats.go option that signs in as key: it presents the
// key's nkey and signs the server's connect nonce for
// [kez.PurposeNATSAuth], never raw. The broker chooses the nonce, so a raw
// signature would let a hostile broker (or anyone on a plaintext path to
// it) obtain the key's signature of bytes of its choosing, such as a
// sigchain event or a registration; under its own context it is good for
// signing in and nothing else (docs/signatures.md). A nonce that is
// not of the server's form (up to 64 characters of unpadded base64url;
// nats-server sends 15) is refused without signing.
func NATSAuth(key *kez.PrivateKey) nats.Option {
	return nats.Nkey(key.Public().NKey(), func(nonce []byte) ([]byte, error) {
		if !ValidNATSNonce(nonce) {
			return nil, fmt.Errorf("%w (%d bytes); not signing it", ErrBadNonce, len(nonce))
		}
		return key.Sign(kez.PurposeNATSAuth, nonce), nil
	})
}

// maxNATSNonce bounds a connect nonce: nats-server sends 15 characters
// (11 random bytes), and nothing longer is needed to be unpredictable.
const maxNATSNonce = 64

// ValidNATSNonce reports whether nonce has the form of a nats-server
// connect nonce: 1 to 64 characters of the unpadded base64url alphabet.
func ValidNATSNonce(nonce []byte) bool {
	if len(nonce) == 0 || len(nonce) > maxNATSNonce {
		return false
	}
	for _, c := range nonce {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// JetStream returns the JetStream context of a user connection: the API
// under the users' prefix (see kez.UserAPIPrefix), where the one call
// a user may make is the direct get of a presence entry.
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.NewWithAPIPrefix(nc, kez.UserAPIPrefix)
}

// closingDialer dials the broker for one nats.Conn and closes the
// connection it dialed before each time it dials again. nats.go (v1.55)
// dials anew for every reconnect attempt and, when an attempt fails
// after the dial (the callout did not answer in time, or refused), moves
// on without closing that socket: it stays open, in CLOSE-WAIT once the
// server has closed its end, until a garbage collection runs its
// finalizer. A client that retries through a callout outage held one
// such fd per attempt; kez-load, thousands of clients in one process
// with a large heap, ran out of its 20,000 fds in reconnect storms on a
// loaded host (2,000 users: up to 13,690 fds, 9,597 sockets in
// CLOSE-WAIT, 988 fds right after a collection; 3 nodes: out of fds at
// 8,700 online). nats.go never uses two connections of one nats.Conn at
// once, so a new dial means the last one is done with.
type closingDialer struct {
	d    net.Dialer
	mu   sync.Mutex
	last net.Conn
}

func (c *closingDialer) Dial(network, address string) (net.Conn, error) {
	c.mu.Lock()
	prev := c.last
	c.last = nil
	c.mu.Unlock()
	if prev != nil {
		_ = prev.Close() // already closed by nats.go, or abandoned
	}
	conn, err := c.d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.last = conn
	c.mu.Unlock()
	return conn, nil
}
