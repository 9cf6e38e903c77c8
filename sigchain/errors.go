package sigchain

import (
	"errors"

	"kez.lat/kez"
)

// Sentinel errors. Functions wrap them with context; match them with
// [errors.Is]. Some also match a root sentinel, named below, so that an HTTP
// layer that knows only the root errors still answers with the right status.
var (
	// ErrMalformed: an event that is not well-formed: bad JSON, a missing,
	// unknown, duplicated or mistyped field, a wrong version, a bad prev, or
	// a body that breaks the rules of its known type. It also matches
	// [kez.ErrInvalidRequest].
	ErrMalformed error = &sentinel{"malformed sigchain event", kez.ErrInvalidRequest}
	// ErrTooLarge: an event whose wire form exceeds [MaxEventSize]. It also
	// matches [kez.ErrTooLarge].
	ErrTooLarge error = &sentinel{"sigchain event too large", kez.ErrTooLarge}
	// ErrBadSignature: a signature that does not verify under the chain key.
	// It is [kez.ErrBadSignature] itself.
	ErrBadSignature = kez.ErrBadSignature
	// ErrWrongChain: an event whose chain field names another key than the
	// chain being verified or appended to. It also matches
	// [kez.ErrInvalidRequest].
	ErrWrongChain error = &sentinel{"sigchain event belongs to another chain", kez.ErrInvalidRequest}
	// ErrWrongSeqno: an event whose seqno does not follow the previous one
	// (the first is 1). On append, a server answers it as a conflict: the
	// client appended to a stale tail.
	ErrWrongSeqno = errors.New("sigchain seqno out of order")
	// ErrWrongPrev: an event whose prev is not the hash of the previous
	// event's payload. On append, a conflict like [ErrWrongSeqno].
	ErrWrongPrev = errors.New("sigchain prev does not match the previous event")
	// ErrBadCtime: an event whose ctime is earlier than the previous event's,
	// or (see [CheckCtime]) too far ahead of the verifier's clock. It also
	// matches [kez.ErrInvalidRequest].
	ErrBadCtime error = &sentinel{"sigchain event ctime out of order", kez.ErrInvalidRequest}
	// ErrRollback: the chain shown now ends before the pinned event: events
	// a client saw before have disappeared.
	ErrRollback = errors.New("sigchain rolled back: fewer events than pinned")
	// ErrRewritten: the event at the pinned seqno is not the one pinned: the
	// history a client saw before has been rewritten.
	ErrRewritten = errors.New("sigchain rewritten: pinned event changed")
)

// sentinel is an error value that also matches a broader root sentinel.
type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.parent }
