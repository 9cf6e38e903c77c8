package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Group commit of registrations.
//
// Every registration is an atomic batch of three claims, and on a
// replicated stream a batch costs a Raft round however few messages it
// holds. Registrations arriving while groupsInFlight batches are already
// in flight wait and go together: their claims, three per registration,
// in one atomic batch, each message still published with
// Nats-Expected-Last-Subject-Sequence: 0. The batch is atomic, so one
// claim held by another registration refuses the whole batch and stores
// none of it; every registration of a refused (or unanswered) group of
// several is then sent again alone, on Append's usual path, which decides
// it by itself as before. Two registrations claiming the same subject
// never share a batch, nor go in two batches in flight at once (JetStream
// would refuse the later batch, and every registration in it): the
// second is sent alone, at once, as before group commit.

// groupsInFlight bounds the group batches of one Registry in flight;
// registrations arriving meanwhile queue for the next. One: on a
// replicated stream every batch costs a Raft round with an fsync on each
// node, the resource registrations run out of first, so the batches are
// best few and full. Under 16-way load on a 3-node cluster (counted with
// strace), one in flight cost 0.85 fsyncs a registration in all, two
// 1.05, four 1.2 (of them 0.4, 0.6 and 0.65 in the registry's Raft log).
const groupsInFlight = 1

// maxGroup bounds the registrations of one batch (3 messages each;
// nats-server allows 1,000 messages per atomic batch by default).
const maxGroup = 64

// groupMember is one registration waiting for its group.
type groupMember struct {
	msgs     []*nats.Msg // its three claims, the event last
	subjects []string
	done     chan groupResult
}

// errClaimInFlight: a registration claiming a subject of a batch in
// flight, sent alone instead.
var errClaimInFlight = errors.New("a claim of this registration is in flight in another batch")

// groupResult is a member's share of its group's outcome. shared says
// an error is not this registration's own answer (the batch held other
// registrations too, and nothing of a refused batch is stored; or its
// acknowledgement could not be read): it is sent again alone.
type groupResult struct {
	seq      uint64
	err      error
	storeErr error
	shared   bool
}

type grouper struct {
	mu       sync.Mutex
	queue    []*groupMember
	inFlight map[string]bool // subjects claimed by batches in flight
	flushing int
	shared   atomic.Uint64 // registrations sent in a group of several
}

// grouped sends msgs (one registration's claims) in the next group batch
// and returns its outcome.
func (r *Registry) grouped(ctx context.Context, msgs []*nats.Msg) groupResult {
	m := &groupMember{msgs: msgs, done: make(chan groupResult, 1)}
	for _, msg := range msgs {
		m.subjects = append(m.subjects, msg.Subject)
	}
	g := &r.group
	g.mu.Lock()
	g.queue = append(g.queue, m)
	start := g.flushing < groupsInFlight
	if start {
		g.flushing++
	}
	g.mu.Unlock()
	if start {
		go r.flush()
	}
	select {
	case res := <-m.done:
		return res
	case <-ctx.Done():
		// The group goes on without this caller (done is buffered): its
		// outcome is unknown, as for an attempt of its own cut short.
		return groupResult{err: ctx.Err()}
	}
}

// flush sends group batches while registrations are queued that can go.
func (r *Registry) flush() {
	g := &r.group
	for {
		g.mu.Lock()
		batch := g.take()
		if len(batch) == 0 {
			g.flushing--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		res := r.sendGroup(batch)
		g.mu.Lock()
		for _, m := range batch {
			for _, s := range m.subjects {
				delete(g.inFlight, s)
			}
		}
		g.mu.Unlock()
		for i, m := range batch {
			m.done <- res[i]
		}
	}
}

// take removes from the queue, oldest first, up to maxGroup registrations
// that claim no subject of each other or of a batch in flight, and marks
// their subjects in flight; one that does is answered errClaimInFlight
// (to be sent alone). g.mu is held.
func (g *grouper) take() []*groupMember {
	if g.inFlight == nil {
		g.inFlight = map[string]bool{}
	}
	var batch []*groupMember
	rest := g.queue[:0]
	for _, m := range g.queue {
		if len(batch) == maxGroup {
			rest = append(rest, m)
			continue
		}
		free := true
		for _, s := range m.subjects {
			free = free && !g.inFlight[s]
		}
		if !free {
			// A competitor for one of its claims (or the same
			// registration sent twice) is in flight: sent alone now,
			// it is decided by JetStream as before, as quickly.
			m.done <- groupResult{err: errClaimInFlight, shared: true}
			continue
		}
		for _, s := range m.subjects {
			g.inFlight[s] = true
		}
		batch = append(batch, m)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return batch
}

// sendGroup publishes the claims of batch as one atomic batch and returns
// each member's outcome. The batch's messages are stored at consecutive
// sequences ending at the acknowledged one, so member i's event (its last
// message) is at that sequence less 3 for every member after it.
func (r *Registry) sendGroup(batch []*groupMember) []groupResult {
	ctx, cancel := withTimeout(context.Background())
	defer cancel()
	var msgs []*nats.Msg
	for _, m := range batch {
		msgs = append(msgs, m.msgs...)
	}
	ack, err, storeErr := r.publishBatch(ctx, msgs)
	again := len(batch) > 1
	if err == nil && ack.BatchSize != uint64(len(msgs)) {
		// Not the batch sent: the members' sequences cannot be told
		// from the answer. Each is sent again alone, a group of one
		// too, which finds its claims held and reads its own event back.
		err = fmt.Errorf("atomic batch of %d messages acknowledged as %d", len(msgs), ack.BatchSize)
		again = true
	}
	if len(batch) > 1 {
		r.group.shared.Add(uint64(len(batch)))
	}
	res := make([]groupResult, len(batch))
	after := uint64(0)
	for i := len(batch) - 1; i >= 0; i-- {
		res[i] = groupResult{err: err, storeErr: storeErr, shared: again}
		if err == nil {
			res[i].seq = ack.Sequence - after
			after += uint64(len(batch[i].msgs))
		}
	}
	return res
}
