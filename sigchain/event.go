package sigchain

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/strictjson"
)

// Version is the payload version this package reads and writes.
const Version = 1

// MaxEventSize is the largest wire form of an event, in bytes. It is checked
// before anything else is parsed.
const MaxEventSize = 8 << 10

// MaxPage is the most events one GET of a chain answers (the sig-server's
// page); the rest follow with ?since= the kez.NextPageHeader names. A page
// of the largest events is 2 MiB, whatever the chain's length.
const MaxPage = 256

// Event is one signed, parsed sigchain event. An Event comes from
// [ParseEvent] (or [Event.UnmarshalJSON]) or from [Next], so its fields are
// always exactly what its payload bytes say; parsing checks the form, not the
// signature ([Event.Verify], [VerifyChain] and [VerifyAppend] do). The zero
// Event is not an event.
type Event struct {
	payload []byte // exact signed bytes
	sig     []byte
	hash    string // sha256 hex of payload

	chain kez.PublicKey
	seqno uint64
	prev  string // "" for seqno 1
	ctime int64
	typ   string
	body  json.RawMessage
	known any // decoded body of a known type, nil otherwise
}

// IsZero reports whether e is the zero Event.
func (e Event) IsZero() bool { return e.payload == nil }

// Chain returns the key of the chain the event belongs to.
func (e Event) Chain() kez.PublicKey { return e.chain }

// Seqno returns the event's position in its chain, from 1.
func (e Event) Seqno() uint64 { return e.seqno }

// Prev returns the hash of the previous event's payload, "" for seqno 1.
func (e Event) Prev() string { return e.prev }

// Ctime returns the creation time the signer claims, in unix seconds.
func (e Event) Ctime() int64 { return e.ctime }

// Type returns the event type, e.g. [TypeAddEndpoint].
func (e Event) Type() string { return e.typ }

// Body returns a copy of the body's JSON as it appears in the payload.
func (e Event) Body() json.RawMessage { return bytes.Clone(e.body) }

// Payload returns a copy of the exact signed payload bytes.
func (e Event) Payload() []byte { return bytes.Clone(e.payload) }

// Signature returns a copy of the 64-byte ed25519 signature.
func (e Event) Signature() []byte { return bytes.Clone(e.sig) }

// Hash returns the event's identity: the lowercase hex SHA-256 of its
// payload bytes, which the next event's prev names. The signature is not
// hashed, so the identity does not depend on it.
func (e Event) Hash() string { return e.hash }

// Pin returns the (seqno, hash) a client remembers after verifying a chain
// up to e.
func (e Event) Pin() Pin { return Pin{Seqno: e.seqno, Hash: e.hash} }

// Verify reports whether e belongs to the chain of key and is signed by
// it. It returns [ErrMalformed] for the zero Event, [ErrWrongChain] if the
// payload names another chain, [ErrBadSignature] if the signature does not
// verify. crypto/ed25519 refuses non-canonical signatures, so an event has
// one valid signature per signing.
func (e Event) Verify(key kez.PublicKey) error {
	if e.IsZero() {
		return fmt.Errorf("%w: zero event", ErrMalformed)
	}
	if !e.chain.Equal(key) {
		return ErrWrongChain
	}
	if !key.Verify(kez.PurposeSigchain, e.payload, e.sig) {
		return ErrBadSignature
	}
	return nil
}

// MarshalJSON returns the wire form {"payload":"<base64>","sig":"<base64>"}.
func (e Event) MarshalJSON() ([]byte, error) {
	if e.IsZero() {
		return nil, fmt.Errorf("%w: zero event", ErrMalformed)
	}
	return strictjson.Signed{Payload: e.payload, Sig: e.sig}.Marshal(), nil
}

// UnmarshalJSON parses the wire form like [ParseEvent]. As an element of a
// larger document (a server's list of events) the value may have been
// indented, so the size limit applies to its compact form.
func (e *Event) UnmarshalJSON(b []byte) error {
	if len(b) > MaxEventSize {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return strictjson.DecodeError(err)
		}
		b = buf.Bytes()
	}
	ev, err := ParseEvent(b)
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

// ParseEvent decodes the wire form of an event strictly. It checks the size
// (at most [MaxEventSize] bytes, else [ErrTooLarge]) and the form, wrapping
// [ErrMalformed]: one JSON object in UTF-8 with exactly the fields payload
// and sig, no field twice, canonical padded base64, a 64-byte signature;
// a payload with exactly the fields v (1), chain (a valid key), seqno (>= 1),
// prev (null for seqno 1, else 64 lowercase hex), ctime, type (a lowercase
// name) and body (an object, valid for its type if the type is known).
// It does not verify the signature: see [Event.Verify].
func ParseEvent(wire []byte) (Event, error) {
	if len(wire) > MaxEventSize {
		return Event{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(wire), MaxEventSize)
	}
	s, err := strict.ParseSigned(wire, "wire form")
	if err != nil {
		return Event{}, err
	}
	e, err := parsePayload(s.Payload)
	if err != nil {
		return Event{}, err
	}
	e.sig = s.Sig
	return e, nil
}

