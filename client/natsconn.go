package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/streams"
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
		nats.CustomInboxPrefix(streams.UserInboxPrefix(pub)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.IgnoreAuthErrorAbort(),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", url, pub, err)
	}
	return nc, nil
}

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
// under the users' prefix (see streams.UserAPIPrefix).
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.NewWithAPIPrefix(nc, streams.UserAPIPrefix)
}

// FollowInbox reads the user's inbox consumer cons, pulled over nc, and
// passes every message to fn until ctx ends (nil) or fn returns an error
// (returned as it is); fn acks. Once nc is closed it returns an error
// wrapping [nats.ErrConnectionClosed].
//
// Every connection gets a pull subscription of its own: as soon as nc
// loses its connection (its user JWT expired, the broker restarted), the
// subscription is stopped, so nats.go does not subscribe it again, and a
// new one, on a new reply subject, pulls once nc is back. Keeping the
// subscription, as a plain jetstream Consume or Messages does, held
// messages back for the inbox AckWait (30 s): the consumer keeps the pull
// request of the closed connection until it expires (up to 30 s). That
// request's reply reaches the user through a reply mapping of the service
// import, which the broker drops with the connection when nothing was
// delivered on it yet; once the same reply subject is subscribed again
// the consumer sees interest, hands the next messages to the old request
// first, and they go nowhere until redelivered. With the old reply
// subject unsubscribed the consumer discards that request instead.
// (Messages received but not yet passed to fn when the connection drops
// are redelivered after AckWait.)
func FollowInbox(ctx context.Context, nc *nats.Conn, cons jetstream.Consumer, fn func(jetstream.Msg) error) error {
	status := nc.StatusChanged(nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	var (
		mu      sync.Mutex
		cur     jetstream.MessagesContext
		stopped bool // cur was stopped because the connection dropped
	)
	up := make(chan struct{}, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for s := range status {
			switch s {
			case nats.RECONNECTING:
				mu.Lock()
				if cur != nil && !stopped {
					cur.Stop()
					stopped = true
				}
				mu.Unlock()
			case nats.CONNECTED, nats.CLOSED:
				select {
				case up <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() {
		nc.RemoveStatusListener(status) // ends the watcher
		<-watched
	}()
	for {
		mu.Lock()
		it, err := cons.Messages(jetstream.PullMaxMessages(100))
		cur, stopped = it, false
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("follow the inbox: %w", err)
		}
		err = followOne(ctx, it, fn)
		it.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if nc.IsClosed() && errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return fmt.Errorf("follow the inbox: %w", nats.ErrConnectionClosed)
		}
		mu.Lock()
		again := stopped
		mu.Unlock()
		if !again || !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return err
		}
		if err := awaitConnected(ctx, nc, up); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// followOne passes its messages to fn until it fails or is stopped.
func followOne(ctx context.Context, it jetstream.MessagesContext, fn func(jetstream.Msg) error) error {
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow the inbox: %w", err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// awaitConnected waits until nc is connected again (up is signalled on
// every status change; the ticker covers a signal that came early).
func awaitConnected(ctx context.Context, nc *nats.Conn, up <-chan struct{}) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return fmt.Errorf("follow the inbox: %w", nats.ErrConnectionClosed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-up:
		case <-tick.C:
		}
	}
	return nil
}
