package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

// Sigchain stream and subject names (kez-sig-server). Like every name,
// they are spelt only in this package.
const (
	// SigchainStream is the append-only store of every sigchain: one
	// subject per chain, whose k-th message is the chain's event with
	// seqno k, in its compact wire form.
	SigchainStream = "KEZ_SIGCHAINS"
	// SigchainSubjects are the subjects of SigchainStream.
	SigchainSubjects = "kez.sigchain.*"

	// SigchainRateLimitStream counts appends per chain for the rate limit
	// (one short-lived message per append). It is not KEZ_RATELIMIT, so the
	// two servers configure their windows and limits independently.
	SigchainRateLimitStream = "KEZ_SIGCHAIN_RATELIMIT"
	// SigchainRateLimitSubjects are the subjects of SigchainRateLimitStream.
	SigchainRateLimitSubjects = "kez.sigchain_ratelimit.*"
)

// SigchainSubject returns the subject of key's chain: kez.sigchain.<hex>.
func SigchainSubject(key kez.PublicKey) string { return "kez.sigchain." + key.Hex() }

func sigchainRateLimitSubject(hex string) string { return "kez.sigchain_ratelimit." + hex }

// sigchainMsgOverhead is the room a stored event may take beyond
// sigchain.MaxEventSize: the message size JetStream checks includes the
// headers we publish with (Nats-Expected-Last-Subject-Sequence).
const sigchainMsgOverhead = 1 << 10

// ErrSigchainConflict means an append lost a race: when it reached
// JetStream, the chain's tail was no longer the one the event was checked
// against (Nats-Expected-Last-Subject-Sequence failed). The client appended
// to a stale tail; servers answer it as a conflict, like
// sigchain.ErrWrongSeqno.
var ErrSigchainConflict = errors.New("sigchain append conflict: the chain moved on")

// SigchainConfig sets what SetupSigchains creates.
type SigchainConfig struct {
	// Replicas of the streams: 1 on a single server, 3 on a three-node
	// cluster.
	Replicas int
	// AppendLimit is how many events one chain may append per AppendWindow,
	// across all replicas.
	AppendLimit  int
	AppendWindow time.Duration
}

// DefaultSigchainConfig returns the single-server defaults.
func DefaultSigchainConfig() SigchainConfig {
	return SigchainConfig{Replicas: 1, AppendLimit: 60, AppendWindow: time.Hour}
}

// Validate reports whether c is usable; errors wrap ErrConfig.
func (c SigchainConfig) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas must be 1 to 5, got %d", ErrConfig, c.Replicas)
	case c.AppendLimit < 1:
		return fmt.Errorf("%w: sigchain append limit must be at least 1", ErrConfig)
	case c.AppendWindow < time.Second:
		return fmt.Errorf("%w: sigchain append window must be at least 1s", ErrConfig)
	}
	return nil
}

// SetupSigchains creates or updates the streams kez-sig-server uses. It is
// idempotent: every replica calls it at start-up. It is separate from
// Setup, so that the home server and the sig-server start independently.
func SetupSigchains(ctx context.Context, js jetstream.JetStream, cfg SigchainConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, sigchainStreamConfig(cfg)); err != nil {
		return fmt.Errorf("create stream %s: %w", SigchainStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, sigchainRateLimitConfig(cfg)); err != nil {
		return fmt.Errorf("create stream %s: %w", SigchainRateLimitStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, healthStreamConfig(cfg.Replicas)); err != nil {
		return fmt.Errorf("create stream %s: %w", healthStream, err)
	}
	return nil
}

func sigchainStreamConfig(cfg SigchainConfig) jetstream.StreamConfig {
	// The per-chain total is enforced by the server, not by
	// MaxMsgsPerSubject: lowering that limit later would make JetStream
	// delete the oldest events of long chains.
	c := appendOnlyStreamConfig(SigchainStream, SigchainSubjects, cfg.Replicas)
	c.Description = "kez-sig-server: append-only sigchains, one subject per chain"
	c.MaxMsgSize = sigchain.MaxEventSize + sigchainMsgOverhead
	// No direct get: reads go to the stream leader, so a tail read right
	// after an append never comes from a lagging follower.
	c.AllowDirect = false
	return c
}

// Sigchains is the KEZ_SIGCHAINS store: appends serialised per chain by
// JetStream, and in-order reads of a chain.
type Sigchains struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	writes *WriteErrors
}