func parsePayload(payload []byte) (Event, error) {
	o, err := strict.Parse(payload, "payload", "v", "chain", "seqno", "prev", "ctime", "type", "body")
	if err != nil {
		return Event{}, err
	}
	e := Event{payload: payload}
	v, err := o.Uint("v")
	if err != nil {
		return Event{}, err
	}
	if v != Version {
		return Event{}, o.Errorf("unsupported version %d", v)
	}
	chain, err := o.String("chain", true)
	if err != nil {
		return Event{}, err
	}
	if e.chain, err = kez.ParsePublicKey(chain); err != nil {
		return Event{}, fmt.Errorf("%w: payload: chain: %w", ErrMalformed, err)
	}
	if e.seqno, err = o.Uint("seqno"); err != nil {
		return Event{}, err
	}
	if e.seqno == 0 {
		return Event{}, o.Errorf("seqno starts at 1")
	}
	prev, ok := o.Raw("prev")
	if !ok {
		return Event{}, o.Missing("prev")
	}
	if isNull(prev) {
		if e.seqno != 1 {
			return Event{}, o.Errorf("prev is null after seqno 1")
		}
	} else {
		if e.prev, err = o.String("prev", true); err != nil {
			return Event{}, err
		}
		if e.seqno == 1 {
			return Event{}, o.Errorf("prev must be null at seqno 1")
		}
		if !isHash(e.prev) {
			return Event{}, o.Errorf("prev must be 64 lowercase hex characters")
		}
	}
	ctime, err := o.Uint("ctime")
	if err != nil {
		return Event{}, err
	}
	e.ctime = int64(ctime)
	if e.typ, err = o.String("type", true); err != nil {
		return Event{}, err
	}
	if !validName(e.typ) {
		return Event{}, o.Errorf("type must be a lowercase name (a-z, 0-9, _; at most %d bytes)", maxNameLen)
	}
	body, ok := o.Raw("body")
	if !ok {
		return Event{}, o.Missing("body")
	}
	e.body = bytes.TrimSpace(body)
	if e.known, err = parseBody(e.chain, e.typ, e.body); err != nil {
		return Event{}, err
	}
	sum := sha256.Sum256(payload)
	e.hash = hex.EncodeToString(sum[:])
	return e, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// payloadJSON is the payload as Next writes it: fields in this order,
// compact, no HTML escaping. Verifiers never re-serialise; the order only
// makes our own output deterministic (see testdata/vectors.json).
type payloadJSON struct {
	V     int             `json:"v"`
	Chain kez.PublicKey   `json:"chain"`
	Seqno uint64          `json:"seqno"`
	Prev  *string         `json:"prev"`
	Ctime int64           `json:"ctime"`
	Type  string          `json:"type"`
	Body  json.RawMessage `json:"body"`
}

// Next builds and signs the event that follows prev (nil for the first
// event of a chain) in key's chain. body is marshalled to JSON (nil means
// {}); for known types pass [NATSEndpoint], [P2PEndpoint], [Claim] or
// [SharedFiles]. The ctime is now, or prev's ctime if that is later, so a
// clock that went backwards never makes an invalid chain.
//
// The result is parsed back before it is returned, so Next never makes an
// event [ParseEvent] refuses: a bad body or type wraps [ErrMalformed], an
// event over [MaxEventSize] is [ErrTooLarge], and a prev from another chain
// is [ErrWrongChain].
func Next(key *kez.PrivateKey, prev *Event, typ string, body any, now time.Time) (Event, error) {
	if key == nil {
		return Event{}, fmt.Errorf("%w: no signing key", kez.ErrInvalidKey)
	}
	p := payloadJSON{V: Version, Chain: key.Public(), Seqno: 1, Ctime: now.Unix(), Type: typ}
	if prev != nil {
		if prev.IsZero() {
			return Event{}, fmt.Errorf("%w: zero prev event", ErrMalformed)
		}
		if !prev.chain.Equal(key.Public()) {
			return Event{}, fmt.Errorf("prev event: %w", ErrWrongChain)
		}
		p.Seqno = prev.seqno + 1
		h := prev.hash
		p.Prev = &h
		p.Ctime = max(p.Ctime, prev.ctime)
	}
	if p.Ctime < 0 {
		return Event{}, fmt.Errorf("%w: ctime before 1970", ErrMalformed)
	}
	if body == nil {
		body = struct{}{}
	}
	var err error
	if p.Body, err = strictjson.Marshal(body); err != nil {
		return Event{}, fmt.Errorf("%w: marshal body: %v", ErrMalformed, err)
	}
	payload, err := strictjson.Marshal(p)
	if err != nil {
		return Event{}, fmt.Errorf("%w: marshal payload: %v", ErrMalformed, err)
	}
	return ParseEvent(strictjson.Signed{Payload: payload, Sig: key.Sign(kez.PurposeSigchain, payload)}.Marshal())
}

// CheckCtime reports whether e's ctime is at most skew ahead of now, else
// [ErrBadCtime]. Servers call it on append: ctimes never decrease along a
// chain, so one far in the future would block the owner's later events.
// Older ctimes are fine (events may be signed offline and sent later).
func CheckCtime(e Event, now time.Time, skew time.Duration) error {
	if limit := now.Add(skew).Unix(); e.ctime > limit {
		return fmt.Errorf("%w: %d is more than %v ahead of the clock", ErrBadCtime, e.ctime, skew)
	}
	return nil
}
