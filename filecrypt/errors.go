package filecrypt

import "errors"

// Errors returned by this package.
var (
	// ErrHeader: the stream does not start with a kez-file-v1 header.
	ErrHeader = errors.New("not a kez-file-v1 stream")
	// ErrDecrypt: a chunk did not authenticate: the wrong key, or chunks
	// altered, reordered, duplicated or dropped.
	ErrDecrypt = errors.New("file chunk does not decrypt")
	// ErrTruncated: the stream ended before its last chunk.
	ErrTruncated = errors.New("file stream truncated")
	// ErrTrailingData: bytes follow the last chunk.
	ErrTrailingData = errors.New("data after the end of the file stream")
	// ErrSize: a size that no kez-file-v1 stream has.
	ErrSize = errors.New("invalid kez-file-v1 size")
	// ErrSourceChanged: the file being encrypted is not the size it was
	// said to be: it changed while it was read.
	ErrSourceChanged = errors.New("the file changed while it was read")
)
