package p2p

import (
	"errors"
	"fmt"
	"time"
)

// MinRate is the slowest a blob transfer may go, fetching or serving: a
// peer that sends (or reads) nothing, or a byte now and then, would
// otherwise hold the transfer, and a slot of the serving node, for as
// long as it likes. Zero fields take the defaults of [DefaultMinRate].
type MinRate struct {
	// FirstByte bounds the time from asking for a slice (once the stream
	// to the peer is open) to its first byte: the request, the peer's
	// answer and the start of the data. Serving, it bounds the time the
	// peer takes to accept the first bytes.
	FirstByte time.Duration
	// Bytes and Window: once the first byte moved, a transfer that moves
	// fewer than Bytes in any Window (a sliding window) is stopped with
	// [ErrStalled].
	Bytes  int64
	Window time.Duration
}

// DefaultMinRate is the default [MinRate]: the first byte within 15 s,
// then at least 64 KiB every 30 s (about 2 KiB/s, far below any link a
// file transfer is worth its while on).
var DefaultMinRate = MinRate{FirstByte: 15 * time.Second, Bytes: 64 << 10, Window: 30 * time.Second}

// ErrStalled: a transfer went slower than its [MinRate] allows and was
// stopped. A fetch keeps what verified before it: fetching again
// resumes from there.
var ErrStalled = errors.New("transfer stalled")

// Validate reports whether m is a usable rule: no field negative.
func (m MinRate) Validate() error {
	if m.FirstByte < 0 || m.Bytes < 0 || m.Window < 0 {
		return fmt.Errorf("p2p: minimum rate %d bytes per %s, first byte within %s: no value may be negative", m.Bytes, m.Window, m.FirstByte)
	}
	return nil
}

// orDefault returns m with its zero fields set from DefaultMinRate.
func (m MinRate) orDefault() MinRate {
	if m.FirstByte == 0 {
		m.FirstByte = DefaultMinRate.FirstByte
	}
	if m.Bytes == 0 {
		m.Bytes = DefaultMinRate.Bytes
	}
	if m.Window == 0 {
		m.Window = DefaultMinRate.Window
	}
	return m
}

// String describes m for errors and logs: "64 KiB per 30s".
func (m MinRate) String() string {
	if m.Bytes%1024 == 0 {
		return fmt.Sprintf("%d KiB per %s", m.Bytes/1024, m.Window)
	}
	return fmt.Sprintf("%d bytes per %s", m.Bytes, m.Window)
}

// pacer tells when a transfer falls under its MinRate. It takes the
// time from its caller, so that the rule is tested without waiting;
// the caller puts the deadline on the stream, so that a read or write
// that would block past it returns.
type pacer struct {
	rate  MinRate
	asked time.Time // when the slice was asked for (or the status sent)
	total int64
	// marks are the byte count moved by each time, oldest first: none
	// before the first byte moved, which adds {then, 0}; then the last
	// one at or before now-Window, and the later ones. A count that lands
	// within Window/markParts of the mark before the last one moves the
	// last one to now (rather than keep a mark per read), which takes
	// those bytes as moved later than they were, by less than
	// Window/markParts: the rule is at most that more lenient than its
	// letter. (Measured from the last mark, which such counts themselves
	// move, a byte every so often would push it on for ever.) Each mark
	// is at least Window/markParts after the one two before it.
	marks []mark
}

type mark struct {
	at    time.Time
	total int64
}

// markParts is how finely marks split a window: a window holds at most
// 2*markParts of them (plus the one before it).
const markParts = 16

func newPacer(rate MinRate, asked time.Time) *pacer {
	return &pacer{rate: rate.orDefault(), asked: asked}
}

// add counts n bytes moved at now.
func (p *pacer) add(now time.Time, n int) {
	if n <= 0 {
		return
	}
	if len(p.marks) == 0 {
		p.marks = append(p.marks, mark{now, 0})
	}
	p.total += int64(n)
	if l := len(p.marks); l > 1 && now.Sub(p.marks[l-2].at) < p.rate.Window/markParts {
		p.marks[l-1] = mark{now, p.total}
	} else {
		p.marks = append(p.marks, mark{now, p.total})
	}
	// The marks before the last one at or before now-Window are no
	// longer needed: every window from now on starts after it.
	i := 0
	for i+1 < len(p.marks) && !p.marks[i+1].at.After(now.Add(-p.rate.Window)) {
		i++
	}
	p.marks = p.marks[i:]
}

// deadline returns when the transfer stalls unless more bytes move
// before: FirstByte after it was asked for, until the first byte; then
// the first time t, Window or more after the first byte, at which the
// bytes moved in (t-Window, t] are fewer than Bytes.
func (p *pacer) deadline() time.Time {
	if len(p.marks) == 0 {
		return p.asked.Add(p.rate.FirstByte)
	}
	// The window ending at t holds total - count(t-Window): too few once
	// count(t-Window) > total-Bytes, i.e. once t-Window reaches the first
	// mark past that. The first mark is the first byte's, so t is never
	// less than Window after it.
	s := p.marks[len(p.marks)-1].at
	for _, m := range p.marks {
		if m.total > p.total-p.rate.Bytes {
			s = m.at
			break
		}
	}
	return s.Add(p.rate.Window)
}

// stalled returns the error of a transfer with peer that passed its
// deadline; what is "sent" or "read", as the peer did.
func (p *pacer) stalled(peer fmt.Stringer, what string, now time.Time) error {
	if len(p.marks) == 0 {
		return fmt.Errorf("%w: peer %s %s no byte within %s", ErrStalled, peer, what, p.rate.FirstByte)
	}
	moved := p.total
	for _, m := range p.marks {
		if !m.at.After(now.Add(-p.rate.Window)) {
			moved = p.total - m.total
		}
	}
	return fmt.Errorf("%w: peer %s %s %d bytes in the last %s, less than the minimum of %s", ErrStalled, peer, what, moved, p.rate.Window, p.rate)
}
