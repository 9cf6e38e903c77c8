package sigchain

import (
	"fmt"
	"slices"

	"kez.lat/kez"
)

// State is what a verified chain says about its owner now: the result of
// applying its events in order. Lists are ordered by when each entry was
// last added, oldest first. Its JSON form lets a client cache it beside the
// [Pin] and continue with [State.Extend].
type State struct {
	// Key is the chain's key, the owner's primary key.
	Key kez.PublicKey `json:"key"`
	// Tail is the last event applied; zero for an empty chain.
	Tail Pin `json:"tail"`
	// Ctime is the ctime of the tail event.
	Ctime int64 `json:"ctime"`
	// NATS lists the nats endpoints: add_endpoint adds (or replaces the one
	// with the same URL), remove_endpoint removes.
	NATS []NATSEndpoint `json:"nats"`
	// P2P lists the p2p endpoints, identified by peer ID.
	P2P []P2PEndpoint `json:"p2p"`
	// Claims lists the active claims, identified by kind and value:
	// add_claim adds (or replaces the proof), revoke_claim removes.
	Claims []Claim `json:"claims"`
	// SharedFiles is the latest set_shared_files, nil if none.
	SharedFiles *SharedFiles `json:"shared_files,omitempty"`
}

// VerifyChain verifies a whole chain, events from seqno 1 in order, against
// key and returns its state. Every event must be signed by key and name it
// as its chain ([ErrBadSignature], [ErrWrongChain]); seqnos run 1, 2, 3...
// ([ErrWrongSeqno]); each prev is the hash of the previous payload
// ([ErrWrongPrev]); ctimes never decrease, equal being fine since several
// events are often signed in one second ([ErrBadCtime]). Events of unknown
// types are verified like the others and ignored by the state. An empty
// chain is valid: a user who has not published anything yet.
//
// The rules use only an event and its predecessor, exactly what
// [VerifyAppend] checks on a server, so every chain a server could build by
// appending verifies here; semantic oddities such as removing an endpoint
// never added are no-ops, never errors, since an append-only chain cannot
// be repaired.
func VerifyChain(key kez.PublicKey, events []Event) (State, error) {
	return State{Key: key}.Extend(events)
}

// Extend verifies tail, the events a server returned after the client
// verified s (e.g. for GET ...?since=N), and returns the state with the new
// events applied; s itself is unchanged. If s is empty, tail must start at
// seqno 1 and Extend is [VerifyChain]. Otherwise tail must start at or
// before the pinned seqno s.Tail.Seqno, so that the server has to show the
// pinned event again:
//
//   - tail starting after the pinned seqno: [ErrWrongSeqno] (ask for the
//     tail from the pinned seqno, not after it);
//   - tail empty, or ending before the pinned seqno: [ErrRollback];
//   - event at the pinned seqno with another hash: [ErrRewritten].
//
// Every event of tail, old or new, is verified as in [VerifyChain].
func (s State) Extend(tail []Event) (State, error) {
	if s.Key.IsZero() {
		return State{}, fmt.Errorf("%w: no chain key", ErrWrongChain)
	}
	ns := s.clone()
	pinned := s.Tail.Seqno
	for i := range tail {
		e := tail[i]
		if err := e.Verify(s.Key); err != nil {
			return State{}, eventError(i, e, err)
		}
		switch {
		case i > 0:
			if err := link(tail[i-1], e); err != nil {
				return State{}, eventError(i, e, err)
			}
		case pinned == 0 && e.seqno != 1:
			return State{}, eventError(i, e, fmt.Errorf("%w: chain starts at seqno %d, not 1", ErrWrongSeqno, e.seqno))
		case pinned > 0 && e.seqno > pinned:
			return State{}, fmt.Errorf("%w: tail starts at seqno %d, after the pinned seqno %d; request it from the pinned seqno",
				ErrWrongSeqno, e.seqno, pinned)
		}
		switch {
		case e.seqno < pinned:
			// Before the pin: checked by its link to the pinned event.
		case e.seqno == pinned:
			if e.hash != s.Tail.Hash {
				return State{}, fmt.Errorf("%w: seqno %d", ErrRewritten, pinned)
			}
		default:
			ns.apply(e)
		}
	}
	if pinned > 0 && (len(tail) == 0 || tail[len(tail)-1].seqno < pinned) {
		return State{}, fmt.Errorf("%w: pinned seqno %d not shown", ErrRollback, pinned)
	}
	return ns, nil
}