// TrackWrites reports Append's publishes to w, and has Append answer
// kez.ErrStoreUnavailable, naming the stream and what to do, when w
// finds the sigchain stream refusing writes (see WriteErrors), after
// StoreWait rather than at its deadline.
func (s *Sigchains) TrackWrites(w *WriteErrors) { s.writes = w }

// OpenSigchains binds the sigchain stream that SetupSigchains created.
func OpenSigchains(ctx context.Context, js jetstream.JetStream) (*Sigchains, error) {
	s, err := openStream(ctx, js, SigchainStream)
	if err != nil {
		return nil, err
	}
	return &Sigchains{js: js, stream: s}, nil
}

// LastSeq returns the sigchain stream's last sequence, read from the stream
// leader (a health check that the store answers).
func (s *Sigchains) LastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// Tail returns the last event of key's chain and its stream sequence, the
// sequence an append after it must expect. An empty chain returns the zero
// Event and 0. Events are parsed (not verified again: they were verified
// before they were stored). The read goes to the stream leader.
func (s *Sigchains) Tail(ctx context.Context, key kez.PublicKey) (sigchain.Event, uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := s.stream.GetLastMsgForSubject(ctx, SigchainSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return sigchain.Event{}, 0, nil
	}
	if err != nil {
		return sigchain.Event{}, 0, fmt.Errorf("%w: read sigchain tail: %v", kez.ErrUnavailable, err)
	}
	ev, err := sigchain.ParseEvent(m.Data)
	if err != nil {
		return sigchain.Event{}, 0, fmt.Errorf("stored sigchain event at %d: %v", m.Sequence, err)
	}
	return ev, m.Sequence, nil
}

// Append stores ev, which the caller checked follows the tail stored at
// stream sequence expect (0 for an empty chain), and returns its stream
// sequence. It publishes with Nats-Expected-Last-Subject-Sequence: expect,
// so JetStream itself serialises appends to a chain: of concurrent appends
// checked against the same tail, through any replicas, exactly one is
// stored, and a chain never forks.
//
// It returns ErrSigchainConflict if the chain's tail moved since expect.
// Appending an event that is already the tail (a retry whose first attempt
// was stored) returns the sequence it was stored at. kez.ErrUnavailable
// means the outcome could not be learnt in time.
func (s *Sigchains) Append(ctx context.Context, ev sigchain.Event, expect uint64) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	wire, err := ev.MarshalJSON()
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	subject := SigchainSubject(ev.Chain())
	for attempt := 0; ; attempt++ {
		msg := nats.NewMsg(subject)
		msg.Data = wire
		// The stream sequence of the previous event, so a read of a
		// chain's last few events walks back from the tail.
		msg.Header.Set(prevSeqHeader, strconv.FormatUint(expect, 10))
		var ack *jetstream.PubAck
		err := s.writes.Write(ctx, SigchainStream, func(ctx context.Context) (err error) {
			ack, err = s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(expect))
			return err
		})
		if err == nil {
			return ack.Sequence, nil
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.Is(err, ErrStreamRefusesWrites):
			// Nothing is stored while it refuses, but a mark may be
			// wrong (a store that stalled): look before saying so.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeWrite)
			seq, serr := s.settle(sctx, ev, expect)
			cancel()
			if serr == nil || errors.Is(serr, ErrSigchainConflict) {
				return seq, serr
			}
			return 0, fmt.Errorf("append sigchain event: %w", err)
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// The tail moved: another append won, unless it was our own
			// earlier attempt.
			seq, err := s.settle(ctx, ev, expect)
			if errors.Is(err, errNotStored) {
				err = fmt.Errorf("%w: expected stream sequence %d", ErrSigchainConflict, expect)
			}
			return seq, err
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders):
			// The outcome is unknown: the event may have been stored.
			seq, err := s.settle(context.WithoutCancel(ctx), ev, expect)
			if err == nil || errors.Is(err, ErrSigchainConflict) {
				return seq, err
			}
			if ctx.Err() != nil {
				return 0, fmt.Errorf("%w: sigchain append outcome unknown: %v", kez.ErrUnavailable, err)
			}
			// Not stored and the tail has not moved: publish again.
		default:
			return 0, fmt.Errorf("append sigchain event: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: sigchain event not stored in time", kez.ErrUnavailable)
		case <-time.After(backoff(attempt)):
		}
	}
}

