package streams

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// Presence: who is online and when they were last seen.
//
// PresenceBucket is a KV bucket (stream PresenceStream) with one key per
// user, the key's hex, holding a small JSON entry (kez.PresenceEntry). Each user writes
// only their own key, by publishing to $KV.kez_presence.<hex> through the
// service KEZ exports (nats/nats.conf) under the permission
// UserPermissions gives; JetStream's ack comes back through the import.
// Every stored write is republished by the stream to kez.presence.<hex>
// (kez.PresenceLiveSubject), which KEZ exports to USERS as a stream: watchers
// learn of changes there, and nobody can publish to it but JetStream
// itself. A current value is read with a direct get under the users' API
// prefix (kez.PresenceGetSubject), the only read the import allows.
//
// Online is derived, not stored: an entry says "online" and how long the
// writer promised to renew it; it is online while its server-side store
// time plus that period (capped by the reader) lies ahead. A
// client killed without a goodbye thus turns into "last seen at its last
// heartbeat" on its own, with nothing to expire. This is why the bucket
// does not use per-key TTLs with subject delete markers (LimitMarkerTTL):
// markers need roll-ups enabled (nats-server forces allow_rollup_hdrs and
// clears deny_purge), and a user allowed to publish to their own key could
// then send "Nats-Rollup: all" and wipe everybody's entry.
const (
	// presenceKeys are the stream's subjects, one per user.
	presenceKeys = "$KV." + kez.PresenceBucket + ".*"
	// PresenceLiveSubjects are where the stream republishes every stored
	// write (kez.presence.<hex>).
	PresenceLiveSubjects = "kez.presence.*"

	// PresenceRetention is how long an entry (a last-seen time) is kept
	// after its last write.
	PresenceRetention = 30 * 24 * time.Hour
	// presenceMaxMsgSize bounds a stored entry; one is about 60 bytes.
	presenceMaxMsgSize = 256
)

func presenceStreamConfig(cfg Config) jetstream.StreamConfig {
	// Heartbeats are frequent and worth little after a crash: no fsync per
	// write on a single server (nats/nats.conf syncs every write
	// otherwise). nats-server refuses async persistence for replicated
	// streams, whose quorum is the durability there.
	persist := jetstream.DefaultPersistMode
	if cfg.Replicas == 1 {
		persist = jetstream.AsyncPersistMode
	}
	return jetstream.StreamConfig{
		Name:        kez.PresenceStream,
		Description: "kez-chat presence: each user's own online/offline entry (KV bucket " + kez.PresenceBucket + ")",
		Subjects:    []string{presenceKeys},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		// A KV bucket of history 1, as nats.go would make it, minus
		// roll-ups: users write here, and "Nats-Rollup: all" from anyone
		// would purge every entry. Entries are replaced, never deleted
		// or purged through the API.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardNew,
		AllowRollup:       false,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       true,
		// Per-message TTLs let a client going invisible make its entry
		// vanish without a trace (a delete that expires after a second;
		// no subject delete markers are configured, so nothing is left).
		AllowMsgTTL: true,
		MaxAge:      PresenceRetention,
		MaxMsgSize:  presenceMaxMsgSize,
		Duplicates:  2 * time.Minute,
		RePublish: &jetstream.RePublish{
			Source:      presenceKeys,
			Destination: "kez.presence.{{wildcard(1)}}",
		},
		PersistMode: persist,
	}
}
