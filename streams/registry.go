package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"kez.lat/kez"
)

// Registry is the KEZ_REGISTRY log: appends of registrations as atomic
// claims, and an in-order reader of its events.
type Registry struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	turns  *Turns
	probe  *StoreProbe
	writes *WriteErrors
	group  grouper

	// tail is what LastSeq last read by subject: the last event behind
	// the claims that end the stream. lookups counts those reads.
	tailMu  sync.Mutex
	tail    registryTail
	lookups atomic.Uint64
}

// registryTail is the last event of the registry stream (event) while
// its last message is the claim at last, in the stream created then.
type registryTail struct {
	created     time.Time
	last, event uint64
}

// TrackWrites reports Append's batches to w, and has Append answer
// kez.ErrStoreUnavailable, naming the stream and what to do, when w
// finds the registry stream refusing writes (see WriteErrors). An attempt
// then gives up after StoreWait without an answer if nothing else was
// stored meanwhile.
func (r *Registry) TrackWrites(w *WriteErrors) { r.writes = w }

// Guard makes Append give up an attempt that will not be answered: at a
// turn (a leader elected for the stream, the connection back: the batch
// is sent again to the new leader at once), and, after half a second
// without an answer, when probe finds the store refusing or not answering
// writes (Append then returns kez.ErrStoreUnavailable). Attempts are not
// cut by time alone: under load they queue behind the server's 50 atomic
// batches in flight per stream, and a cut attempt sent again only
// lengthens that queue.
func (r *Registry) Guard(turns *Turns, probe *StoreProbe) {
	r.turns, r.probe = turns, probe
}

// OpenRegistry binds the registry stream that Setup created.
func OpenRegistry(ctx context.Context, js jetstream.JetStream) (*Registry, error) {
	s, err := openStream(ctx, js, RegistryStream)
	if err != nil {
		return nil, err
	}
	return &Registry{js: js, stream: s}, nil
}

// openStream binds an existing stream.
func openStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// Append stores a handle_registered event and returns its stream sequence.
// The key claim, the skeleton claim and the event (on the handle's subject)
// are one atomic batch, each published with
// Nats-Expected-Last-Subject-Sequence: 0, so JetStream itself decides
// first-come-first-served: all three subjects are claimed, or none.
// Registrations appended at the same time share a batch (see grouped):
// still all or none of each one's claims, decided as if alone.
//
// It returns the event stored and its sequence: ev, or the event an earlier
// attempt of the same key for the same handle stored (a retry, even one
// signed again with a new timestamp after an unknown outcome). It returns
// kez.ErrHandleTaken, kez.ErrKeyTaken or kez.ErrHandleTooSimilar when a
// claim is held by another registration. kez.ErrUnavailable means the
// outcome could not be learnt in time.
func (r *Registry) Append(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	data, err := json.Marshal(ev)
	if err != nil {
		return ev, 0, fmt.Errorf("encode event: %w", err)
	}
	claim := claimData(ev.Handle)
	// Each attempt publishes messages of its own: a publish adds the
	// batch's headers to the messages it sends.
	claims := func() []*nats.Msg {
		return []*nats.Msg{
			claimMsg(keyClaimSubject(ev.Primary.Hex()), claim),
			claimMsg(skeletonClaimSubject(ev.Handle.Skeleton()), claim),
			claimMsg(handleClaimSubject(ev.Handle.Local()), data),
		}
	}
	for attempt := 0; ; attempt++ {
		var (
			seq           uint64
			err, storeErr error
		)
		if attempt == 0 {
			// The first attempt goes with the registrations arriving
			// alongside (see grouped); one refused in a group of several
			// is sent again alone at once.
			g := r.grouped(ctx, claims())
			seq, err, storeErr = g.seq, g.err, g.storeErr
			if err != nil && g.shared && !errors.Is(err, ErrStreamRefusesWrites) {
				seq, err, storeErr = r.publishAlone(ctx, claims())
			}
		} else {
			seq, err, storeErr = r.publishAlone(ctx, claims())
		}
		if err == nil {
			return ev, seq, nil
		}
		if storeErr == nil && errors.Is(err, ErrStreamRefusesWrites) {
			storeErr = err
		}
		var apiErr *jetstream.APIError
		switch {
		case storeErr != nil:
			// The store refuses or does not answer writes: say so now
			// rather than at the deadline, unless the batch got in.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeWrite)
			held, seq, herr := r.whoHolds(wctx, ev)
			cancel()
			if herr == nil || !errors.Is(herr, errNoHolder) && !errors.Is(herr, kez.ErrUnavailable) {
				return held, seq, herr
			}
			return ev, 0, fmt.Errorf("%w: %w", kez.ErrStoreUnavailable, storeErr)
		case isWrongLastSeq(err):
			// A claim is held. Find which; an in-flight competitor on a
			// cluster (10164) may not have stored yet, so look again.
			held, seq, err := r.whoHolds(ctx, ev)
			if err == nil || !errors.Is(err, errNoHolder) {
				return held, seq, err
			}
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstreamext.JSErrCodeAtomicPublishTooManyInflight ||
			apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishTooManyInflight ||
			apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishIncomplete):
			// The server bounds concurrent batches (50 per stream by
			// default). A batch refused at its first message is only
			// reported at the commit, as incomplete; nothing of it was
			// stored, so wait and retry, unless the store probe (shared,
			// at most one a second) finds that the store cannot stage a
			// batch at all: a disk full or failing below max_file_store.
			if r.probe != nil {
				pctx, cancel := context.WithTimeout(ctx, 2*probeWrite)
				perr := r.probe.Check(pctx)
				cancel()
				if errors.Is(perr, errStoreRefuses) || errors.Is(perr, errStoreNoAnswer) {
					return ev, 0, fmt.Errorf("%w: %v", kez.ErrStoreUnavailable, perr)
				}
			}
		case IsStoreFull(err):
			return ev, 0, fmt.Errorf("%w: %v", kez.ErrStoreUnavailable, err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders):
			// The outcome is unknown: the batch may have been stored.
			if held, seq, err := r.whoHolds(context.WithoutCancel(ctx), ev); err == nil {
				return held, seq, nil
			} else if !errors.Is(err, errNoHolder) && ctx.Err() == nil {
				return ev, 0, err
			}
			if ctx.Err() != nil {
				return ev, 0, fmt.Errorf("%w: registration outcome unknown: %v", kez.ErrUnavailable, err)
			}
		default:
			return ev, 0, fmt.Errorf("append registration: %w", err)
		}
		select {
		case <-ctx.Done():
			return ev, 0, fmt.Errorf("%w: registration not stored in time (last attempt: %v)", kez.ErrUnavailable, err)
		case <-time.After(backoff(attempt)):
		}
	}
}

