package kez

import (
	"sync"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Signatures are made and checked with curve25519-voi rather than
// crypto/ed25519: a check with the key's tables computed once and kept
// takes half the time (29–32 against 62 µs on the 2-core machines we
// measure on), a signature two thirds, and the inbox door checks every
// message sent and the recipient again. The signatures are the same bytes
// (ed25519 is deterministic) and the checks crypto/ed25519's: cofactorless,
// s below the group order, R compared as encoded (VerifyOptionsStdLib).
// TestVerifyEdgeCases and FuzzVerifyAgrees hold the two to one answer.
//
// The rules are a copy: voi exports its presets as pointers that any
// package could change.
var (
	stdLibRules   = *voi.VerifyOptionsStdLib
	verifyOptions = &voi.Options{Verify: &stdLibRules}
)

// maxExpanded bounds the keys whose tables are kept, 1.5 KB each; a key
// out of the cache costs 6 µs more, still less than crypto/ed25519.
const maxExpanded = 1024

var expanded struct {
	sync.RWMutex
	m map[[32]byte]*voi.ExpandedPublicKey
}

// expand returns k's verification tables, cached; a full cache drops an
// entry at random. The tables are a function of the key alone, so nothing
// a caller passes can put wrong ones in the cache, and only keys of
// NewPublicKey reach it (the zero key does not).
func (k PublicKey) expand() (*voi.ExpandedPublicKey, bool) {
	expanded.RLock()
	x := expanded.m[k.k]
	expanded.RUnlock()
	if x != nil {
		return x, true
	}
	x, err := voi.NewExpandedPublicKey(voi.PublicKey(k.k[:]))
	if err != nil {
		return nil, false // not a point: NewPublicKey refuses those
	}
	expanded.Lock()
	defer expanded.Unlock()
	if expanded.m == nil {
		expanded.m = make(map[[32]byte]*voi.ExpandedPublicKey)
	}
	if len(expanded.m) >= maxExpanded {
		for old := range expanded.m {
			delete(expanded.m, old)
			break
		}
	}
	expanded.m[k.k] = x
	return x, true
}

// verify reports whether sig is k's ed25519 signature of m. The zero
// key, a point of small order that no NewPublicKey returns, verifies
// nothing and is not cached.
func (k PublicKey) verify(m, sig []byte) bool {
	if len(sig) != voi.SignatureSize || k.IsZero() {
		return false
	}
	x, ok := k.expand()
	return ok && voi.VerifyExpandedWithOptions(x, m, sig, verifyOptions)
}

// sign returns priv's ed25519 signature of m.
func sign(priv []byte, m []byte) []byte { return voi.Sign(voi.PrivateKey(priv), m) }