var errNotStored = errors.New("sigchain event not stored")

// settle learns what became of an append of ev expected after expect by
// reading the tail: ev itself (stored), the tail expected (errNotStored:
// nothing happened), or another event (ErrSigchainConflict).
func (s *Sigchains) settle(ctx context.Context, ev sigchain.Event, expect uint64) (uint64, error) {
	tail, seq, err := s.Tail(ctx, ev.Chain())
	switch {
	case err != nil:
		return 0, err
	case !tail.IsZero() && tail.Hash() == ev.Hash():
		return seq, nil
	case seq == expect:
		return 0, errNotStored
	}
	return 0, fmt.Errorf("%w: tail at stream sequence %d, expected %d", ErrSigchainConflict, seq, expect)
}

// sigchainWalkMax is the most events Read reads by message gets; more are
// read through a consumer.
const sigchainWalkMax = 32

// prevSeqHeader carries, on every stored event, the stream sequence of the
// chain's previous event (0 for the first).
const prevSeqHeader = "Kez-Prev-Seq"

// Read returns the events of key's chain with seqno at least since (all
// of them for since 0 or 1), in order, as the compact wire forms stored,
// at most limit of them (0: no limit; more reports that the chain goes on
// after the last returned); an empty chain, or since after its tail,
// gives none. The answer is a
// snapshot up to the tail read first: events appended meanwhile are left
// for the next read. Every read goes to the stream leader, so a client
// never sees less than an append it was answered.
//
// The k-th message of a chain's subject is its event with seqno k (Append
// stores seqno k only right after k-1), which is how events before since
// are skipped, by counting rather than parsing. The tail costs one get,
// and a request for the tail alone (a client checking its pin) nothing
// more. A short chain is then walked with "next message on the subject"
// gets, which involve only the stream leader; a long one is read through
// an ephemeral consumer (in a cluster its creation goes through the
// meta leader, so it is kept for reads where the round trips it saves
// matter), deleted after the read.
func (s *Sigchains) Read(ctx context.Context, key kez.PublicKey, since, limit uint64) (events []json.RawMessage, more bool, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	since = max(since, 1)
	subject := SigchainSubject(key)
	last, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return []json.RawMessage{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: read sigchain tail: %v", kez.ErrUnavailable, err)
	}
	tail, err := sigchain.ParseEvent(last.Data)
	if err != nil {
		return nil, false, fmt.Errorf("stored sigchain event at %d: %v", last.Sequence, err)
	}
	n := tail.Seqno()
	upTo := n // the last event of this page
	if limit > 0 && since <= n && n-since >= limit {
		upTo, more = since+limit-1, true
	}
	switch {
	case since > n:
		return []json.RawMessage{}, false, nil
	case since == n:
		return []json.RawMessage{last.Data}, false, nil
	case upTo == n && n-since < sigchainWalkMax:
		// The common read: a client checking its pin and the few events
		// after it.
		if out, ok, err := s.walkBack(ctx, since, n, last); ok || err != nil {
			return out, false, err
		}
	}
	if n <= sigchainWalkMax {
		events, err = s.walk(ctx, subject, since, upTo, n, last)
	} else {
		events, err = s.fetch(ctx, subject, since, upTo, n, last)
	}
	return events, more, err
}

