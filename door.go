package kez

import (
	"crypto/ed25519"
	"errors"
	"strings"

	"kez.lat/kez/strictjson"
)

// The inbox door: users reach their inbox only through the home server's
// door service, never through JetStream. Every subject a user may use
// carries the user's own key, so the broker's permissions, not a payload,
// say who asks:
//
//	kez.door.<hex>.send  store an envelope from <hex> (body: the envelope)
//	kez.door.<hex>.read  read <hex>'s unread messages (body: ReadRequest)
//	kez.door.<hex>.ack   remove read messages (body: AckRequest)
//	kez.door.<hex>.stat  count <hex>'s unread messages
//
// Messages are stored on kez.inbox.<recipient>.<sender> and republished
// by the stream to kez.live.<recipient>.<sender>, which only the
// recipient may subscribe to.
const (
	// doorSubjects are the door's endpoints, for every user.
	doorSubjects = "kez.door.*."
	// DoorServiceName is the micro service name of the door.
	DoorServiceName = "kez-door"
	// LiveSubjects are where the inbox stream republishes what it stores.
	LiveSubjects = "kez.live"
)

// The door's operations.
const (
	DoorSend = "send"
	DoorRead = "read"
	DoorAck  = "ack"
	DoorStat = "stat"
)

// DoorOps are the door's operations, in the order they are served.
var DoorOps = []string{DoorSend, DoorRead, DoorAck, DoorStat}

// DoorEndpoint returns the subject of operation op for every user,
// kez.door.*.<op>.
func DoorEndpoint(op string) string { return doorSubjects + op }

// DoorSubject returns the subject through which key performs op.
func DoorSubject(key PublicKey, op string) string { return "kez.door." + key.Hex() + "." + op }

// DoorCaller returns the key named by a door subject kez.door.<hex>.<op>.
func DoorCaller(subject string) (PublicKey, error) {
	t := strings.Split(subject, ".")
	if len(t) != 4 || t[0] != "kez" || t[1] != "door" {
		return PublicKey{}, errors.New("not a door subject")
	}
	return ParsePublicKeyHex(t[2])
}

// InboxMsgSubject returns the subject of a message from sender stored for
// recipient: kez.inbox.<recipient hex>.<sender hex>.
func InboxMsgSubject(recipient, sender PublicKey) string {
	return InboxSubject(recipient) + "." + sender.Hex()
}

// InboxFilter returns the filter of every message stored for key,
// kez.inbox.<hex>.*.
func InboxFilter(key PublicKey) string { return InboxSubject(key) + ".*" }

// SenderFilter returns the filter of every message sender has stored in
// any inbox, kez.inbox.*.<hex>.
func SenderFilter(sender PublicKey) string { return "kez.inbox.*." + sender.Hex() }

// LiveFilter returns the subjects key's client subscribes to for live
// delivery: kez.live.<hex>.*.
func LiveFilter(key PublicKey) string { return LiveSubjects + "." + key.Hex() + ".*" }

// InboxSender returns the sender named by an inbox or live subject,
// kez.inbox.<recipient>.<sender> or kez.live.<recipient>.<sender>.
func InboxSender(subject string) (PublicKey, error) {
	t := strings.Split(subject, ".")
	if len(t) != 4 || t[0] != "kez" || (t[1] != "inbox" && t[1] != "live") {
		return PublicKey{}, errors.New("not an inbox subject")
	}
	return ParsePublicKeyHex(t[3])
}