// publishAlone publishes one registration's claims as an atomic batch
// and returns the sequence of the last (the event).
func (r *Registry) publishAlone(ctx context.Context, msgs []*nats.Msg) (seq uint64, err, storeErr error) {
	ack, err, storeErr := r.publishBatch(ctx, msgs)
	if err != nil {
		return 0, err, storeErr
	}
	return ack.Sequence, nil, storeErr
}

// publishBatch publishes msgs as one atomic batch, guarded (see guarded).
func (r *Registry) publishBatch(ctx context.Context, msgs []*nats.Msg) (ack *jetstreamext.BatchAck, err, storeErr error) {
	err, storeErr = guarded(ctx, r.turns, r.probe, func(ctx context.Context) error {
		return r.writes.Write(ctx, RegistryStream, func(ctx context.Context) (err error) {
			ack, err = jetstreamext.PublishMsgBatch(ctx, r.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false})
			return err
		})
	})
	return ack, err, storeErr
}

// StoreWait bounds the door's wait for the inbox stream to store a
// message. A store that cannot write answers nothing: nats-server logs
// the write error and drops the publish, so without a bound the sender
// would learn of it only from its own timeout, with no word of why. A
// healthy store answers in milliseconds, and a resend is deduplicated.
// (A registration is not cut this way: its attempts are atomic batches
// that the server bounds to 50 in flight, and under load a cut attempt
// retried only adds to the queue.)
const StoreWait = 1500 * time.Millisecond

// JetStream's answers to a write the store has no room for.
const (
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // JSInsufficientResourcesErr: the server's or account's store is full
	errCodeStorageExceeded       jetstream.ErrorCode = 10047 // JSStorageResourcesExceededErr: a reservation does not fit
)

// IsStoreFull reports whether err is JetStream refusing a write because
// its store (the server's max_file_store, or the account's limit) is
// full.
func IsStoreFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeInsufficientResources || apiErr.ErrorCode == errCodeStorageExceeded)
}

func backoff(attempt int) time.Duration {
	d := time.Duration(1<<min(attempt, 7)) * time.Millisecond
	return d + time.Duration(time.Now().UnixNano()%int64(d))
}

