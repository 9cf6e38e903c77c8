package sigchain_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

// t0 is 2026-01-01T00:00:00Z, the ctime of the test chains.
var t0 = time.Unix(1767225600, 0)

// step is one event to build: its type, body and time after t0.
type step struct {
	typ   string
	body  any
	after time.Duration
}

// build signs steps into a chain of key, failing tb on any error.
func build(tb testing.TB, key *kez.PrivateKey, steps ...step) []sigchain.Event {
	tb.Helper()
	return appendSteps(tb, key, nil, steps...)
}

// appendSteps extends chain with steps.
func appendSteps(tb testing.TB, key *kez.PrivateKey, chain []sigchain.Event, steps ...step) []sigchain.Event {
	tb.Helper()
	for _, s := range steps {
		var prev *sigchain.Event
		if len(chain) > 0 {
			prev = &chain[len(chain)-1]
		}
		e, err := sigchain.Next(key, prev, s.typ, s.body, t0.Add(s.after))
		if err != nil {
			tb.Fatalf("Next(%s): %v", s.typ, err)
		}
		chain = append(chain, e)
	}
	return chain
}

// wireOf returns the wire form of e.
func wireOf(tb testing.TB, e sigchain.Event) []byte {
	tb.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signWire signs payload with key, as-is, and returns its wire form: the
// way to make validly signed events that Next would never write.
func signWire(key *kez.PrivateKey, payload string) string {
	sig := key.Sign(kez.PurposeSigchain, []byte(payload))
	return `{"payload":"` + base64.StdEncoding.EncodeToString([]byte(payload)) +
		`","sig":"` + base64.StdEncoding.EncodeToString(sig) + `"}`
}

// mustParse parses wire, failing tb on error.
func mustParse(tb testing.TB, wire string) sigchain.Event {
	tb.Helper()
	e, err := sigchain.ParseEvent([]byte(wire))
	if err != nil {
		tb.Fatalf("ParseEvent: %v", err)
	}
	return e
}

// hashOf returns the sha256 hex of s.
func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// peerID returns the libp2p peer ID of an ed25519 key: base58btc of the
// identity multihash of the protobuf PublicKey{Type: Ed25519, Data: key}.
func peerID(k kez.PublicKey) string {
	b := append([]byte{0x00, 36, 0x08, 0x01, 0x12, 0x20}, k.Bytes()...)
	return base58(b)
}

func base58(b []byte) string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	var digits []byte // little-endian base 58
	for _, c := range b[zeros:] {
		carry := int(c)
		for i := range digits {
			carry += int(digits[i]) << 8
			digits[i] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	var sb strings.Builder
	sb.WriteString(strings.Repeat("1", zeros))
	for i := len(digits) - 1; i >= 0; i-- {
		sb.WriteByte(alphabet[digits[i]])
	}
	return sb.String()
}

// errorCodes names the sentinels in testdata/vectors.json.
var errorCodes = map[string]error{
	"malformed":     sigchain.ErrMalformed,
	"too_large":     sigchain.ErrTooLarge,
	"bad_signature": sigchain.ErrBadSignature,
	"wrong_chain":   sigchain.ErrWrongChain,
	"wrong_seqno":   sigchain.ErrWrongSeqno,
	"wrong_prev":    sigchain.ErrWrongPrev,
	"bad_ctime":     sigchain.ErrBadCtime,
	"rollback":      sigchain.ErrRollback,
	"rewritten":     sigchain.ErrRewritten,
}

// wantErr fails tb unless err matches want (nil meaning no error).
func wantErr(tb testing.TB, what string, err, want error) {
	tb.Helper()
	switch {
	case want == nil && err != nil:
		tb.Errorf("%s = %v, want no error", what, err)
	case want != nil && !errors.Is(err, want):
		tb.Errorf("%s = %v, want %v", what, err, want)
	}
}

// sameState reports whether a and b are equal, nil and empty lists alike.
func sameState(a, b sigchain.State) bool {
	norm := func(s sigchain.State) sigchain.State {
		if len(s.NATS) == 0 {
			s.NATS = nil
		}
		if len(s.P2P) == 0 {
			s.P2P = nil
		}
		for i := range s.P2P {
			if len(s.P2P[i].Addrs) == 0 {
				s.P2P[i].Addrs = nil
			}
		}
		if len(s.Claims) == 0 {
			s.Claims = nil
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func unmarshal(tb testing.TB, b []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatal(err)
	}
}
