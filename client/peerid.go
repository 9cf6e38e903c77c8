package client

import (
	"kez.lat/kez"
	"kez.lat/kez/p2p"
)

// PeerID returns the libp2p peer ID of key, the identity of the user's P2P
// node (see p2p.PeerID).
func PeerID(key kez.PublicKey) string {
	id, err := p2p.PeerID(key)
	if err != nil {
		panic("kez key is not an ed25519 key: " + err.Error()) // a kez.PublicKey always is
	}
	return id.String()
}
