package sigchain

import "fmt"

// Pin is what a client remembers of a chain it verified: the seqno and
// hash of the last event it saw. A server that later shows fewer events or
// another event at that seqno is caught ([CheckPin], [State.Extend]). The
// zero Pin pins nothing.
type Pin struct {
	Seqno uint64 `json:"seqno"`
	Hash  string `json:"hash"`
}

// IsZero reports whether p pins nothing.
func (p Pin) IsZero() bool { return p.Seqno == 0 }

// CheckPin reports whether events, a run the caller has verified (by
// [VerifyChain], or [State.Extend] for a tail), still contains the pinned
// event. It returns nil for a zero pin, [ErrRollback] if events end before
// the pinned seqno, [ErrRewritten] if the event there has another hash, and
// [ErrWrongSeqno] if events start after the pinned seqno (or are not a
// contiguous run) and so cannot show it. These are verdicts on what the
// server showed, never network errors: a client reports them loudly and
// keeps its pin.
func CheckPin(pin Pin, events []Event) error {
	if pin.IsZero() {
		return nil
	}
	if len(events) == 0 || events[len(events)-1].seqno < pin.Seqno {
		return fmt.Errorf("%w: pinned seqno %d not shown", ErrRollback, pin.Seqno)
	}
	first := events[0].seqno
	if first > pin.Seqno || first == 0 {
		return fmt.Errorf("%w: events start at seqno %d, after the pinned seqno %d", ErrWrongSeqno, first, pin.Seqno)
	}
	i := pin.Seqno - first
	if i >= uint64(len(events)) || events[i].seqno != pin.Seqno {
		return fmt.Errorf("%w: events are not a contiguous run", ErrWrongSeqno)
	}
	if events[i].hash != pin.Hash {
		return fmt.Errorf("%w: seqno %d", ErrRewritten, pin.Seqno)
	}
	return nil
}
