package share

import (
	"errors"

	"kez.lat/kez"
)

// Errors returned by this package; match them with [errors.Is]. The
// specific malformations also match [ErrMalformed], and the size limits
// also match [kez.ErrTooLarge].
var (
	// ErrMalformed: bytes that are not a well-formed announcement,
	// manifest or manifest entry: bad JSON, a missing, unknown, repeated or
	// mistyped field, a bad hash, base64 or key, or a value out of range.
	ErrMalformed = errors.New("malformed file share")
	// ErrVersion: a version ("v") this package does not read.
	ErrVersion error = &sentinel{"unsupported file share version", []error{ErrMalformed}}
	// ErrName: a file name that is empty, longer than [MaxNameLen] bytes,
	// not UTF-8, or could be read as a path (see [CheckName]).
	ErrName error = &sentinel{"invalid file name", []error{ErrMalformed}}
	// ErrFileSize: a plaintext size that does not match the blob size, or
	// a blob size that no kez-file-v1 stream has.
	ErrFileSize error = &sentinel{"file size does not match the blob size", []error{ErrMalformed}}
	// ErrAddr: a peer address that is not an acceptable multiaddr, or too
	// many of them (see [CheckAddr]).
	ErrAddr error = &sentinel{"invalid peer address", []error{ErrMalformed}}
	// ErrTooLarge: a manifest longer than [MaxManifestSize] bytes, or with
	// more than [MaxEntries] entries, or an announcement longer than
	// [MaxAnnouncementSize]. It also matches [ErrMalformed] and
	// [kez.ErrTooLarge].
	ErrTooLarge error = &sentinel{"file share too large", []error{ErrMalformed, kez.ErrTooLarge}}
	// ErrDecrypt: a wrapped content key or a manifest box that does not
	// open: another sender or owner than the one given, another blob, or
	// tampered bytes.
	ErrDecrypt = errors.New("file share does not decrypt")
	// ErrBadSignature: a manifest whose signature does not verify. It is
	// [kez.ErrBadSignature] itself.
	ErrBadSignature = kez.ErrBadSignature
	// ErrWrongOwner: a manifest whose owner is not the key it was fetched
	// for.
	ErrWrongOwner = errors.New("manifest belongs to another key")
)

// sentinel is an error value that also matches broader sentinels.
type sentinel struct {
	msg     string
	parents []error
}

func (e *sentinel) Error() string   { return e.msg }
func (e *sentinel) Unwrap() []error { return e.parents }
