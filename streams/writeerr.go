package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// WriteErrors tracks the streams whose writes the broker drops while its
// store takes writes: a stream whose store once failed a write (ENOSPC,
// EIO) keeps that error (nats-server's werr, set once, never cleared) and
// drops every later write to it without an answer until nats-server
// restarts, even after the disk has room again. The store probe cannot
// see it (it writes KEZ_HEALTH, which it makes afresh), nor can
// StreamReady (the stream is there, with a leader), so the writers report
// here: every writer of a stream (the door's sends, the registry's
// appends, the sig-server's appends) calls Stored after a write that was
// stored and Failed after one that got no answer (or runs it through
// Write, which does both), and readiness asks Err.
//
// Only a single server's streams are tracked: a replicated stream's
// node that fails a write hands its leadership to another, and the
// stream goes on (see tracks).
//
// A stream is marked when a write to it goes unanswered, it is there
// (the write did not go to a missing stream's subjects), nothing was
// stored to it through this connection since that write was sent (a
// stream that drops writes drops them all; one merely slow under load
// stores others meanwhile), and the store probe passes (the stream
// alone refuses) or finds the disk failing (which latches the error of
// every stream that then failed a write). The mark stands until a write
// to the stream is stored, or the connection reconnects (after a
// restart of nats-server, which clears the error; a mark wrongly dropped
// by a mere reconnect is set again by the next dropped write).
//
// Its methods are safe on a nil *WriteErrors, which tracks nothing.
type WriteErrors struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	probe *StoreProbe
	now   func() time.Time

	mu     sync.Mutex
	stored map[string]time.Time // stream → when a write to it was last stored
	marks  map[string]writeMark
}

type writeMark struct {
	since      time.Time
	node       string // the stream's leader when marked, if known
	reconnects uint64 // nc's reconnects when marked
}

// NewWriteErrors returns a tracker for the streams written through js,
// consulting probe (which must be set) before it marks one.
func NewWriteErrors(js jetstream.JetStream, probe *StoreProbe) *WriteErrors {
	return &WriteErrors{
		nc: js.Conn(), js: js, probe: probe, now: time.Now,
		stored: map[string]time.Time{}, marks: map[string]writeMark{},
	}
}

// ErrStreamRefusesWrites is wrapped by the errors of a stream marked as
// refusing writes (see WriteErrors); they also wrap
// kez.ErrStoreUnavailable.
var ErrStreamRefusesWrites = errors.New("the broker refuses writes to the stream")

// Stored records that a write to stream was stored (an answer that
// refuses it, or calls it a duplicate, is given before the store is
// asked, so it proves nothing): the stream takes writes, and a mark on
// it is dropped.
func (w *WriteErrors) Stored(stream string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stored[stream] = w.now()
	delete(w.marks, stream)
}

// Failed reports a write to stream, sent at sent, that got no answer
// (err: how it ended; only a time-out counts). It returns the stream's
// error (see Err) when the stream is, or is now, marked as refusing
// writes, else nil. It may probe the store, within ctx (or a second and
// a half if ctx ends sooner).
func (w *WriteErrors) Failed(ctx context.Context, stream string, sent time.Time, err error) error {
	if !w.tracks() || !isNoAnswer(err) {
		return nil
	}
	if err := w.Err(stream); err != nil {
		return err
	}
	w.mu.Lock()
	answered := w.stored[stream].After(sent)
	w.mu.Unlock()
	if answered {
		return nil // others' writes are stored: slow, not refused
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*probeWrite)
	defer cancel()
	if perr := w.probe.Check(pctx); perr != nil && !errors.Is(perr, errStoreRefuses) && !errors.Is(perr, errStoreNoAnswer) {
		return nil // the broker or a leader away: not the stream's store
	}
	node, ok := w.node(pctx, stream)
	if !ok {
		return nil // missing: StreamReady says so, and the keeper makes it
	}
	m := writeMark{since: w.now(), node: node, reconnects: w.nc.Stats().Reconnects}
	w.mu.Lock()
	if w.stored[stream].After(sent) {
		w.mu.Unlock()
		return nil
	}
	if old, ok := w.marks[stream]; ok && old.reconnects == m.reconnects {
		m = old
	} else {
		w.marks[stream] = m
	}
	w.mu.Unlock()
	return m.err(stream)
}

