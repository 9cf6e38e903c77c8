package sigchain

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"kez.lat/kez"
	"kez.lat/kez/strictjson"
)

// Event types. A type outside this list is valid if its name is (see
// [ParseEvent]): it is kept in the verified chain and ignored by [State],
// so older clients read chains written by newer ones. Known bodies are
// closed: unknown fields are refused. A body grows by a new event type or
// protocol, never by a new field old clients would reject.
const (
	// TypeAddEndpoint advertises where the user is reached: a [NATSEndpoint]
	// or a [P2PEndpoint] (protocol "nats" or "p2p"; other protocols are kept
	// and ignored). Adding an endpoint already present replaces it.
	TypeAddEndpoint = "add_endpoint"
	// TypeRemoveEndpoint withdraws an endpoint, named by its protocol and
	// identity: the URL for nats, the peer ID for p2p. The other fields of
	// the added endpoint may be repeated and are ignored. Removing an
	// endpoint that is not present does nothing.
	TypeRemoveEndpoint = "remove_endpoint"
	// TypeAddClaim adds an identity [Claim] for display: kind, value and
	// proof. Adding a claim already present (same kind and value) replaces
	// its proof.
	TypeAddClaim = "add_claim"
	// TypeRevokeClaim withdraws a claim named by kind and value (a proof may
	// be repeated and is ignored). Revoking a claim that is not present does
	// nothing.
	TypeRevokeClaim = "revoke_claim"
	// TypeSetSharedFiles names the user's current shared-files manifest by
	// its BLAKE3 hash and size ([SharedFiles]).
	TypeSetSharedFiles = "set_shared_files"
	// TypeMovedTo is reserved for handle migration between servers. Its body
	// is not defined yet: v1 verifiers treat it as an unknown type.
	TypeMovedTo = "moved_to"
)

// Endpoint protocols of add_endpoint and remove_endpoint.
const (
	ProtocolNATS = "nats"
	ProtocolP2P  = "p2p"
)

// InboxPrefix starts the NATS subject of every user's inbox; a nats
// endpoint's inbox must be [Inbox] of the chain key. It is part of the
// sigchain format and must agree with the subjects the broker serves.
const InboxPrefix = "kez.inbox."

// Inbox returns the NATS inbox subject of key: kez.inbox.<hex>.
func Inbox(key kez.PublicKey) string { return InboxPrefix + key.Hex() }

// Field limits of known bodies. The event size limit bounds the whole; these
// keep single fields within what a UI or a dialer expects.
const (
	maxURLLen   = 512
	maxAddrs    = 32
	maxAddrLen  = 256
	maxPeerID   = 128
	maxValueLen = 256
	maxProofLen = 4096
	maxNameLen  = 32
)

// protocol checks that o's protocol field is want.
func protocol(o strictjson.Object, want string) error {
	p, err := o.String("protocol", true)
	if err != nil {
		return err
	}
	if p != want {
		return o.Errorf("protocol must be %q", want)
	}
	return nil
}

// NATSEndpoint is a nats endpoint: the broker URL (nats, tls, ws or wss
// scheme, no credentials) and the user's inbox subject. Its JSON form is
// {"protocol":"nats","url":...,"inbox":...}; the inbox is omitted when empty
// (enough to name the endpoint in remove_endpoint).
type NATSEndpoint struct {
	URL   string
	Inbox string
}

// MarshalJSON implements [json.Marshaler].
func (n NATSEndpoint) MarshalJSON() ([]byte, error) {
	return strictjson.Marshal(struct {
		Protocol string `json:"protocol"`
		URL      string `json:"url"`
		Inbox    string `json:"inbox,omitempty"`
	}{ProtocolNATS, n.URL, n.Inbox})
}

