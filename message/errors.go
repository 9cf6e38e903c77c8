package message

import (
	"errors"

	"kez.lat/kez/strictjson"
)

// Errors returned by this package. A signature failure is reported as
// [kez.ErrBadSignature] and a low-order public key as [kez.ErrInvalidKey].
var (
	// ErrMalformed: the bytes are not a well-formed kez-msg envelope
	// (v1 or v2) or plaintext (bad JSON, an unknown, missing or repeated
	// field, an unsupported version, a byte string of the wrong length or
	// not in canonical base64, a negative or non-integer timestamp).
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge: the envelope is longer than MaxSize bytes.
	ErrTooLarge = errors.New("message too large")
	// ErrNotForMe: the envelope is addressed to another key.
	ErrNotForMe = errors.New("message is not addressed to this key")
	// ErrSenderMismatch: the envelope's sender is not the pinned key the
	// caller expected.
	ErrSenderMismatch = errors.New("message sender is not the expected key")
	// ErrDecrypt: the signature verified but the ciphertext did not decrypt
	// or, in v2, the key commitment did not match the derived key (a bug
	// or an attack by the sender); or a wrapped key did not unwrap.
	ErrDecrypt = errors.New("message does not decrypt")
	// ErrClosed: the [Identity] was closed; its secrets are gone.
	ErrClosed = errors.New("message identity is closed")
)

// jsonFormat reads envelopes and plaintexts strictly, its errors wrapping
// ErrMalformed. Members reads one level, so MaxDepth is not used: the
// file layer checks the members of a plaintext it owns.
var jsonFormat = strictjson.Format{Err: ErrMalformed}
