package client

import (
	"math/big"

	"kez.lat/kez"
)

// PeerID returns the libp2p peer ID of key, the identity of the user's P2P
// node (DESIGN §5: the node key is the primary key): the base58btc
// encoding of the identity multihash of the key's libp2p protobuf form,
// 0x08 0x01 (KeyType Ed25519) 0x12 0x20 (Data, 32 bytes) || key. Every
// ed25519 peer ID starts with "12D3KooW".
func PeerID(key kez.PublicKey) string {
	pb := append([]byte{0x08, 0x01, 0x12, 0x20}, key.Bytes()...)
	mh := append([]byte{0x00, byte(len(pb))}, pb...) // identity multihash
	return base58(mh)
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58 encodes b in the Bitcoin alphabet (libp2p's base58btc).
func base58(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	n := new(big.Int).SetBytes(b)
	radix, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for range zeros {
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}
