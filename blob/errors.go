package blob

import "errors"

// Errors returned by this package.
var (
	// ErrNotFound: the store has no such blob.
	ErrNotFound = errors.New("blob not found")
	// ErrCorrupt: bytes from a source do not match the blob's hash (or
	// its announced size). Nothing unverified has been written; a fetch
	// from another source resumes after the bytes verified so far.
	ErrCorrupt = errors.New("blob data does not verify")
	// ErrRange: a byte range outside the blob, or empty.
	ErrRange = errors.New("invalid blob range")
	// ErrSize: the data to import is not of the size given.
	ErrSize = errors.New("blob size mismatch")
	// ErrBusy: the blob is being fetched already, by this store or by
	// another process on its directory.
	ErrBusy = errors.New("blob fetch in progress")
	// ErrMalformedHash: not a 64-digit lowercase hex BLAKE3 hash.
	ErrMalformedHash = errors.New("malformed blob hash")
)
