package client

import (
	"fmt"
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
	kp, err := key.NKeyPair()
	if err != nil {
		return nil, fmt.Errorf("nkey: %w", err)
	}
	pub := key.Public()
	base := []nats.Option{
		nats.Name("kez-chat " + pub.String()),
		nats.Nkey(pub.NKey(), kp.Sign),
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

// JetStream returns the JetStream context of a user connection: the API
// under the users' prefix (see streams.UserAPIPrefix).
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.NewWithAPIPrefix(nc, streams.UserAPIPrefix)
}
