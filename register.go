package kez

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"kez.lat/kez/strictjson"
)

// DefaultFreshness is how far a registration timestamp may be from the
// server's clock, either way.
const DefaultFreshness = 5 * time.Minute

// RegistrationMessage returns the bytes a registration signature is made
// on after its context ([PurposeRegistration], "kez-register-v1\n"):
// "<handle@domain>\n<ed25519:hex>\n<unix seconds>". The handle is
// qualified, so a registration for one server cannot be replayed at
// another.
func RegistrationMessage(h Handle, primary PublicKey, timestamp int64) []byte {
	return []byte(h.String() + "\n" + primary.String() + "\n" + strconv.FormatInt(timestamp, 10))
}

// VerifyRegistration reports whether sig is primary's registration of h at
// timestamp.
func VerifyRegistration(h Handle, primary PublicKey, timestamp int64, sig []byte) bool {
	return primary.Verify(PurposeRegistration, RegistrationMessage(h, primary, timestamp), sig)
}

// RegistrationRequest is the body of POST /v1/register.
type RegistrationRequest struct {
	Handle          string    `json:"handle"`
	Primary         PublicKey `json:"primary"`
	Timestamp       int64     `json:"timestamp"`
	RegistrationSig []byte    `json:"registration_sig"`
}

// NewRegistrationRequest builds and signs a registration of h for key at
// time now.
func NewRegistrationRequest(key *PrivateKey, h Handle, now time.Time) RegistrationRequest {
	ts := now.Unix()
	return RegistrationRequest{
		Handle:          h.String(),
		Primary:         key.Public(),
		Timestamp:       ts,
		RegistrationSig: key.Sign(PurposeRegistration, RegistrationMessage(h, key.Public(), ts)),
	}
}

// registrationFormat reads registration bodies: one flat object.
var registrationFormat = strictjson.Format{MaxDepth: 1, Err: ErrInvalidRequest}

// ParseRegistrationRequest decodes a JSON registration body strictly, as
// [strictjson] reads every signed kez object: exactly the members handle,
// primary, timestamp and registration_sig, matched by exact name (no
// "HANDLE" for "handle"), none repeated, valid UTF-8, nothing after the
// object; timestamp a plain non-negative integer, the signature canonical
// standard base64. Errors wrap [ErrInvalidRequest] (or [ErrInvalidKey] for
// a bad key). Reading only one spelling of each member means the body
// every reader sees (proxies, logs, this server) is the one verified.
func ParseRegistrationRequest(body []byte) (RegistrationRequest, error) {
	var r RegistrationRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return r, fmt.Errorf("%w: empty body", ErrInvalidRequest)
	}
	o, err := registrationFormat.Parse(body, "registration", "handle", "primary", "timestamp", "registration_sig")
	if err != nil {
		return r, err
	}
	if r.Handle, err = o.String("handle", true); err != nil {
		return r, err
	}
	key, err := o.String("primary", true)
	if err != nil {
		return r, err
	}
	if r.Primary, err = ParsePublicKey(key); err != nil {
		return r, err
	}
	if r.Timestamp, err = o.Int("timestamp"); err != nil {
		return r, err
	}
	if r.RegistrationSig, err = o.Bytes("registration_sig", -1); err != nil {
		return r, err
	}
	switch {
	case r.Handle == "":
		return r, fmt.Errorf("%w: missing handle", ErrInvalidRequest)
	case r.Timestamp == 0:
		return r, fmt.Errorf("%w: missing timestamp", ErrInvalidRequest)
	}
	return r, nil
}

// Verify checks the request for the server of domain at time now: the
// handle parses and belongs to domain, the timestamp is within freshness of
// now, and the signature verifies. It returns the parsed handle. Errors wrap
// [ErrInvalidHandle], [ErrWrongDomain], [ErrStaleTimestamp] or
// [ErrBadSignature].
func (r RegistrationRequest) Verify(domain string, now time.Time, freshness time.Duration) (Handle, error) {
	h, err := ParseHandle(r.Handle, domain)
	if err != nil {
		return Handle{}, err
	}
	if h.Domain() != domain {
		return Handle{}, fmt.Errorf("%w: this server registers handles @%s", ErrWrongDomain, domain)
	}
	if d := now.Sub(time.Unix(r.Timestamp, 0)); d > freshness || d < -freshness {
		return Handle{}, fmt.Errorf("%w: %d is not within %v of the server's clock", ErrStaleTimestamp, r.Timestamp, freshness)
	}
	if !VerifyRegistration(h, r.Primary, r.Timestamp, r.RegistrationSig) {
		return Handle{}, ErrBadSignature
	}
	return h, nil
}

// EventHandleRegistered is the type of the registry event that binds a
// handle to a key.
const EventHandleRegistered = "handle_registered"

// RegistryEvent is an event of the KEZ_REGISTRY stream. Its JSON form is
// what the stream stores; unknown fields are kept out by the writers, not
// rejected by readers, so later versions can add fields.
type RegistryEvent struct {
	Type            string    `json:"type"`
	Handle          Handle    `json:"handle"`
	Primary         PublicKey `json:"primary"`
	RegisteredAt    int64     `json:"registered_at"`
	RegistrationSig []byte    `json:"registration_sig"`
}

// HandleRecord is the projection of one registration: what GET /v1/u/{handle}
// serves and the callout looks up. Seq is the registry stream sequence of
// the event it came from.
type HandleRecord struct {
	Handle          Handle    `json:"handle"`
	Primary         PublicKey `json:"primary"`
	RegisteredAt    int64     `json:"registered_at"`
	RegistrationSig []byte    `json:"registration_sig"`
	Seq             uint64    `json:"seq"`
}

// Record returns the projection of e stored at stream sequence seq.
func (e RegistryEvent) Record(seq uint64) HandleRecord {
	return HandleRecord{Handle: e.Handle, Primary: e.Primary, RegisteredAt: e.RegisteredAt, RegistrationSig: e.RegistrationSig, Seq: seq}
}

// Validate reports whether e is a well-formed handle_registered event whose
// signature verifies; a projector refuses anything else.
func (e RegistryEvent) Validate() error {
	if e.Type != EventHandleRegistered {
		return fmt.Errorf("%w: event type %q", ErrInvalidRequest, e.Type)
	}
	if e.Handle.IsZero() || e.Primary.IsZero() {
		return fmt.Errorf("%w: event without handle or primary", ErrInvalidRequest)
	}
	if !VerifyRegistration(e.Handle, e.Primary, e.RegisteredAt, e.RegistrationSig) {
		return ErrBadSignature
	}
	return nil
}

// RegistryEntry is a registry event as read from the log: its stream
// sequence, how many events followed it when it was read, and the event.
// Err is set, and Event unusable, when the stored bytes did not decode.
// Data are the bytes stored, which the projection hashes.
type RegistryEntry struct {
	Seq     uint64
	Pending uint64
	Event   RegistryEvent
	Err     error
	Data    []byte
}
