// Package door is the inbox door of kez-chat-server: the only way users
// reach the inbox stream. Every replica serves it as a micro service in
// one queue group. A user sends, reads, acknowledges and counts through
// subjects that carry the user's own key (kez.DoorSubject), so the
// broker's permissions say who asks; users hold no JetStream API, no
// consumer and no other per-user object.
//
// A message is stored only if it parses as a kez message envelope, its
// sender is the caller, its signature verifies, its recipient is a
// registered key and the caller is within its quotas: a share of each
// inbox (the stream's per-subject limit on kez.inbox.<to>.<from>) and a
// total across all inboxes (the kez_quota bucket). Garbage is never
// stored, and nobody can fill or block another user's inbox.
package door

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/message"
	"kez.lat/kez/streams"
)

// Users is what the door needs of the registry: whether a key is
// registered.
type Users interface {
	// LookupKey answers from memory.
	LookupKey(kez.PublicKey) (kez.HandleRecord, bool)
	// KeyHandle asks the registry (one round trip), or kez.ErrNotFound.
	KeyHandle(context.Context, kez.PublicKey) (kez.Handle, error)
}

// Config tunes the door.
type Config struct {
	// SenderMaxMsgs is how many unread messages one sender may hold
	// across all inboxes (streams.Config.SenderMaxMsgs).
	SenderMaxMsgs int64
	// Workers bounds the requests one replica serves at once (64 if 0).
	Workers int
	// Missing, if set, is called when a request finds the inbox stream
	// or the quota bucket missing (streams.Keeper.Kick).
	Missing func()
	// Store, if set, is the replica's probe of the JetStream store: a
	// request the store did not answer is refused as store_unavailable
	// while the probe's recent finding (StoreProbe.Failing) is a store
	// that refuses writes (a disk full or failing), and as unavailable
	// otherwise. The door asks nothing of the probe: readiness and
	// registrations run it.
	Store *streams.StoreProbe
	// Writes, if set, tracks the streams the broker refuses writes to
	// (streams.WriteErrors): a send is reported to it, and one not
	// stored in time while it marks the inbox stream is refused as
	// store_unavailable, naming the stream and what to do.
	Writes *streams.WriteErrors
}

// Read limits: a read answers at most readBatch messages and readBytes of
// them, so that the answer (base64 in JSON) stays under the broker's
// 1 MB payload limit.
const (
	readBatch = 100
	readBytes = 512 << 10
	// doorKeys bounds the door's cache of accepted keys (~150 B each).
	doorKeys = 1 << 14
	// opTimeout bounds the JetStream calls of one request.
	opTimeout = 5 * time.Second
)

// Service is a running door.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	users   Users
	logger  *slog.Logger
	workers *streams.Workers
	svc     micro.Service

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// keys caches the envelope keys the door accepted (each checked in
	// full once): the same senders and recipients come again and again.
	keys message.Keys

	// get runs the batch direct gets of reads.
	get *getter

	quota  *quota
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a door on js (the KEZ account's JetStream, where Setup made
// the inbox stream and the quota bucket).
func New(ctx context.Context, js jetstream.JetStream, users Users, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Service, error) {
	if cfg.SenderMaxMsgs < 1 {
		return nil, errors.New("door: sender max messages must be at least 1")
	}
	kv, err := js.KeyValue(ctx, streams.QuotaBucket)
	if err != nil {
		return nil, fmt.Errorf("door: bucket %s: %w", streams.QuotaBucket, err)
	}
	s := &Service{
		cfg: cfg, nc: js.Conn(), js: js, users: users,
		logger:  logger.With("component", "door"),
		workers: streams.NewWorkers(cfg.Workers),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_door_requests_total", Help: "Inbox door requests by operation and result (ok or a refusal code).",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kez_door_duration_seconds", Help: "Time to answer an inbox door request.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
	}
	s.keys.Max = doorKeys
	s.quota = newQuota(kv, cfg.SenderMaxMsgs, s.held, s.logger)
	reg.MustRegister(s.requests, s.duration)
	return s, nil
}

// Start serves the door on the service connection.
func (s *Service) Start() error {
	get, err := newGetter(s.js, kez.InboxStream)
	if err != nil {
		return fmt.Errorf("door: %w", err)
	}
	s.get = get
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        kez.DoorServiceName,
		Version:     "1.0.0",
		Description: "kez-chat inbox door: send, read, ack, stat",
		QueueGroup:  kez.DoorServiceName,
	})
	if err != nil {
		get.close()
		return fmt.Errorf("door service: %w", err)
	}
	for _, op := range kez.DoorOps {
		h := s.workers.Handler(s.nc, func(r *streams.Request) { s.serve(op, r) })
		if err := svc.AddEndpoint(op, h, micro.WithEndpointSubject(kez.DoorEndpoint(op))); err != nil {
			svc.Stop()
			get.close()
			return fmt.Errorf("door endpoint %s: %w", op, err)
		}
	}
	s.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() { defer close(s.done); s.quota.run(ctx) }()
	return nil
}