// claimData is the body of a key or skeleton claim: the handle it is for.
func claimData(h kez.Handle) []byte {
	b, _ := json.Marshal(struct {
		Handle kez.Handle `json:"handle"`
	}{h})
	return b
}

func claimMsg(subject string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject) // PublishMsgBatch needs a non-nil Header
	m.Data = data
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	return m
}

var errNoHolder = errors.New("no claim holder")

// whoHolds explains a failed claim by reading the claimed subjects from the
// stream leader (the registry stream has no direct get, so these reads are
// not served by lagging followers). The same key holding the handle means
// an earlier attempt succeeded: that event is returned.
func (r *Registry) whoHolds(ctx context.Context, ev kez.RegistryEvent) (held kez.RegistryEvent, seq uint64, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// Read again at a turn: the leader asked may have frozen or died.
	err = retried(ctx, r.turns, func(ctx context.Context) error {
		held, seq, err = r.readHolder(ctx, ev)
		for isClusterUnavailable(err) {
			// No stream leader yet and the meta group electing: the
			// nodes answer 10008 until it has; ask again shortly.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(clusterRetry):
			}
			held, seq, err = r.readHolder(ctx, ev)
		}
		if errors.Is(err, kez.ErrUnavailable) && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ev, 0, fmt.Errorf("%w: read claims: %v", kez.ErrUnavailable, err)
	}
	return held, seq, err
}

func (r *Registry) readHolder(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	held, seq, err := r.readHandleClaim(ctx, ev)
	if err == nil || !errors.Is(err, errNoHolder) {
		return held, seq, err
	}
	for _, c := range []struct {
		subject string
		err     error
	}{
		{keyClaimSubject(ev.Primary.Hex()), kez.ErrKeyTaken},
		{skeletonClaimSubject(ev.Handle.Skeleton()), kez.ErrHandleTooSimilar},
	} {
		m, err := r.stream.GetLastMsgForSubject(ctx, c.subject)
		if err == nil {
			var claim struct {
				Handle kez.Handle `json:"handle"`
			}
			if json.Unmarshal(m.Data, &claim) == nil && claim.Handle == ev.Handle {
				// A claim for this very handle: its batch (this
				// registration's own, or a competitor's for the same
				// handle) is being applied, the handle's claim, its last
				// message, not yet readable. It is in a moment (a log
				// that lost it answers as before).
				held, seq, err := r.awaitHandleClaim(ctx, ev)
				if !errors.Is(err, errNoHolder) {
					return held, seq, err
				}
				return ev, 0, c.err
			}
			// This attempt's own batch may have landed since the handle
			// claim was read: read that one again before calling it
			// taken.
			if held, seq, err := r.readHandleClaim(ctx, ev); err == nil {
				return held, seq, nil
			}
			return ev, 0, c.err
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return ev, 0, fmt.Errorf("%w: read claim: %w", kez.ErrUnavailable, err)
		}
	}
	return ev, 0, errNoHolder
}

// awaitHandleClaim reads the claim on ev's handle until it is there:
// another claim of its batch was read, and a batch's messages, stored
// together, become readable one after the other.
func (r *Registry) awaitHandleClaim(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	start := time.Now()
	for try := 0; ; try++ {
		held, seq, err := r.readHandleClaim(ctx, ev)
		if !errors.Is(err, errNoHolder) || time.Since(start) > inFlightWait {
			return held, seq, err
		}
		select {
		case <-ctx.Done():
			return ev, 0, fmt.Errorf("%w: read handle claim: %v", kez.ErrUnavailable, ctx.Err())
		case <-time.After(inFlightBackoff(try)):
		}
	}
}

// readHandleClaim reads the claim on ev's handle: the event stored, if
// it is ev's key's; kez.ErrHandleTaken if another key's; errNoHolder if
// there is none.
func (r *Registry) readHandleClaim(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	m, err := r.stream.GetLastMsgForSubject(ctx, handleClaimSubject(ev.Handle.Local()))
	switch {
	case err == nil:
		var held kez.RegistryEvent
		if json.Unmarshal(m.Data, &held) == nil && held.Primary.Equal(ev.Primary) {
			return held, m.Sequence, nil
		}
		return ev, 0, kez.ErrHandleTaken
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return ev, 0, errNoHolder
	}
	return ev, 0, fmt.Errorf("%w: read handle claim: %w", kez.ErrUnavailable, err)
}