// walkBack reads events since..n backwards from last (event n) through the
// previous-event sequences the events carry. ok is false when an event
// lacks one (stored before it was added); the caller then reads forwards.
func (s *Sigchains) walkBack(ctx context.Context, since, n uint64, last *jetstream.RawStreamMsg) ([]json.RawMessage, bool, error) {
	out := make([]json.RawMessage, n-since+1)
	m := last
	for seqno := n; ; seqno-- {
		out[seqno-since] = m.Data
		if seqno == since {
			return out, true, nil
		}
		prev, err := strconv.ParseUint(m.Header.Get(prevSeqHeader), 10, 64)
		if err != nil || prev == 0 || prev >= m.Sequence {
			return nil, false, nil
		}
		if m, err = s.stream.GetMsg(ctx, prev); err != nil {
			return nil, false, fmt.Errorf("%w: read sigchain event %d: %v", kez.ErrUnavailable, seqno-1, err)
		}
		if m.Subject != last.Subject {
			return nil, false, fmt.Errorf("sigchain %s: previous event at stream sequence %d is on %s", last.Subject, prev, m.Subject)
		}
	}
}

// walk reads events since..upTo of subject, whose event n is last, by
// getting each next message of the subject from the stream leader.
func (s *Sigchains) walk(ctx context.Context, subject string, since, upTo, n uint64, last *jetstream.RawStreamMsg) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, upTo-since+1)
	seq := uint64(1)
	for seqno := uint64(1); seqno < n && seqno <= upTo; seqno++ {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return nil, fmt.Errorf("%w: read sigchain event %d: %v", kez.ErrUnavailable, seqno, err)
		}
		if m.Sequence >= last.Sequence {
			return nil, fmt.Errorf("sigchain %s: event %d of %d at stream sequence %d, the tail's", subject, seqno, n, m.Sequence)
		}
		if seqno >= since {
			out = append(out, m.Data)
		}
		seq = m.Sequence + 1
	}
	if upTo < n {
		return out, nil
	}
	return append(out, last.Data), nil
}

// seqOf returns the stream sequence of event since of subject, whose
// tail is last (event n), by bisecting the stream: a get of the subject's first
// message at or after a sequence, and its seqno, say on which side of it
// the event is (seqnos grow with stream sequences on a chain's subject).
// It takes about log2(stream length) gets, each from the stream leader.
func (s *Sigchains) seqOf(ctx context.Context, subject string, since uint64, last *jetstream.RawStreamMsg, n uint64) (uint64, error) {
	found, foundSeqno := last.Sequence, n // the first known message with seqno >= since
	for lo, hi := uint64(1), last.Sequence; lo <= hi; {
		mid := lo + (hi-lo)/2
		m, err := s.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return 0, fmt.Errorf("%w: find sigchain event %d: %v", kez.ErrUnavailable, since, err)
		}
		n, err := eventSeqno(m)
		if err != nil {
			return 0, err
		}
		if n >= since {
			if m.Sequence < found {
				found, foundSeqno = m.Sequence, n
			}
			hi = mid - 1
		} else {
			lo = m.Sequence + 1
		}
	}
	if foundSeqno != since {
		return 0, fmt.Errorf("sigchain %s: no event %d (the first after it is %d, at stream sequence %d)", subject, since, foundSeqno, found)
	}
	return found, nil
}

