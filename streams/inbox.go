package streams

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// The inbox subjects: kez.inbox.<hex>, one per user, all in InboxStream.
const inboxSubjects = "kez.inbox.*"

func inboxStreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        InboxStream,
		Description: "kez-chat: every user's inbox of end-to-end encrypted messages",
		Subjects:    []string{inboxSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Work queue: a message is removed once its recipient acks it, so
		// the per-inbox cap below counts unread messages only; until then it
		// is kept, even while the recipient's consumer does not exist yet
		// (interest retention would drop it). Each user's consumer filters
		// only that user's subject, so the filters never overlap.
		Retention: jetstream.WorkQueuePolicy,
		MaxAge:    cfg.InboxMaxAge,
		// A full inbox refuses new messages (the sender sees the error)
		// rather than dropping old ones nobody has read: nothing
		// acknowledged is lost, and nobody can fill the broker through
		// someone's inbox.
		MaxMsgsPerSubject:    cfg.InboxMaxMsgs,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgSize:           cfg.InboxMaxMsgSize,
		MaxBytes:             cfg.InboxMaxBytes,
		// One durable consumer per registered user. Without a limit of its
		// own a stream gets nats-server's default of 1,000 consumers
		// (jetstream.limits.default_max_consumers), and the 1,001st user
		// would get no inbox (measured by kez-load).
		MaxConsumers: maxInboxConsumers,
		Duplicates:   2 * time.Minute,
	}
}

// maxInboxConsumers bounds the users (one inbox consumer each) of one
// broker: far above anything the rest of the system reaches, but a limit
// of the stream's own, which takes precedence over the server default.
const maxInboxConsumers = 100_000_000

// Inboxes manages the users' durable inbox consumers. Users can never
// create consumers: one allowed to would be able to create a push consumer
// delivering to any subject (nats-server issue #8274).
type Inboxes struct {
	js jetstream.JetStream
}

// NewInboxes returns the inbox manager on the stream Setup created.
func NewInboxes(js jetstream.JetStream) *Inboxes { return &Inboxes{js: js} }

// InboxConsumerIdle is how long a user's inbox consumer outlives the
// user's last read.
const InboxConsumerIdle = 7 * 24 * time.Hour

// InboxConsumer returns the name of key's durable consumer: its hex.
func InboxConsumer(key kez.PublicKey) string { return key.Hex() }

// Ensure creates key's durable pull consumer on its inbox if it is
// missing; it is idempotent. An existing consumer costs one info request;
// creating one on a cluster starts a Raft group and takes tens of
// milliseconds.
func (i *Inboxes) Ensure(ctx context.Context, key kez.PublicKey) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if c, err := i.js.Consumer(ctx, InboxStream, InboxConsumer(key)); err == nil &&
		c.CachedInfo().Config.FilterSubject == InboxSubject(key) {
		return nil
	}
	_, err := i.js.CreateOrUpdateConsumer(ctx, InboxStream, jetstream.ConsumerConfig{
		Durable:       InboxConsumer(key),
		Description:   "kez-chat inbox",
		FilterSubject: InboxSubject(key),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
		// Consumers of users who stay away are removed (their messages
		// stay: the stream is a work queue) and made again at their next
		// sign-in, so consumers — on a cluster, one Raft group each — grow
		// with active users, not with every user ever registered.
		InactiveThreshold: InboxConsumerIdle,
	})
	if err != nil {
		return fmt.Errorf("inbox consumer: %w", err)
	}
	return nil
}

// UserAPIPrefix is the JetStream API prefix of users' connections: users
// live in an account without JetStream (USERS in deploy/nats.conf), which
// imports the few inbox API subjects of the KEZ account under this prefix
// (clients: jetstream.NewWithAPIPrefix).
const UserAPIPrefix = "kez.js"

// UserPermissions returns the subjects a user with key may publish to and
// subscribe to, and nothing else: publish to any inbox; read its own
// inbox only through its own consumer (info, next message, acks); write
// its own presence entry and read anyone's (a direct get of the presence
// bucket, and the live changes on kez.presence.*: every registered user
// may see every user's presence); receive replies on its own inbox prefix
// _I.<hex>. Every other subject, including all other JetStream API calls,
// is denied.
func UserPermissions(key kez.PublicKey) (pub, sub []string) {
	h := key.Hex()
	pub = []string{
		inboxSubjects,
		UserAPIPrefix + ".CONSUMER.INFO." + InboxStream + "." + h,
		UserAPIPrefix + ".CONSUMER.MSG.NEXT." + InboxStream + "." + h,
		"$JS.ACK." + InboxStream + "." + h + ".>",
		PresenceKeySubject(key),
		UserAPIPrefix + ".DIRECT.GET." + PresenceStream + "." + presenceKeys,
	}
	sub = []string{UserInboxPrefix(key) + ".>", PresenceLiveSubjects}
	return pub, sub
}

// UserInboxPrefix is the reply-subject prefix a user's client must use
// (nats.CustomInboxPrefix): _I.<hex>.
func UserInboxPrefix(key kez.PublicKey) string { return "_I." + key.Hex() }

// InboxTokens returns the token (the part after kez.inbox.) of every inbox
// subject holding messages, with its message count.
func (i *Inboxes) InboxTokens(ctx context.Context) (map[string]uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	s, err := i.js.Stream(ctx, InboxStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", InboxStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(inboxSubjects))
	if err != nil {
		return nil, fmt.Errorf("inbox subjects: %w", err)
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, "kez.inbox.")] = n
	}
	return out, nil
}

// PurgeInbox removes every message of the inbox subject kez.inbox.<token>.
func (i *Inboxes) PurgeInbox(ctx context.Context, token string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	s, err := i.js.Stream(ctx, InboxStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", InboxStream, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("kez.inbox."+token)); err != nil {
		return fmt.Errorf("purge inbox: %w", err)
	}
	return nil
}