// errCodeClusterNotAvailable is JetStream's answer while the cluster
// cannot serve a request for want of a leader (JSClusterNotAvailErr,
// "JetStream system temporarily unavailable"): the meta group is
// electing, after its leader froze or died.
const errCodeClusterNotAvailable jetstream.ErrorCode = 10008

// clusterRetry is how long a request refused with 10008 waits before it
// is sent again: elections take 4 to 9 s.
const clusterRetry = 250 * time.Millisecond

// isTemporary reports whether err is JetStream saying it cannot answer
// now (HTTP-like code 503: 10008 while the meta group elects, a stream
// without a leader), which says nothing of the data asked for: an
// integrity check that reads it must not call the data damaged.
func isTemporary(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}

// isClusterUnavailable reports whether err is JetStream's 10008.
func isClusterUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNotAvailable
}

// LastSeq returns the sequence of the registry stream's last event. Only
// the stream's leader answers, so the request is sent again at a turn:
// one sent while the leader is frozen or dead, before the others notice,
// is answered by nobody (the projector asks at every restart, and every
// registration waits on the projector).
//
// The last message is the last event but after the skeleton migration
// (ClaimSkeleton), whose claims follow the events they are for: then the
// last event is read by subject, so that the projection, which follows
// events only, is not seen as behind for ever. That read matches every
// handle's subject on the server, under the stream's lock (15 ms at
// 200,000 handles), so it is made once per last message: while the
// stream ends with the same claim, its answer is reused.
func (r *Registry) LastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var last uint64
	err := retried(ctx, r.turns, func(ctx context.Context) error {
		info, err := r.stream.Info(ctx)
		if err != nil || info.State.LastSeq == 0 {
			last = 0
			return err
		}
		last = info.State.LastSeq
		tail := registryTail{created: info.Created, last: last}
		r.tailMu.Lock()
		cached := r.tail
		r.tailMu.Unlock()
		if cached.created.Equal(tail.created) && cached.last == tail.last {
			last = cached.event
			return nil
		}
		m, err := r.stream.GetMsg(ctx, last)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // gone since: damage, for the integrity checks to find
		}
		if err != nil || strings.HasPrefix(m.Subject, handleClaimSubject("")) {
			return err
		}
		r.lookups.Add(1)
		m, err = r.stream.GetLastMsgForSubject(ctx, registryEvents)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			last = 0
		case err != nil:
			return err
		default:
			last = m.Sequence
		}
		if last < tail.last { // else an event came since: not this tail's
			tail.event = last
			r.tailMu.Lock()
			r.tail = tail
			r.tailMu.Unlock()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return last, nil
}

// followHeartbeat makes an ordered consumer that hears nothing from its
// server for 2 s make itself again (on another node if need be). The
// default (pulls of 30 s, heartbeats every 15 s) leaves a projector whose
// consumer sat on a frozen or killed node stalled for 30 s, and every
// registration waiting on it (read-your-writes) with it.
var followHeartbeat = []jetstream.PullMessagesOpt{
	jetstream.PullExpiry(5 * time.Second), jetstream.PullHeartbeat(time.Second),
}