// InboxSenderHex returns the sender's hex token of an inbox subject
// kez.inbox.<recipient>.<sender>, if it has that form and the token is 64
// lowercase hex characters. It does not check the key as a curve point:
// it is for subjects read back from the inbox stream, which only the door
// writes, with keys it checked in full.
func InboxSenderHex(subject string) (string, bool) {
	t := strings.Split(subject, ".")
	if len(t) != 4 || t[0] != "kez" || t[1] != "inbox" || len(t[3]) != 2*ed25519.PublicKeySize {
		return "", false
	}
	for _, c := range []byte(t[3]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return t[3], true
}

// Codes of the door's refusals: the micro error code header of the answer.
// A client shows them with a hint; none reveals anything of another
// user's inbox.
const (
	// DoorMalformed: the request or the envelope does not parse.
	DoorMalformed = "malformed"
	// DoorSenderMismatch: the envelope's sender is not the caller.
	DoorSenderMismatch = "sender_mismatch"
	// DoorBadSignature: the envelope's signature does not verify.
	DoorBadSignature = "bad_signature"
	// DoorUnknownRecipient: no registered key is the envelope's recipient.
	DoorUnknownRecipient = "unknown_recipient"
	// DoorInboxShareFull: the caller already has the most unread messages
	// one sender may hold in that recipient's inbox.
	DoorInboxShareFull = "inbox_share_full"
	// DoorSenderQuota: the caller holds the most unread messages one
	// sender may hold across all inboxes.
	DoorSenderQuota = "sender_quota"
	// DoorStoreFull: the inbox store is full for everyone.
	DoorStoreFull = "store_full"
	// DoorStoreUnavailable: the home server's store refuses writes (its
	// probe found a disk full or failing); nothing was stored.
	DoorStoreUnavailable = "store_unavailable"
	// DoorUnavailable: the store did not answer; nothing was stored.
	DoorUnavailable = "unavailable"
)

// SendReply answers a stored send: the message's id and whether it had
// been stored before (a retry). It carries no stream sequence: those
// count everyone's traffic.
type SendReply struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// ReadRequest asks for the caller's unread messages after stream sequence
// After (0: from the first).
type ReadRequest struct {
	After uint64 `json:"after"`
}

// ReadReply holds unread messages in stream order; More says that more
// follow After = the last one's Seq.
type ReadReply struct {
	Msgs []StoredMsg `json:"msgs"`
	More bool        `json:"more,omitempty"`
}

// StoredMsg is one stored envelope, from Sender (hex), at stream
// sequence Seq.
type StoredMsg struct {
	Seq    uint64 `json:"seq"`
	Sender string `json:"sender"`
	Data   []byte `json:"data"`
}

// AckRequest removes the caller's messages from Sender (hex) up to and
// including Seq.
type AckRequest struct {
	Sender string `json:"sender"`
	Seq    uint64 `json:"seq"`
}

// StatReply counts the caller's unread messages.
type StatReply struct {
	Unread uint64 `json:"unread"`
}

// doorFormat reads door requests: small flat objects.
var doorFormat = strictjson.Format{MaxDepth: 1, Err: ErrDoorRequest}

// ErrDoorRequest: a door request that does not parse.
var ErrDoorRequest = errors.New("malformed door request")

// ParseReadRequest reads a ReadRequest strictly; an empty body reads
// from the first message.
func ParseReadRequest(b []byte) (ReadRequest, error) {
	var r ReadRequest
	if len(strings.TrimSpace(string(b))) == 0 {
		return r, nil
	}
	o, err := doorFormat.Parse(b, "read request", "after")
	if err != nil {
		return r, err
	}
	if o.Has("after") {
		r.After, err = o.Uint("after")
	}
	return r, err
}

// ParseAckRequest reads an AckRequest strictly.
func ParseAckRequest(b []byte) (AckRequest, PublicKey, error) {
	var r AckRequest
	o, err := doorFormat.Parse(b, "ack request", "sender", "seq")
	if err != nil {
		return r, PublicKey{}, err
	}
	if r.Sender, err = o.String("sender", true); err != nil {
		return r, PublicKey{}, err
	}
	sender, err := ParsePublicKeyHex(r.Sender)
	if err != nil {
		return r, PublicKey{}, o.Errorf("sender: %v", err)
	}
	if r.Seq, err = o.Uint("seq"); err != nil {
		return r, PublicKey{}, err
	}
	if r.Seq == 0 {
		return r, PublicKey{}, o.Errorf("seq must be at least 1")
	}
	return r, sender, nil
}