// VerifyAppend reports whether next may follow last (nil when the chain is
// empty) in key's chain: what a server checks before storing an event that
// [ParseEvent] accepted. next must be signed by key and name its chain
// ([ErrBadSignature], [ErrWrongChain]), have seqno last+1, or 1 for the
// first event ([ErrWrongSeqno]), prev equal to last's hash ([ErrWrongPrev])
// and a ctime no earlier than last's ([ErrBadCtime]). [ErrWrongSeqno] and
// [ErrWrongPrev] mean the client appended to a stale tail (a conflict).
// Servers also bound ctime against their clock with [CheckCtime].
func VerifyAppend(key kez.PublicKey, last *Event, next Event) error {
	if err := next.Verify(key); err != nil {
		return err
	}
	if last == nil {
		if next.seqno != 1 {
			return fmt.Errorf("%w: seqno %d on an empty chain", ErrWrongSeqno, next.seqno)
		}
		return nil
	}
	if last.IsZero() {
		return fmt.Errorf("%w: zero last event", ErrMalformed)
	}
	if !last.chain.Equal(key) {
		return fmt.Errorf("last event: %w", ErrWrongChain)
	}
	return link(*last, next)
}

// link checks that next directly follows prev.
func link(prev, next Event) error {
	switch {
	case next.seqno != prev.seqno+1:
		return fmt.Errorf("%w: seqno %d after %d", ErrWrongSeqno, next.seqno, prev.seqno)
	case next.prev != prev.hash:
		return ErrWrongPrev
	case next.ctime < prev.ctime:
		return fmt.Errorf("%w: ctime %d before the previous %d", ErrBadCtime, next.ctime, prev.ctime)
	}
	return nil
}

func eventError(i int, e Event, err error) error {
	if e.IsZero() {
		return fmt.Errorf("event at index %d: %w", i, err)
	}
	return fmt.Errorf("event %d: %w", e.seqno, err)
}

// apply makes e the tail of s. Unknown types and protocols change only the
// tail.
func (s *State) apply(e Event) {
	s.Tail = e.Pin()
	s.Ctime = e.ctime
	switch b := e.known.(type) {
	case NATSEndpoint:
		s.NATS = slices.DeleteFunc(s.NATS, func(n NATSEndpoint) bool { return n.URL == b.URL })
		if e.typ == TypeAddEndpoint {
			s.NATS = append(s.NATS, b)
		}
	case P2PEndpoint:
		s.P2P = slices.DeleteFunc(s.P2P, func(p P2PEndpoint) bool { return p.PeerID == b.PeerID })
		if e.typ == TypeAddEndpoint {
			b.Addrs = slices.Clone(b.Addrs) // the state never shares memory with an event
			s.P2P = append(s.P2P, b)
		}
	case Claim:
		s.Claims = slices.DeleteFunc(s.Claims, func(c Claim) bool { return c.Kind == b.Kind && c.Value == b.Value })
		if e.typ == TypeAddClaim {
			s.Claims = append(s.Claims, b)
		}
	case SharedFiles:
		s.SharedFiles = &b
	}
}

// clone returns a deep copy of s, so that Extend never changes its receiver.
func (s State) clone() State {
	c := s
	c.NATS = slices.Clone(s.NATS)
	c.P2P = slices.Clone(s.P2P)
	for i := range c.P2P {
		c.P2P[i].Addrs = slices.Clone(c.P2P[i].Addrs)
	}
	c.Claims = slices.Clone(s.Claims)
	if s.SharedFiles != nil {
		f := *s.SharedFiles
		c.SharedFiles = &f
	}
	return c
}