// Follow calls fn with every registry event after sequence after, in stream
// order, and keeps following new ones until ctx ends (returning ctx.Err())
// or fn returns an error (returned as is). It reads through an ordered
// consumer, which restarts itself on gaps, so no event is skipped.
//
// An entry's Pending counts the events known to follow it: the stream's
// count when the server sent it, or, if more, the events already received
// behind it. The server counts at delivery, so events appended while fn
// was busy were each delivered as the last one (pending 0); a caller
// batching on Pending (the projector) would otherwise take them one at a
// time.
func (r *Registry) Follow(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{registryEvents},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	// Made by the stream's leader: sent again at a turn, as LastSeq.
	var cons jetstream.Consumer
	cctx, cancel := withTimeout(ctx)
	err := retried(cctx, r.turns, func(ctx context.Context) (err error) {
		cons, err = r.js.OrderedConsumer(ctx, RegistryStream, cfg)
		return err
	})
	cancel()
	if err != nil {
		return fmt.Errorf("registry consumer: %w", err)
	}
	it, err := cons.Messages(followHeartbeat...)
	if err != nil {
		return fmt.Errorf("registry consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	type next struct {
		m   jetstream.Msg
		err error
	}
	ahead, done := make(chan next, followAhead), make(chan struct{})
	defer close(done)
	go func() {
		for {
			m, err := it.Next()
			select {
			case ahead <- next{m, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		n := <-ahead
		if n.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("registry consumer: %w", n.err)
		}
		md, err := n.m.Metadata()
		if err != nil {
			return fmt.Errorf("registry message metadata: %w", err)
		}
		ev := kez.RegistryEntry{Seq: md.Sequence.Stream, Pending: max(md.NumPending, uint64(len(ahead))), Data: n.m.Data()}
		if err := json.Unmarshal(n.m.Data(), &ev.Event); err != nil {
			ev.Err = fmt.Errorf("%w: event %d: %v", kez.ErrInvalidRequest, ev.Seq, err)
		}
		if err := ctx.Err(); err != nil {
			return err // not one entry read ahead after ctx ended
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// followAhead bounds the events Follow reads ahead of its caller.
const followAhead = 1024

// KeyHandle returns the handle that claimed key, read from the stream
// leader, so a registration acknowledged a moment ago is seen (the KV
// projection may be read from a lagging follower). It returns
// kez.ErrNotFound if key has no handle.
func (r *Registry) KeyHandle(ctx context.Context, key kez.PublicKey) (kez.Handle, error) {
	return r.claimHandle(ctx, keyClaimSubject(key.Hex()))
}

// ClaimSkeleton claims h's look-alike skeleton (kez.Skeleton) for h, a
// handle registered before the fold changed (see kez.LegacySkeleton), and
// returns the handle holding it (h, or another handle whose claim came
// first) and whether this call stored the claim. The claim is one
// message published with Nats-Expected-Last-Subject-Sequence: 0, the
// rule of the registration batches, so any number of replicas may claim
// at once: one claim is stored, the others are refused and read it. An
// unknown outcome is an error wrapping kez.ErrUnavailable; claiming
// again is safe.
func (r *Registry) ClaimSkeleton(ctx context.Context, h kez.Handle) (holder kez.Handle, stored bool, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	subject := skeletonClaimSubject(h.Skeleton())
	_, err = r.js.PublishMsg(ctx, claimMsg(subject, claimData(h)))
	switch {
	case err == nil:
		return h, true, nil
	case isWrongLastSeq(err):
		holder, err = r.claimHandle(ctx, subject)
		return holder, false, err
	}
	return kez.Handle{}, false, fmt.Errorf("%w: claim skeleton of %s: %v", kez.ErrUnavailable, h, err)
}

// SkeletonHandle returns the handle that claimed the skeleton skel, read
// from the stream leader, or kez.ErrNotFound.
func (r *Registry) SkeletonHandle(ctx context.Context, skel string) (kez.Handle, error) {
	return r.claimHandle(ctx, skeletonClaimSubject(skel))
}

func (r *Registry) claimHandle(ctx context.Context, subject string) (kez.Handle, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := r.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return kez.Handle{}, kez.ErrNotFound
	}
	if err != nil {
		return kez.Handle{}, fmt.Errorf("%w: read claim: %v", kez.ErrUnavailable, err)
	}
	var claim struct {
		Handle kez.Handle `json:"handle"`
	}
	if err := json.Unmarshal(m.Data, &claim); err != nil {
		return kez.Handle{}, fmt.Errorf("claim %d: %w", m.Sequence, err)
	}
	return claim.Handle, nil
}

// HandleEvent returns the event that claimed the handle with local part
// local, read from the stream leader, or kez.ErrNotFound.
func (r *Registry) HandleEvent(ctx context.Context, local string) (kez.RegistryEvent, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := r.stream.GetLastMsgForSubject(ctx, handleClaimSubject(local))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return kez.RegistryEvent{}, kez.ErrNotFound
	}
	if err != nil {
		return kez.RegistryEvent{}, fmt.Errorf("%w: read handle claim: %v", kez.ErrUnavailable, err)
	}
	var ev kez.RegistryEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return kez.RegistryEvent{}, fmt.Errorf("handle claim %d: %w", m.Sequence, err)
	}
	return ev, nil
}

// Event returns the bytes stored at sequence seq, read from the stream
// leader, if they are a registry event; kez.ErrNotFound if the log has no
// event there.
func (r *Registry) Event(ctx context.Context, seq uint64) ([]byte, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := r.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, kez.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read event %d: %v", kez.ErrUnavailable, seq, err)
	}
	if !strings.HasPrefix(m.Subject, handleClaimSubject("")) {
		return nil, fmt.Errorf("%w: sequence %d is a claim on %s, not an event", kez.ErrNotFound, seq, m.Subject)
	}
	return m.Data, nil
}
