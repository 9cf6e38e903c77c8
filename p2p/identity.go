package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"kez.lat/kez"
)

// Identity returns k as a libp2p private key: a node (or relay) with it
// has the peer ID [PeerID] of k's public key.
func Identity(k *kez.PrivateKey) (crypto.PrivKey, error) {
	seed := k.Seed()
	defer clear(seed)
	// crypto/ed25519's 64-byte private key form: seed || public key.
	priv, err := crypto.UnmarshalEd25519PrivateKey(append(seed, k.Public().Bytes()...))
	if err != nil {
		return nil, fmt.Errorf("libp2p key: %w", err)
	}
	return priv, nil
}

// PeerID returns the libp2p peer ID of key: the identity of that user's
// node (DESIGN §5: the node key is the primary key). Every ed25519 peer
// ID starts with "12D3KooW", and holds the key itself.
func PeerID(key kez.PublicKey) (peer.ID, error) {
	pub, err := crypto.UnmarshalEd25519PublicKey(key.Bytes())
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pub)
}

// KeyOf returns the kez key a peer ID names, if it is an ed25519 peer ID
// (the key is inlined in it) whose key passes kez's checks; errors wrap
// kez.ErrInvalidKey.
func KeyOf(id peer.ID) (kez.PublicKey, error) {
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return kez.PublicKey{}, fmt.Errorf("%w: peer id holds no public key", kez.ErrInvalidKey)
	}
	if pub.Type() != crypto.Ed25519 {
		return kez.PublicKey{}, fmt.Errorf("%w: peer key is not ed25519", kez.ErrInvalidKey)
	}
	raw, err := pub.Raw()
	if err != nil {
		return kez.PublicKey{}, fmt.Errorf("%w: %v", kez.ErrInvalidKey, err)
	}
	return kez.NewPublicKey(raw)
}
