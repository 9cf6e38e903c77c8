package kez

import (
	"errors"
	"fmt"
)

// Sentinel errors. Packages wrap them with context; callers match them with
// errors.Is. The HTTP layers map each to one status and code.
var (
	// ErrInvalidHandle: the handle does not follow the handle rules.
	ErrInvalidHandle = errors.New("invalid handle")
	// ErrInvalidKey: a public key that is malformed, non-canonical or of small order.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidRequest: a malformed request body or parameter.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrBadSignature: a signature that does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrStaleTimestamp: a signed timestamp outside the freshness window.
	ErrStaleTimestamp = errors.New("timestamp outside the freshness window")
	// ErrReservedHandle: the handle is on the reserved list.
	ErrReservedHandle = errors.New("handle is reserved")
	// ErrHandleTaken: the handle is already registered.
	ErrHandleTaken = errors.New("handle already taken")
	// ErrKeyTaken: the key already has a handle.
	ErrKeyTaken = errors.New("key already has a handle")
	// ErrHandleTooSimilar: a registered handle reads alike (same skeleton).
	ErrHandleTooSimilar = errors.New("handle too similar to a registered one")
	// ErrWrongDomain: the handle belongs to another domain than this server's.
	ErrWrongDomain = errors.New("handle belongs to another domain")
	// ErrNotFound: no such handle or key.
	ErrNotFound = errors.New("not found")
	// ErrRateLimited: too many requests from this client.
	ErrRateLimited = errors.New("rate limited")
	// ErrNetRateLimited: too many requests from the client's IPv6 /48
	// (ClientNet), the wider tier of a limit per client. It wraps
	// ErrRateLimited and is answered as it is (429 rate_limited); its text
	// names the /48, and metrics count it apart.
	ErrNetRateLimited = fmt.Errorf("%w: too many requests from this IPv6 /48", ErrRateLimited)
	// ErrTooLarge: a request body over the size limit.
	ErrTooLarge = errors.New("request too large")
	// ErrUnavailable: a dependency (the broker) is unreachable or timed out.
	ErrUnavailable = errors.New("service unavailable")
	// ErrStoreUnavailable: the broker answers but its store refuses a
	// write for want of room; nothing was stored.
	ErrStoreUnavailable = errors.New("cannot store right now; nothing was stored")
	// ErrLogDamaged: an append-only log (the registry, the sigchains) is
	// not the log that was written — a gap, a lost or changed event, or a
	// claim the projection knows and the log forgot — so writes are
	// refused until an operator repairs it (docs/operations.md).
	ErrLogDamaged = errors.New("log damaged: writes refused until it is repaired")
)