// eventSeqno returns the seqno of the stored event m.
func eventSeqno(m *jetstream.RawStreamMsg) (uint64, error) {
	e, err := sigchain.ParseEvent(m.Data)
	if err != nil {
		return 0, fmt.Errorf("stored sigchain event at %d: %v", m.Sequence, err)
	}
	return e.Seqno(), nil
}

// fetch reads events since..upTo of subject, whose event n is last,
// through an ephemeral consumer, in batches, starting at event since (a
// page costs its own events, not every event before it).
func (s *Sigchains) fetch(ctx context.Context, subject string, since, upTo, n uint64, last *jetstream.RawStreamMsg) ([]json.RawMessage, error) {
	// The stream sequence and seqno of the first event delivered. From
	// event 1 the consumer starts at the subject's first message, at a
	// sequence not known here (other chains' events come before it);
	// from a later event, at the sequence seqOf finds, which the first
	// delivery must be.
	start, first := uint64(1), uint64(1)
	if since > 1 {
		var err error
		if start, err = s.seqOf(ctx, subject, since, last, n); err != nil {
			return nil, err
		}
		first = since
	}
	cons, err := s.js.CreateConsumer(ctx, SigchainStream, jetstream.ConsumerConfig{
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// Should the delete below fail, the server removes it soon.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: sigchain consumer: %v", kez.ErrUnavailable, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, SigchainStream, cons.CachedInfo().Name)
	}()
	out := make([]json.RawMessage, 0, upTo-since+1)
	for seqno := first; seqno <= upTo; {
		batch, err := cons.Fetch(int(min(upTo-seqno+1, 256)), jetstream.FetchContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("%w: read sigchain: %v", kez.ErrUnavailable, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("sigchain message metadata: %w", err)
			}
			// No acks, so no redeliveries: a delivery out of turn means
			// a message was lost on the way (a slow client).
			if md.Sequence.Consumer != seqno-first+1 || md.Sequence.Stream > last.Sequence ||
				(seqno == first && since > 1 && md.Sequence.Stream != start) ||
				(seqno == n && md.Sequence.Stream != last.Sequence) {
				return nil, fmt.Errorf("%w: read sigchain %s: delivery %d of event %d at stream sequence %d, tail %d at %d",
					kez.ErrUnavailable, subject, md.Sequence.Consumer, seqno, md.Sequence.Stream, n, last.Sequence)
			}
			if seqno >= since {
				out = append(out, m.Data())
			}
			seqno++
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("%w: read sigchain: %v", kez.ErrUnavailable, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("%w: read sigchain %s: no events after %d of %d", kez.ErrUnavailable, subject, seqno-1, n)
		}
	}
	return out, nil
}

// SigchainLimiter limits appends per chain with the
// KEZ_SIGCHAIN_RATELIMIT stream, the same way RateLimiter limits
// requests per client: the count lives in JetStream, so the limit holds
// across every replica.
type SigchainLimiter struct{ l *RateLimiter }

// NewSigchainLimiter returns the per-chain append limiter on the stream
// SetupSigchains created from cfg (and creates it again if a broker
// restart lost it, as RateLimiter does).
func NewSigchainLimiter(js jetstream.JetStream, cfg SigchainConfig) *SigchainLimiter {
	return &SigchainLimiter{&RateLimiter{js: js, subject: sigchainRateLimitSubject, stream: sigchainRateLimitConfig(cfg)}}
}

func sigchainRateLimitConfig(cfg SigchainConfig) jetstream.StreamConfig {
	return rateLimitStreamConfig(SigchainRateLimitStream,
		"kez-sig-server: one message per sigchain append, kept for the window",
		SigchainRateLimitSubjects, cfg.Replicas, cfg.AppendLimit, cfg.AppendWindow)
}

// Allow records one append to key's chain and returns kez.ErrRateLimited
// if the chain is over its limit.
func (c *SigchainLimiter) Allow(ctx context.Context, key kez.PublicKey) error {
	return c.l.allow(ctx, key.Hex())
}
