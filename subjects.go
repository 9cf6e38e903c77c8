package kez

// The NATS subjects and names a client speaks, besides the inbox door's
// (door.go). The servers create the streams and grant the permissions
// (package streams); these are the names both sides agree on.

// InboxStream holds every user's inbox (kez.inbox.<hex>).
const InboxStream = "KEZ_INBOX"

// InboxSubject returns the inbox subject of key: kez.inbox.<hex>.
func InboxSubject(key PublicKey) string { return "kez.inbox." + key.Hex() }

// UserInboxPrefix is the reply-subject prefix a user's client must use
// (nats.CustomInboxPrefix): _I.<hex>.
func UserInboxPrefix(key PublicKey) string { return "_I." + key.Hex() }

// UserAPIPrefix is the JetStream API prefix under which USERS imports the
// one JetStream call users make: the direct get of a presence entry.
const UserAPIPrefix = "kez.js"

const (
	// PresenceBucket is the KV bucket of presence entries, one per user
	// under the key's hex.
	PresenceBucket = "kez_presence"
	// PresenceStream is the bucket's stream.
	PresenceStream = "KV_" + PresenceBucket
)

// PresenceKeySubject returns the subject that writes key's presence
// entry: $KV.kez_presence.<hex>.
func PresenceKeySubject(key PublicKey) string {
	return "$KV." + PresenceBucket + "." + key.Hex()
}

// PresenceLiveSubject returns the subject on which the broker republishes
// every write of key's presence entry: kez.presence.<hex>.
func PresenceLiveSubject(key PublicKey) string { return "kez.presence." + key.Hex() }

// PresenceGetSubject returns the direct-get subject, under the users' API
// prefix, that answers key's current presence entry (without a body).
func PresenceGetSubject(key PublicKey) string {
	return UserAPIPrefix + ".DIRECT.GET." + PresenceStream + "." + PresenceKeySubject(key)
}

// The statuses of a presence entry.
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
)

// PresenceEntry is the JSON of a presence entry: what a user stores in
// their own, and what the home server writes there when the connection
// that announced "online" closes.
type PresenceEntry struct {
	// Status is PresenceOnline or PresenceOffline (the goodbye).
	Status string `json:"status"`
	// TS is the writer's clock, unix seconds; readers go by the broker's
	// store time instead, which the writer cannot choose.
	TS int64 `json:"ts"`
	// TTL is, for online, the seconds within which the writer renews the
	// entry.
	TTL int64 `json:"ttl,omitempty"`
	// Server and Conn name the connection that announced online (the
	// broker's server id and client id): when the broker reports it
	// closed, the entry turns offline without waiting out TTL.
	Server string `json:"server,omitempty"`
	Conn   uint64 `json:"conn,omitempty"`
}