// node returns the name of stream's leader, or of the server the
// connection is on; ok is false if the stream is missing.
func (w *WriteErrors) node(ctx context.Context, stream string) (node string, ok bool) {
	s, err := w.js.Stream(ctx, stream)
	if IsMissing(err) {
		return "", false
	}
	if err == nil {
		if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
			return c.Leader, true
		}
	}
	return w.nc.ConnectedServerName(), true
}

// tracks reports whether w marks streams: only unreplicated ones. A
// replicated stream's node that fails a write hands its leadership to
// another (observer mode): the stream takes writes again after an
// election, or has no leader, which StreamReady reports; a write
// unanswered there is a leader lost, left to the election (Turns).
func (w *WriteErrors) tracks() bool { return w != nil && w.probe.replicas <= 1 }

// Write runs fn, a write to stream, and reports it: Stored when fn
// succeeds, Failed when it got no answer. An attempt not answered after
// StoreWait while nothing was stored to the stream through this
// connection in the last StoreWait is cut (under load others' writes
// are stored meanwhile, and it waits on), on a single server (see
// tracks). It returns fn's error, or, when the stream is (now)
// marked as refusing writes, the stream's error (see Err). Nil w runs fn
// alone.
func (w *WriteErrors) Write(ctx context.Context, stream string, fn func(context.Context) error) error {
	if !w.tracks() {
		if err := fn(ctx); err != nil {
			return err
		}
		w.Stored(stream)
		return nil
	}
	sent := w.now()
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(StoreWait)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				w.mu.Lock()
				busy := w.stored[stream].After(w.now().Add(-StoreWait))
				w.mu.Unlock()
				if !busy {
					cancel(errNoAnswer)
					return
				}
			}
		}
	}()
	err := fn(actx)
	close(done)
	<-watched
	if err == nil {
		w.Stored(stream)
		return nil
	}
	if context.Cause(actx) == errNoAnswer && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if werr := w.Failed(ctx, stream, sent, err); werr != nil {
		return werr
	}
	return err
}

// errNoAnswer cuts a write that got no answer while its stream stored
// nothing else.
var errNoAnswer = fmt.Errorf("no answer within %v while the stream stored nothing: %w", StoreWait, context.DeadlineExceeded)

// Err returns an error naming stream, since when it refuses writes and
// what to do, while it is marked as refusing writes; nil otherwise. The
// error wraps ErrStreamRefusesWrites and kez.ErrStoreUnavailable.
func (w *WriteErrors) Err(stream string) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.marks[stream]
	if !ok {
		return nil
	}
	if m.reconnects != w.nc.Stats().Reconnects {
		// Reconnected: nats-server may have restarted, which clears the
		// error; the next dropped write marks the stream again.
		delete(w.marks, stream)
		return nil
	}
	return m.err(stream)
}

func (m writeMark) err(stream string) error {
	node := m.node
	if node == "" {
		node = "the node that leads it"
	}
	return &writeErr{stream: stream, msg: fmt.Sprintf("the broker refuses writes to %s since %s (a write error it keeps until restarted): restart nats-server on %s",
		stream, m.since.UTC().Format(time.RFC3339), node)}
}

type writeErr struct{ stream, msg string }

func (e *writeErr) Error() string { return e.msg }

func (e *writeErr) Is(target error) bool {
	return target == ErrStreamRefusesWrites || target == kez.ErrStoreUnavailable
}

// isNoAnswer reports whether err is a write that got no answer in time.
func isNoAnswer(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}
