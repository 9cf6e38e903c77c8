package kez

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
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
// After (0: from the first). Format "bin" ([ReadFormatBinary]) asks for
// the binary answer of [AppendReadReply]; without it the answer is a
// [ReadReply] in JSON.
type ReadRequest struct {
	After  uint64 `json:"after"`
	Format string `json:"format,omitempty"`
}

// ReadFormatBinary is the ReadRequest.Format of the binary read answer.
const ReadFormatBinary = "bin"

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

// The binary read answer (ReadRequest.Format "bin"): the same content as
// a ReadReply without JSON's base64 (a third more bytes, and most of the
// door's and the client's work on a page of messages besides the
// signatures):
//
//	"kzr1" || flags (1 byte: 1 = more follow, 0 = the end; nothing else)
//	then for each message, in stream order:
//	seq (8 bytes, big-endian, > 0 and above the previous one)
//	|| sender (32 bytes, the raw ed25519 key of the subject's sender token)
//	|| n (4 bytes, big-endian) || the stored envelope (n bytes)
//
// and nothing after the last message.
const (
	readReplyMagic = "kzr1"
	readReplyHead  = len(readReplyMagic) + 1
	readMsgHead    = 8 + ed25519.PublicKeySize + 4
)

// ReadMsg is one message of a binary read answer. Sender is the raw key
// as the door took it from the stored subject: not checked as a curve
// point by ParseReadReply.
type ReadMsg struct {
	Seq    uint64
	Sender [ed25519.PublicKeySize]byte
	Data   []byte
}

// ErrReadReply: a binary read answer that does not parse.
var ErrReadReply = errors.New("malformed read answer")

// AppendReadReplyHead appends the head of a binary read answer; the door
// appends each message with AppendReadMsg and then sets whether more
// follow with SetReadReplyMore.
func AppendReadReplyHead(b []byte) []byte { return append(append(b, readReplyMagic...), 0) }

// AppendReadMsg appends one message to a binary read answer.
func AppendReadMsg(b []byte, m ReadMsg) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = append(b, m.Sender[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Data)))
	return append(b, m.Data...)
}

// SetReadReplyMore marks the binary read answer b, made with
// AppendReadReplyHead, as followed by more messages.
func SetReadReplyMore(b []byte) { b[len(readReplyMagic)] = 1 }

// ParseReadReply reads a binary read answer strictly: its messages (whose
// Data alias b) and whether more follow. It returns an error wrapping
// ErrReadReply for anything else: another head or flag, sequences that do
// not rise, a length past the end, trailing bytes.
func ParseReadReply(b []byte) ([]ReadMsg, bool, error) {
	if len(b) < readReplyHead || string(b[:len(readReplyMagic)]) != readReplyMagic {
		return nil, false, fmt.Errorf("%w: not a binary read answer", ErrReadReply)
	}
	flags := b[len(readReplyMagic)]
	if flags > 1 {
		return nil, false, fmt.Errorf("%w: unknown flags %#x", ErrReadReply, flags)
	}
	b = b[readReplyHead:]
	var msgs []ReadMsg
	var last uint64
	for len(b) > 0 {
		if len(b) < readMsgHead {
			return nil, false, fmt.Errorf("%w: a message cut short", ErrReadReply)
		}
		var m ReadMsg
		m.Seq = binary.BigEndian.Uint64(b)
		if m.Seq <= last {
			return nil, false, fmt.Errorf("%w: sequence %d after %d", ErrReadReply, m.Seq, last)
		}
		copy(m.Sender[:], b[8:])
		n := binary.BigEndian.Uint32(b[8+ed25519.PublicKeySize:])
		b = b[readMsgHead:]
		if uint64(n) > uint64(len(b)) {
			return nil, false, fmt.Errorf("%w: a message cut short", ErrReadReply)
		}
		m.Data, b = b[:n:n], b[n:]
		msgs = append(msgs, m)
		last = m.Seq
	}
	return msgs, flags == 1, nil
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
	o, err := doorFormat.Parse(b, "read request", "after", "format")
	if err != nil {
		return r, err
	}
	if o.Has("after") {
		if r.After, err = o.Uint("after"); err != nil {
			return r, err
		}
	}
	if r.Format, err = o.String("format", false); err != nil {
		return r, err
	}
	if r.Format != "" && r.Format != ReadFormatBinary {
		return r, o.Errorf("format: only %q", ReadFormatBinary)
	}
	return r, nil
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
