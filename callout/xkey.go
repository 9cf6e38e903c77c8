package callout

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/nacl/box"
)

// sealer opens requests sealed to our xkey and seals answers back, in the
// nkeys xkey format ("xkv1" || 24-byte nonce || NaCl box), like nkeys'
// Seal and Open but with the X25519 shared key precomputed per server: a
// server's xkey lives as long as its process, and the scalar
// multiplication was the largest single cost of a callout.
type sealer struct {
	priv [32]byte
	mu   sync.Mutex
	keys map[string]*[32]byte // server xkey -> shared key
}

const (
	xkeyVersion   = "xkv1"
	xkeyNonceSize = 24
	maxServerKeys = 256
)

var errSealed = errors.New("cannot open sealed request")

func newSealer(kp nkeys.KeyPair) (*sealer, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || prefix != nkeys.PrefixByteCurve || len(raw) != 32 {
		return nil, errors.New("xkey must be a curve key")
	}
	s := &sealer{keys: map[string]*[32]byte{}}
	copy(s.priv[:], raw)
	return s, nil
}

func (s *sealer) shared(serverXKey string) (*[32]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[serverXKey]; ok {
		return k, nil
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(serverXKey))
	if err != nil || len(raw) != 32 {
		return nil, errSealed
	}
	var peer [32]byte
	copy(peer[:], raw)
	k := new([32]byte)
	box.Precompute(k, &peer, &s.priv)
	if len(s.keys) >= maxServerKeys {
		clear(s.keys) // servers restart; forget keys of gone processes
	}
	s.keys[serverXKey] = k
	return k, nil
}

func (s *sealer) open(data []byte, serverXKey string) ([]byte, error) {
	k, err := s.shared(serverXKey)
	if err != nil {
		return nil, err
	}
	if len(data) <= len(xkeyVersion)+xkeyNonceSize || !bytes.HasPrefix(data, []byte(xkeyVersion)) {
		return nil, errSealed
	}
	var nonce [xkeyNonceSize]byte
	copy(nonce[:], data[len(xkeyVersion):])
	out, ok := box.OpenAfterPrecomputation(nil, data[len(xkeyVersion)+xkeyNonceSize:], &nonce, k)
	if !ok {
		return nil, errSealed
	}
	return out, nil
}

func (s *sealer) seal(msg []byte, serverXKey string) ([]byte, error) {
	k, err := s.shared(serverXKey)
	if err != nil {
		return nil, err
	}
	var nonce [xkeyNonceSize]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, err
	}
	out := append([]byte(xkeyVersion), nonce[:]...)
	return box.SealAfterPrecomputation(out, msg, &nonce, k), nil
}