// Serving is a readiness check: it fails unless the door was started, is
// not stopped and its connection is up (nats.go subscribes it again on
// every reconnect).
func (s *Service) Serving(context.Context) error { return streams.Serving("door", s.svc, s.nc) }

// Stop stops taking requests, waits for those in hand and writes the
// quota counts it still holds.
func (s *Service) Stop() {
	if s.svc != nil {
		s.svc.Stop()
	}
	s.workers.Stop()
	if s.get != nil {
		s.get.close()
	}
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// refusal is a door error with its code (kez.Door*).
type refusal struct {
	code, msg string
}

func (r *refusal) Error() string { return r.code + ": " + r.msg }

func refuse(code, format string, args ...any) *refusal {
	return &refusal{code, fmt.Sprintf(format, args...)}
}

// serve answers one request of operation op. Nothing of the request but
// its subject and body is used: headers a caller sets (Nats-Msg-Id,
// Nats-Expected-*, Nats-Rollup, ...) never reach JetStream, and no stored
// header is copied into an answer.
func (s *Service) serve(op string, r *streams.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var (
		out any
		err error
	)
	if op == kez.DoorSend {
		out, err = s.send(ctx, r.Subject(), r.Data())
	} else if caller, cerr := kez.DoorCaller(r.Subject()); cerr != nil {
		err = refuse(kez.DoorMalformed, "%v", cerr)
	} else {
		switch op {
		case kez.DoorRead:
			out, err = s.read(ctx, caller, r.Data())
		case kez.DoorAck:
			out, err = s.ack(ctx, caller, r.Data())
		case kez.DoorStat:
			out, err = s.stat(ctx, caller)
		}
	}
	result := "ok"
	if err != nil {
		var rf *refusal
		if !errors.As(err, &rf) {
			s.logger.Warn("door", "op", op, "err", err)
			if streams.IsMissing(err) && s.cfg.Missing != nil {
				s.cfg.Missing()
			}
			rf = refuse(kez.DoorUnavailable, "the inbox store did not answer; nothing was changed")
		}
		if rf.code == kez.DoorUnavailable && s.cfg.Store.Failing() {
			rf = refuse(kez.DoorStoreUnavailable, "the home server's store refuses writes (a disk full or failing); nothing was changed")
		}
		result = rf.code
		_ = r.Error(rf.code, rf.msg)
	} else if b, ok := out.([]byte); ok {
		if err := r.Respond(b); err != nil {
			s.logger.Warn("door respond", "op", op, "err", err)
		}
	} else if err := r.RespondJSON(out); err != nil {
		s.logger.Warn("door respond", "op", op, "err", err)
	}
	s.requests.WithLabelValues(op, result).Inc()
	s.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// send stores one envelope from the caller of door subject subject.
//
// The caller's key on the subject is not checked as a curve point when it
// is the envelope's sender, byte for byte in canonical hex: the envelope's
// parse checked that key in full, and a text equal to a checked key's
// canonical form is that key. Otherwise it is parsed in full, for the
// right refusal (a malformed subject or a sender mismatch).
func (s *Service) send(ctx context.Context, subject string, body []byte) (kez.SendReply, error) {
	env, err := s.keys.Parse(body)
	if err != nil {
		if _, cerr := kez.DoorCaller(subject); cerr != nil {
			return kez.SendReply{}, refuse(kez.DoorMalformed, "%v", cerr)
		}
		return kez.SendReply{}, refuse(kez.DoorMalformed, "%v", err)
	}
	caller := env.From
	if subject != kez.DoorSubject(caller, kez.DoorSend) {
		c, cerr := kez.DoorCaller(subject)
		if cerr != nil {
			return kez.SendReply{}, refuse(kez.DoorMalformed, "%v", cerr)
		}
		return kez.SendReply{}, refuse(kez.DoorSenderMismatch, "the envelope's sender %s is not the signed-in key %s", env.From, c)
	}
	if err := env.Verify(); err != nil {
		return kez.SendReply{}, refuse(kez.DoorBadSignature, "the envelope's signature does not verify")
	}
	if ok, err := s.registered(ctx, env.To); err != nil {
		return kez.SendReply{}, err
	} else if !ok {
		return kez.SendReply{}, refuse(kez.DoorUnknownRecipient, "%s is not a registered key", env.To)
	}
	if err := s.quota.reserve(ctx, caller); err != nil {
		return kez.SendReply{}, err
	}
	sent := time.Now()
	pctx, cancel := context.WithTimeout(ctx, streams.StoreWait)
	ack, err := s.js.Publish(pctx, kez.InboxMsgSubject(env.To, env.From), body, jetstream.WithMsgID(env.DedupKey()))
	cancel()
	s.quota.stored(caller, err == nil && !ack.Duplicate)
	if err == nil && !ack.Duplicate {
		s.cfg.Writes.Stored(kez.InboxStream)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// Its dedup key makes a resend safe should it be stored late.
		if werr := s.cfg.Writes.Failed(ctx, kez.InboxStream, sent, err); werr != nil {
			s.logger.Warn("door: the inbox stream refuses writes", "err", werr)
			return kez.SendReply{}, refuse(kez.DoorStoreUnavailable, "the home server's inbox store refuses writes; nothing was stored (%v)", werr)
		}
		s.logger.Warn("door: the inbox stream stored nothing in time", "wait", streams.StoreWait)
		return kez.SendReply{}, refuse(kez.DoorUnavailable, "the home server's inbox store did not store the message within %v; it cannot store right now", streams.StoreWait)
	}
	if err != nil {
		return kez.SendReply{}, storeError(err)
	}
	return kez.SendReply{ID: env.ID.String(), Duplicate: ack.Duplicate}, nil
}

// storeError turns a refused publish into a refusal the sender can act
// on; anything else stays an error (unavailable).
func storeError(err error) error {
	msg := err.Error()
	switch {
	case isShareFull(err):
		return refuse(kez.DoorInboxShareFull, "you hold the most unread messages one sender may leave in this inbox; it takes more once the recipient reads some")
	case streams.IsStoreFull(err), strings.Contains(msg, "maximum bytes exceeded"), strings.Contains(msg, "maximum messages exceeded"):
		return refuse(kez.DoorStoreFull, "the home server's inbox store is full; nothing was stored")
	}
	return fmt.Errorf("publish: %w", err)
}

// isShareFull reports whether err is a publish refused by the inbox
// stream's per-subject limit: the sender's share of the inbox is full.
func isShareFull(err error) bool {
	return err != nil && strings.Contains(err.Error(), "maximum messages per subject exceeded")
}

// registered reports whether key has a handle: this replica's cache, then
// the registry.
func (s *Service) registered(ctx context.Context, key kez.PublicKey) (bool, error) {
	if _, ok := s.users.LookupKey(key); ok {
		return true, nil
	}
	_, err := s.users.KeyHandle(ctx, key)
	if errors.Is(err, kez.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// held counts sender's messages in every inbox, from the stream.
func (s *Service) held(ctx context.Context, sender kez.PublicKey) (int64, error) {
	n, err := s.subjectsTotal(ctx, kez.SenderFilter(sender))
	return int64(n), err
}

// subjectsTotal returns how many messages the inbox stream holds on the
// subjects matching filter.
func (s *Service) subjectsTotal(ctx context.Context, filter string) (uint64, error) {
	st, err := s.js.Stream(ctx, kez.InboxStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", kez.InboxStream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// read returns the caller's unread messages after the requested
// sequence, in stream order: a kez.ReadReply, or the binary answer of
// kez.AppendReadReply if the request asks for it. The batch direct get
// may be answered by any replica of the stream: a lagging one answers a
// prefix of the log, so every message of a subject up to the last
// returned is returned, and an ack up to it removes nothing unread.
func (s *Service) read(ctx context.Context, caller kez.PublicKey, body []byte) (any, error) {
	req, err := kez.ParseReadRequest(body)
	if err != nil {
		return nil, refuse(kez.DoorMalformed, "%v", err)
	}
	msgs, err := s.get.batch(ctx, kez.InboxFilter(caller), req.After+1, readBatch, readBytes)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	bin := req.Format == kez.ReadFormatBinary
	var (
		out = kez.ReadReply{Msgs: []kez.StoredMsg{}}
		b   []byte
	)
	if bin {
		b = kez.AppendReadReplyHead(make([]byte, 0, 16<<10))
	}
	size, n := 0, 0
	for _, m := range msgs {
		// The sender's key is not checked as a curve point here: only
		// the door writes the inbox stream (users hold no JetStream
		// API), and it writes kez.inbox.<to>.<from> with the hex of an
		// envelope key it checked in full. The client checks it again.
		sender, ok := kez.InboxSenderHex(m.Subject)
		if !ok {
			continue // not a message of the door's form
		}
		if bin {
			rm := kez.ReadMsg{Seq: m.Sequence, Data: m.Data}
			if _, err := hex.Decode(rm.Sender[:], []byte(sender)); err != nil {
				continue // InboxSenderHex checked it: not reached
			}
			b = kez.AppendReadMsg(b, rm)
		} else {
			out.Msgs = append(out.Msgs, kez.StoredMsg{Seq: m.Sequence, Sender: sender, Data: m.Data})
		}
		size += len(m.Data)
		n++
	}
	more := n == readBatch || size >= readBytes-message.MaxSize
	if bin {
		if more {
			kez.SetReadReplyMore(b)
		}
		return b, nil
	}
	out.More = more
	return out, nil
}

// ack removes the caller's messages from one sender up to a sequence, and
// gives the sender back that many of its quota.
func (s *Service) ack(ctx context.Context, caller kez.PublicKey, body []byte) (any, error) {
	req, sender, err := kez.ParseAckRequest(body)
	if err != nil {
		return nil, refuse(kez.DoorMalformed, "%v", err)
	}
	type ackReply struct {
		Removed uint64 `json:"removed"`
	}
	subject := kez.InboxMsgSubject(caller, sender)
	// A purge is a write of the stream (a Raft round on every replica,
	// each synced): an ack that removes nothing writes nothing, or any
	// user could load the store everyone's sends wait on with acks of
	// empty subjects. The first message is read from the leader (a
	// lagging replica may not hold yet what its follower just took);
	// if that read fails, the purge decides.
	if first, err := streams.LeaderFirstSeq(ctx, s.js, kez.InboxStream, subject); err == nil && (first == 0 || first > req.Seq) {
		return ackReply{}, nil
	}
	gen := s.quota.gen(ctx, sender) // before the purge: see quota.release
	purged, err := s.purge(ctx, subject, req.Seq+1)
	if err != nil {
		return nil, err
	}
	s.quota.release(sender, int64(purged), gen)
	return ackReply{purged}, nil
}

// purge removes the messages of subject below sequence upTo (exclusive,
// as JetStream's purge takes it) and returns how many it removed.
// jetstream.Stream.Purge does not return the count, so the API is called
// directly.
func (s *Service) purge(ctx context.Context, subject string, upTo uint64) (uint64, error) {
	req, _ := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq"`
	}{subject, upTo})
	m, err := s.nc.RequestWithContext(ctx, streams.APIPrefix(s.js)+"STREAM.PURGE."+kez.InboxStream, req)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	var resp struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("purge answer: %w", err)
	}
	if resp.Error != nil || !resp.Success {
		desc := "no success"
		if resp.Error != nil {
			desc = resp.Error.Description
		}
		return 0, fmt.Errorf("purge: %s", desc)
	}
	return resp.Purged, nil
}

// stat counts the caller's unread messages.
func (s *Service) stat(ctx context.Context, caller kez.PublicKey) (kez.StatReply, error) {
	n, err := s.subjectsTotal(ctx, kez.InboxFilter(caller))
	return kez.StatReply{Unread: n}, err
}
