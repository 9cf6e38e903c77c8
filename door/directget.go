package door

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/streams"
)

// getter runs the door's batch direct gets of the inbox stream. The
// answers of every get come to one subscription of the door's
// connection, made once, under a prefix of its own, and are routed by the
// token that ends their subject (as nats.go routes request replies):
// jetstreamext.GetBatch makes a subscription for each get, a SUB and an
// UNSUB through the broker and a 512 KiB channel (nats.go's default
// length) allocated and cleared for a page of at most readBatch messages.
type getter struct {
	nc     *nats.Conn
	stream string
	api    string // the stream's direct get subject
	prefix string // of every answer's subject; a token follows
	sub    *nats.Subscription
	next   atomic.Uint64

	mu      sync.Mutex
	pending map[string]*getReply
}

// getReply collects the answers to one get.
type getReply struct {
	ch       chan *nats.Msg
	overflow chan struct{} // closed when an answer did not fit ch
	once     sync.Once
}

// errGetAnswer is an answer to a batch direct get that is not one: a
// server that does not batch, or one that broke the protocol.
var errGetAnswer = errors.New("unexpected direct get answer")

// newGetter subscribes to the answers of direct gets of stream on nc
// (js's connection and API prefix).
func newGetter(js jetstream.JetStream, stream string) (*getter, error) {
	nc := js.Conn()
	g := &getter{nc: nc, stream: stream, api: streams.APIPrefix(js) + "DIRECT.GET." + stream,
		prefix: nc.NewRespInbox() + ".", pending: map[string]*getReply{}}
	sub, err := nc.Subscribe(g.prefix+"*", g.route)
	if err != nil {
		return nil, fmt.Errorf("direct get answers: %w", err)
	}
	// nats.go drops what a subscription holds beyond its pending limits;
	// a get must never miss a message from the middle of its page, so
	// this one has none. What it holds is bounded by the gets in hand
	// (Config.Workers), each at most a page.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("direct get answers: %w", err)
	}
	g.sub = sub
	return g, nil
}

// close ends the subscription.
func (g *getter) close() { _ = g.sub.Unsubscribe() }

// route hands an answer to the get its token names; an answer to no get
// in hand (one that came after its get gave up) is dropped.
func (g *getter) route(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, g.prefix)
	g.mu.Lock()
	r := g.pending[token]
	g.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case r.ch <- m:
	default:
		// More than a page: the get fails rather than answer a page with
		// a message missing from its middle.
		r.once.Do(func() { close(r.overflow) })
	}
}

// getRequest is the body of a batch direct get.
type getRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes"`
}

// gotMsg is one message of a batch direct get's answer.
type gotMsg struct {
	Subject  string
	Sequence uint64
	Data     []byte
}

// batch returns, in stream order, at most n of the messages on subject
// filter from sequence seq on, together at most maxBytes (the first
// always, whatever its size): a batch direct get. Every message up to
// the last returned that the answering replica holds is returned. The
// answers are held to the request (getRequest.accept): a message that
// is not the stream's, not on filter, before seq, out of order or past
// the bounds fails the get.
func (g *getter) batch(ctx context.Context, filter string, seq uint64, n, maxBytes int) ([]gotMsg, error) {
	q := getRequest{Seq: seq, NextFor: filter, Batch: n, MaxBytes: maxBytes}
	req, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	token := strconv.FormatUint(g.next.Add(1), 36)
	r := &getReply{ch: make(chan *nats.Msg, n+2), overflow: make(chan struct{})}
	g.mu.Lock()
	g.pending[token] = r
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, token)
		g.mu.Unlock()
	}()
	if err := g.nc.PublishRequest(g.api, g.prefix+token, req); err != nil {
		return nil, fmt.Errorf("direct get: %w", err)
	}
	var (
		out  []gotMsg
		size int
	)
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("direct get: %w", ctx.Err())
		case <-r.overflow:
			return nil, fmt.Errorf("direct get: %w: more than %d answers", errGetAnswer, n+1)
		case m = <-r.ch:
		}
		msg, end, err := parseGot(m, g.stream)
		if err != nil {
			return nil, fmt.Errorf("direct get: %w", err)
		}
		if end {
			return out, nil
		}
		if err := q.accept(out, size, msg); err != nil {
			return nil, fmt.Errorf("direct get: %w", err)
		}
		out = append(out, msg)
		size += len(msg.Data)
	}
}

// accept checks msg, the next message of the answer to q after out
// (size bytes of data), against q: the broker, or a replica of the
// stream, is not trusted to answer what was asked. The server stops a
// batch once it sent max_bytes, counting subjects and headers too, so
// data of size >= MaxBytes already ends it.
func (q getRequest) accept(out []gotMsg, size int, msg gotMsg) error {
	switch {
	case len(out) == q.Batch:
		return fmt.Errorf("%w: more than %d messages", errGetAnswer, q.Batch)
	case len(out) > 0 && size >= q.MaxBytes:
		return fmt.Errorf("%w: more than %d bytes", errGetAnswer, q.MaxBytes)
	case msg.Sequence < q.Seq:
		return fmt.Errorf("%w: sequence %d before %d", errGetAnswer, msg.Sequence, q.Seq)
	case len(out) > 0 && msg.Sequence <= out[len(out)-1].Sequence:
		return fmt.Errorf("%w: sequence %d after %d", errGetAnswer, msg.Sequence, out[len(out)-1].Sequence)
	case !subjectMatches(q.NextFor, msg.Subject):
		return fmt.Errorf("%w: subject %.200q is not on %s", errGetAnswer, msg.Subject, q.NextFor)
	}
	return nil
}

// subjectMatches reports whether subject is one of filter's, which may
// hold "*" tokens and end in ">".
func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">" && !fmore:
			return st != ""
		case st == "" || ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// parseGot reads one answer of a batch direct get of stream: a message,
// or the end of the batch (end; also "no messages"). A status other than
// these, or a message without the batch headers or of another stream, is
// an error.
func parseGot(m *nats.Msg, stream string) (gotMsg, bool, error) {
	if len(m.Data) == 0 {
		switch status := m.Header.Get("Status"); {
		case status == "404":
			return gotMsg{}, true, nil
		case status == "204" && m.Header.Get("Description") == "EOB":
			return gotMsg{}, true, nil
		case status != "":
			return gotMsg{}, false, fmt.Errorf("%w: status %.3s %.80q", errGetAnswer, status, m.Header.Get("Description"))
		}
	}
	if m.Header.Get("Nats-Num-Pending") == "" {
		return gotMsg{}, false, fmt.Errorf("%w: not a batch (a server before 2.11?)", errGetAnswer)
	}
	if got := m.Header.Get(jetstream.StreamHeader); got != stream {
		return gotMsg{}, false, fmt.Errorf("%w: a message of stream %.80q", errGetAnswer, got)
	}
	subject := m.Header.Get(jetstream.SubjectHeader)
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if subject == "" || err != nil || seq == 0 {
		return gotMsg{}, false, fmt.Errorf("%w: no subject or sequence", errGetAnswer)
	}
	return gotMsg{Subject: subject, Sequence: seq, Data: m.Data}, false, nil
}
