package streams

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// The inbox subjects: kez.inbox.<recipient>.<sender>, one per pair of
// users who wrote, all in kez.InboxStream; kez.inbox.<recipient> is the
// subject of messages stored before the door (read once at upgrade, see
// door.MigrateLegacy).
const (
	inboxSubjects       = "kez.inbox.*.*"
	LegacyInboxSubjects = "kez.inbox.*"
	// inboxAllSubjects covers both.
	inboxAllSubjects = "kez.inbox.>"
)

func inboxStreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        kez.InboxStream,
		Description: "kez-chat: every user's inbox of end-to-end encrypted messages",
		Subjects:    []string{inboxSubjects, LegacyInboxSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// The recipient's ack removes a message (a purge of its subject up
		// to that sequence, by the door); until then it is kept. No
		// consumer reads the stream: the door reads by direct get. (Work
		// queue is kept from before the door: a stream's retention cannot
		// change in place.)
		Retention: jetstream.WorkQueuePolicy,
		MaxAge:    cfg.InboxMaxAge,
		// Each sender has a subject of its own in each inbox, so this
		// is one sender's share of one inbox: a full share refuses that
		// sender's next message and nobody else's (a stranger's flood
		// never blocks a contact). Nothing acknowledged is dropped.
		MaxMsgsPerSubject:    cfg.InboxMaxMsgs,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgSize:           cfg.InboxMaxMsgSize,
		MaxBytes:             cfg.InboxMaxBytes,
		// Unchanged from the consumer-per-user design (a stream's consumer
		// limit cannot be lowered in place); no consumer is made now.
		MaxConsumers: maxInboxConsumers,
		Duplicates:   2 * time.Minute,
		// The door reads by batch direct get.
		AllowDirect: true,
		// Live delivery: every stored message goes at once to
		// kez.live.<recipient>.<sender>, which only the recipient may
		// subscribe to. The republished message carries Nats-Stream,
		// Nats-Subject and Nats-Sequence, which a client checks, and
		// Nats-Last-Sequence, the previous message of that subject, by
		// which it notices a message it missed.
		RePublish: &jetstream.RePublish{
			Source:      inboxSubjects,
			Destination: kez.LiveSubjects + ".{{wildcard(1)}}.{{wildcard(2)}}",
		},
	}
}

// maxInboxConsumers is the consumer limit the inbox stream had when every
// user had a consumer; kept so that the stream updates in place.
const maxInboxConsumers = 100_000_000

// QuotaBucket counts, per sender (key hex), the unread messages the
// sender holds across all inboxes: the door refuses a sender at
// Config.SenderMaxMsgs. Entries expire with the messages they count.
const QuotaBucket = "kez_quota"

func quotaBucketConfig(cfg Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      QuotaBucket,
		Description: "kez-chat: unread messages each sender holds across all inboxes",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		History:     1,
		// A count not touched for this long counts only messages that
		// have expired since.
		TTL: cfg.InboxMaxAge,
	}
}

// UserPermissions returns the subjects a user with key may publish to and
// subscribe to, and nothing else: the door's endpoints under its own key
// (send, read, ack, stat); its own live-delivery subjects; its own
// presence entry, and anyone's presence (a direct get of the presence
// bucket, and the live changes on kez.presence.*: every registered user
// may see every user's presence); replies on its own inbox prefix
// _I.<hex>. Every other subject, every JetStream API call among them, is
// denied.
func UserPermissions(key kez.PublicKey) (pub, sub []string) {
	pub = []string{
		"kez.door." + key.Hex() + ".*",
		kez.PresenceKeySubject(key),
		kez.UserAPIPrefix + ".DIRECT.GET." + kez.PresenceStream + "." + presenceKeys,
	}
	sub = []string{kez.UserInboxPrefix(key) + ".>", kez.LiveFilter(key), PresenceLiveSubjects}
	return pub, sub
}
