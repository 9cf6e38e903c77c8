package strictjson

import (
	"crypto/ed25519"
	"encoding/base64"
)

// Signed is a JSON payload and its Ed25519 signature, sent as
// {"payload":"<base64>","sig":"<base64>"}. The payload travels as base64
// so that the exact signed bytes survive any re-encoding of the outer
// object, and a verifier never re-serialises JSON to check a signature.
type Signed struct {
	Payload []byte
	Sig     []byte
}

// Marshal returns the wire form of s, {"payload":"<base64>","sig":"<base64>"}.
func (s Signed) Marshal() []byte {
	enc := base64.StdEncoding
	b := make([]byte, 0, 32+enc.EncodedLen(len(s.Payload))+enc.EncodedLen(len(s.Sig)))
	b = append(b, `{"payload":"`...)
	b = enc.AppendEncode(b, s.Payload)
	b = append(b, `","sig":"`...)
	b = enc.AppendEncode(b, s.Sig)
	return append(b, `"}`...)
}

// ParseSigned reads the wire form strictly: one JSON object of f with
// exactly the members payload (non-empty canonical base64) and sig (64
// bytes, canonical base64); what names it in errors. It does not look
// into the payload or verify the signature.
func (f Format) ParseSigned(b []byte, what string) (Signed, error) {
	o, err := f.Parse(b, what, "payload", "sig")
	if err != nil {
		return Signed{}, err
	}
	var s Signed
	if s.Payload, err = o.Bytes("payload", -1); err != nil {
		return Signed{}, err
	}
	if s.Sig, err = o.Bytes("sig", ed25519.SignatureSize); err != nil {
		return Signed{}, err
	}
	return s, nil
}