// UnmarshalJSON implements [json.Unmarshaler], checking the fields as an
// event body would except that the inbox is not tied to a chain.
func (n *NATSEndpoint) UnmarshalJSON(b []byte) error {
	o, err := strict.Object(b, "nats endpoint", "protocol", "url", "inbox")
	if err != nil {
		return err
	}
	if err := protocol(o, ProtocolNATS); err != nil {
		return err
	}
	v, err := parseNATS(o, kez.PublicKey{}, false)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// P2PEndpoint is a p2p endpoint: a libp2p peer ID (base58 multihash, as
// libp2p prints it) and the multiaddrs to dial it at. Its JSON form is
// {"protocol":"p2p","peer_id":...,"addrs":[...]}; addrs is omitted when
// empty (enough to name the endpoint in remove_endpoint).
type P2PEndpoint struct {
	PeerID string
	Addrs  []string
}

// MarshalJSON implements [json.Marshaler].
func (p P2PEndpoint) MarshalJSON() ([]byte, error) {
	return strictjson.Marshal(struct {
		Protocol string   `json:"protocol"`
		PeerID   string   `json:"peer_id"`
		Addrs    []string `json:"addrs,omitempty"`
	}{ProtocolP2P, p.PeerID, p.Addrs})
}

// UnmarshalJSON implements [json.Unmarshaler], checking the fields as an
// event body would.
func (p *P2PEndpoint) UnmarshalJSON(b []byte) error {
	o, err := strict.Object(b, "p2p endpoint", "protocol", "peer_id", "addrs")
	if err != nil {
		return err
	}
	if err := protocol(o, ProtocolP2P); err != nil {
		return err
	}
	v, err := parseP2P(o)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Claim is an identity claim for display: kind is a lowercase name such as
// github, dns or nostr; value the account, domain or key claimed; proof a
// URL or text where the claim can be checked. Clients check proofs
// themselves: a claim in a chain only says that the key holder made it.
type Claim struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	Proof string `json:"proof,omitempty"`
}

// SharedFiles names a shared-files manifest: its BLAKE3 hash (64 lowercase
// hex) and its size in bytes.
type SharedFiles struct {
	Manifest string `json:"manifest"`
	Size     int64  `json:"size"`
}

// parseBody checks the body of a known type and returns it decoded, or nil
// for a type or protocol this version does not know (kept, ignored).
func parseBody(chain kez.PublicKey, typ string, raw []byte) (any, error) {
	what := typ + " body"
	switch typ {
	case TypeAddEndpoint, TypeRemoveEndpoint:
		return parseEndpoint(chain, typ == TypeAddEndpoint, what, raw)
	case TypeAddClaim, TypeRevokeClaim:
		return parseClaim(typ == TypeAddClaim, what, raw)
	case TypeSetSharedFiles:
		return parseSharedFiles(what, raw)
	}
	if _, err := strict.Object(raw, what); err != nil {
		return nil, err
	}
	return nil, nil
}

func parseEndpoint(chain kez.PublicKey, add bool, what string, raw []byte) (any, error) {
	o, err := strict.Object(raw, what)
	if err != nil {
		return nil, err
	}
	proto, err := o.String("protocol", true)
	if err != nil {
		return nil, err
	}
	if !validName(proto) {
		return nil, o.Errorf("protocol must be a lowercase name")
	}
	switch proto {
	case ProtocolNATS:
		if o, err = strict.Object(raw, what, "protocol", "url", "inbox"); err != nil {
			return nil, err
		}
		return parseNATS(o, chain, add)
	case ProtocolP2P:
		if o, err = strict.Object(raw, what, "protocol", "peer_id", "addrs"); err != nil {
			return nil, err
		}
		return parseP2P(o)
	}
	return nil, nil
}

// parseNATS checks a nats endpoint. The inbox is required when add is set
// and must then be chain's inbox; with a zero chain it is only checked for
// shape.
func parseNATS(o strictjson.Object, chain kez.PublicKey, add bool) (NATSEndpoint, error) {
	var n NATSEndpoint
	var err error
	if n.URL, err = o.String("url", true); err != nil {
		return n, err
	}
	if why := checkNATSURL(n.URL); why != "" {
		return n, o.Errorf("nats url %s", why)
	}
	if n.Inbox, err = o.String("inbox", add); err != nil {
		return n, err
	}
	if o.Has("inbox") {
		if chain.IsZero() {
			h, ok := strings.CutPrefix(n.Inbox, InboxPrefix)
			if _, err := kez.ParsePublicKeyHex(h); !ok || err != nil {
				return n, o.Errorf("inbox must be %s<key hex>", InboxPrefix)
			}
		} else if n.Inbox != Inbox(chain) {
			// The inbox is the chain owner's own: advertising another
			// user's inbox would send a contact's messages there.
			return n, o.Errorf("inbox must be %s<chain hex>", InboxPrefix)
		}
	}
	return n, nil
}

// checkNATSURL accepts one broker URL with a host and no credentials: a
// sigchain is public, and a password in it would be published. It returns
// what is wrong, or "".
func checkNATSURL(s string) string {
	if s == "" || len(s) > maxURLLen {
		return fmt.Sprintf("must be 1 to %d bytes", maxURLLen)
	}
	if !printableASCII(s) {
		return "must be printable ASCII"
	}
	u, err := url.Parse(s)
	if err != nil {
		return "does not parse"
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return "must have scheme nats, tls, ws or wss"
	}
	switch {
	case u.User != nil:
		return "must not carry credentials"
	case u.Host == "" || u.Hostname() == "":
		return "must have a host"
	case strings.Trim(u.Hostname(), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != "":
		return "must have a DNS name or IP address as host"
	case u.Opaque != "" || u.Fragment != "" || u.RawQuery != "" || u.ForceQuery:
		return "must be a plain scheme://host[:port][/path]"
	}
	return ""
}

// printableASCII reports whether s is printable ASCII without spaces.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func parseP2P(o strictjson.Object) (P2PEndpoint, error) {
	var p P2PEndpoint
	var err error
	if p.PeerID, err = o.String("peer_id", true); err != nil {
		return p, err
	}
	if !validPeerID(p.PeerID) {
		return p, o.Errorf("peer_id must be a base58 libp2p peer ID")
	}
	if p.Addrs, err = o.Strings("addrs", false); err != nil {
		return p, err
	}
	if len(p.Addrs) > maxAddrs {
		return p, o.Errorf("at most %d addrs", maxAddrs)
	}
	for _, a := range p.Addrs {
		if len(a) == 0 || len(a) > maxAddrLen || a[0] != '/' || !printableASCII(a) {
			return p, o.Errorf("addrs must be multiaddrs (/ip4/..., printable ASCII, at most %d bytes)", maxAddrLen)
		}
	}
	if len(p.Addrs) == 0 {
		p.Addrs = nil
	}
	return p, nil
}

// validPeerID reports whether s is a libp2p peer ID in its usual text form:
// the base58btc encoding of a multihash, identity (the public key inlined,
// at most 42 bytes, as for ed25519 keys) or sha2-256 (32 bytes, for larger
// keys).
func validPeerID(s string) bool {
	if len(s) == 0 || len(s) > maxPeerID {
		return false
	}
	b, ok := base58Decode(s)
	if !ok || len(b) < 2 || int(b[1]) != len(b)-2 {
		return false
	}
	switch code, n := b[0], b[1]; {
	case code == 0x00 && n >= 1 && n <= 42: // identity multihash
	case code == 0x12 && n == 32: // sha2-256 multihash
	default:
		return false
	}
	return true
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58Decode decodes the Bitcoin base58 alphabet (libp2p's base58btc).
// Inputs are short (checked by the caller), so quadratic is fine.
func base58Decode(s string) ([]byte, bool) {
	var out []byte // big-endian, without the leading zeros
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	for i := zeros; i < len(s); i++ {
		d := strings.IndexByte(base58Alphabet, s[i])
		if d < 0 {
			return nil, false
		}
		carry := d
		for j := len(out) - 1; j >= 0; j-- {
			carry += int(out[j]) * 58
			out[j] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			out = append([]byte{byte(carry)}, out...)
			carry >>= 8
		}
	}
	return append(make([]byte, zeros), out...), true
}

func parseClaim(add bool, what string, raw []byte) (Claim, error) {
	var c Claim
	o, err := strict.Object(raw, what, "kind", "value", "proof")
	if err != nil {
		return c, err
	}
	if c.Kind, err = o.String("kind", true); err != nil {
		return c, err
	}
	if !validName(c.Kind) {
		return c, o.Errorf("kind must be a lowercase name (a-z, 0-9, _; at most %d bytes)", maxNameLen)
	}
	if c.Value, err = o.String("value", true); err != nil {
		return c, err
	}
	if c.Value == "" || len(c.Value) > maxValueLen || strings.TrimSpace(c.Value) != c.Value || !printable(c.Value, false) {
		return c, o.Errorf("value must be 1 to %d bytes of printable text without surrounding spaces", maxValueLen)
	}
	if c.Proof, err = o.String("proof", add); err != nil {
		return c, err
	}
	if o.Has("proof") && (c.Proof == "" || len(c.Proof) > maxProofLen || !printable(c.Proof, true)) {
		return c, o.Errorf("proof must be 1 to %d bytes of printable text", maxProofLen)
	}
	return c, nil
}

func parseSharedFiles(what string, raw []byte) (SharedFiles, error) {
	var f SharedFiles
	o, err := strict.Object(raw, what, "manifest", "size")
	if err != nil {
		return f, err
	}
	if f.Manifest, err = o.String("manifest", true); err != nil {
		return f, err
	}
	if !isHash(f.Manifest) {
		return f, o.Errorf("manifest must be 64 lowercase hex characters")
	}
	size, err := o.Uint("size")
	if err != nil {
		return f, err
	}
	f.Size = int64(size)
	return f, nil
}

// validName reports whether s is a lowercase name: a letter, then letters,
// digits and _, at most maxNameLen bytes (types, protocols, claim kinds).
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// printable reports whether s has no control characters (newlines and tabs
// allowed if multiline), so claims cannot rewrite a terminal or a log line.
func printable(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf) {
			return false
		}
	}
	return true
}

// isHash reports whether s is 64 lowercase hex characters.
func isHash(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

var (
	_ json.Marshaler   = NATSEndpoint{}
	_ json.Unmarshaler = (*NATSEndpoint)(nil)
	_ json.Marshaler   = P2PEndpoint{}
	_ json.Unmarshaler = (*P2PEndpoint)(nil)
)
