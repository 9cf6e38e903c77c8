// Package p2p is the user's peer-to-peer node: a go-libp2p host whose
// identity is the user's ed25519 key, serving the blobs the user shared
// over the /kez/blob/1 protocol and fetching blobs from other users' nodes
// as verified Bao slices (package blob), directly or through a kez relay.
package p2p
