package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// quotaFlush is how often a replica writes the changes of the counts it
// holds to the kez_quota bucket. Between writes, a sender who sends
// through several replicas at once may pass the quota by what it sends
// in that time through each; a sender using one replica never does.
const quotaFlush = 100 * time.Millisecond

// quotaFullFor is how long a sender that a recount found at its quota is
// refused from memory: its next refusals cost neither a bucket read or
// write nor a count of the stream. A recipient's read through this
// replica lets the sender through at once; one through another replica,
// once the window ends.
const quotaFullFor = time.Second

// quota counts, per sender, the unread messages it holds across all
// inboxes, and refuses a sender at max. The count lives in the kez_quota
// bucket, shared by every replica; each replica adds its own changes
// (pending) to the count it last read, and writes them compare-and-set
// every quotaFlush, so that a message costs no round trip to the bucket.
// A count can run high (messages that expired unread were never
// subtracted): before refusing, the sender's messages in the stream
// itself are counted (held) and the count corrected (a recount).
//
// A recount must not count a change twice. A message is published
// before stored records it, and removed before release records it, so a
// change recorded before the recount began is in the stream's count,
// and is dropped from pending. Messages stored since it began stay
// pending (one the count already holds is counted twice: high, which is
// safe). Removals that began before the recount was written may be in
// its count, in this replica or another, so none is given back: each
// recount writes a new generation with the count, an ack takes the
// generation its replica knows when it begins, and a replica drops the
// removals of an older generation, pending or to come, when it learns
// of a newer one (it must, to write: the write is compare-and-set).
// Dropping a removal the count does not hold only leaves the count high
// until the next recount.
type quota struct {
	kv     jetstream.KeyValue
	max    int64
	held   func(context.Context, kez.PublicKey) (int64, error)
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	counts   map[kez.PublicKey]count // the bucket's value, as last read or written
	pending  map[kez.PublicKey]int64 // this replica's changes not yet written
	inflight map[kez.PublicKey]int64 // reserved, not yet stored or given up
	// subs is the part of pending that removals took off (a positive
	// number), all of the generation of counts.
	subs map[kez.PublicKey]int64
	// adds counts, for each sender being recounted, the messages stored
	// since its recount began.
	adds map[kez.PublicKey]int64
	// full holds the senders a recount found at max, until quotaFullFor
	// after it.
	full map[kez.PublicKey]fullness
	// flushing serialises the writes of one sender's count (by its key's
	// first byte) in this replica; other replicas' are caught by the
	// compare-and-set. recounting serialises its recounts likewise.
	flushing   [256]sync.Mutex
	recounting [256]sync.Mutex
}

// count is a sender's entry of kez_quota: its value, the generation of
// the recount that wrote it last (0: none), and its revision (0: no
// entry). The entry's text is "<n> <gen>", or "<n>" for generation 0.
type count struct {
	n   int64
	gen uint64
	rev uint64
}

// parseCount reads the text of an entry.
func parseCount(v []byte) (n int64, gen uint64, err error) {
	ns, gs, withGen := strings.Cut(string(v), " ")
	if n, err = strconv.ParseInt(ns, 10, 64); err != nil {
		return 0, 0, err
	}
	if withGen {
		if gen, err = strconv.ParseUint(gs, 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return n, gen, nil
}

// formatCount is the text of an entry.
func formatCount(n int64, gen uint64) []byte {
	b := strconv.AppendInt(nil, n, 10)
	if gen != 0 {
		b = append(b, ' ')
		b = strconv.AppendUint(b, gen, 10)
	}
	return b
}

// newGen returns a recount generation: random, so that two replicas
// recounting at once do not pick the same, and not 0.
func newGen() uint64 {
	for {
		if g := rand.Uint64(); g != 0 {
			return g
		}
	}
}

// fullness is a recount that found a sender at max: how many messages it
// held, and until when that answers its refusals.
type fullness struct {
	held  int64
	until time.Time
}

// maxRemembered bounds the senders a replica keeps counts of.
const maxRemembered = 100_000

func newQuota(kv jetstream.KeyValue, max int64, held func(context.Context, kez.PublicKey) (int64, error), logger *slog.Logger) *quota {
	return &quota{kv: kv, max: max, held: held, logger: logger, now: time.Now,
		counts: map[kez.PublicKey]count{}, pending: map[kez.PublicKey]int64{}, inflight: map[kez.PublicKey]int64{},
		subs: map[kez.PublicKey]int64{}, adds: map[kez.PublicKey]int64{}, full: map[kez.PublicKey]fullness{}}
}

// reserve holds one more unread message for sender, or refuses it with
// DoorSenderQuota; the caller then says with stored whether it stored it.
func (q *quota) reserve(ctx context.Context, sender kez.PublicKey) error {
	if ok, err := q.take(ctx, sender); err != nil || ok {
		return err
	}
	if f, ok := q.fullRecently(sender); ok {
		return refuseQuota(f.held)
	}
	// Full as this replica sees it: bring the count up to date with the
	// bucket (the other replicas' changes), and ask again.
	if err := q.sync(ctx, sender); err != nil {
		return err
	}
	if ok, err := q.take(ctx, sender); err != nil || ok {
		return err
	}
	held, err := q.recount(ctx, sender)
	if err != nil {
		return err
	}
	if ok, err := q.take(ctx, sender); err != nil || ok {
		return err
	}
	return refuseQuota(held)
}

func refuseQuota(held int64) error {
	return refuse(kez.DoorSenderQuota, "you hold %d unread messages across all inboxes, the most one sender may; more are taken as recipients read them", held)
}

// fullRecently returns the recount that found sender at max, if it was
// less than quotaFullFor ago.
func (q *quota) fullRecently(sender kez.PublicKey) (fullness, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f, ok := q.full[sender]
	if ok && !q.now().Before(f.until) {
		delete(q.full, sender)
		ok = false
	}
	return f, ok
}

// take reserves one message if sender's count, with this replica's
// pending changes and reservations, is under max.
func (q *quota) take(ctx context.Context, sender kez.PublicKey) (bool, error) {
	q.mu.Lock()
	_, known := q.counts[sender]
	q.mu.Unlock()
	if !known {
		if _, err := q.load(ctx, sender); err != nil {
			return false, err
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.atMax(sender) {
		return false, nil
	}
	q.inflight[sender]++
	return true, nil
}

// atMax reports whether sender's count, with its pending changes and
// reservations, reaches max. The caller holds q.mu.
func (q *quota) atMax(sender kez.PublicKey) bool {
	return q.counts[sender].n+q.pending[sender]+q.inflight[sender] >= q.max
}

// addPending adds n to sender's pending change, which holds no zero (a
// zero is nothing to write). The caller holds q.mu.
func (q *quota) addPending(sender kez.PublicKey, n int64) {
	if q.pending[sender] += n; q.pending[sender] == 0 {
		delete(q.pending, sender)
	}
}

// stored ends a reservation: the message is one more unread one (ok), or
// it was not stored (or had been before).
func (q *quota) stored(sender kez.PublicKey, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight[sender]--; q.inflight[sender] <= 0 {
		delete(q.inflight, sender)
	}
	if ok {
		q.addPending(sender, 1)
		if _, recounting := q.adds[sender]; recounting {
			q.adds[sender]++
		}
	}
}

// gen returns the generation of sender's count as this replica knows it
// (reading the entry if it knows none), which an ack takes before it
// removes messages and gives to release. On an error it returns 0, and
// the release gives nothing back if the count has a generation.
func (q *quota) gen(ctx context.Context, sender kez.PublicKey) uint64 {
	q.mu.Lock()
	c, known := q.counts[sender]
	q.mu.Unlock()
	if !known {
		c, _ = q.load(ctx, sender)
	}
	return c.gen
}

// release gives n messages back to sender: they were read, by an ack that
// began at generation gen of sender's count. Nothing is given back if
// this replica knows a newer generation: its recount may hold the
// removal already.
func (q *quota) release(sender kez.PublicKey, n int64, gen uint64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.counts[sender].gen != gen {
		return
	}
	q.addPending(sender, -n)
	q.subs[sender] += n
}

// setCount records sender's entry as c, dropping the removals of another
// generation (0 if sender's entry was not known) from pending. The caller
// holds q.mu.
func (q *quota) setCount(sender kez.PublicKey, c count) {
	if q.counts[sender].gen != c.gen {
		q.addPending(sender, q.subs[sender])
		delete(q.subs, sender)
	}
	q.counts[sender] = c
}

// load reads sender's entry from the bucket.
func (q *quota) load(ctx context.Context, sender kez.PublicKey) (count, error) {
	var c count
	e, err := q.kv.Get(ctx, sender.Hex())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return c, fmt.Errorf("quota: %w", err)
	default:
		n, gen, perr := parseCount(e.Value())
		if perr != nil {
			n, gen = 0, 0 // unreadable: recounted at the next refusal
		}
		c = count{n: n, gen: gen, rev: e.Revision()}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.counts[sender]; !ok && len(q.counts) >= maxRemembered {
		for k := range q.counts {
			_, recounting := q.adds[k]
			if q.pending[k] == 0 && q.subs[k] == 0 && q.inflight[k] == 0 && !recounting {
				delete(q.counts, k)
			}
		}
	}
	q.setCount(sender, c)
	return c, nil
}

// sync brings sender's count up to date with the bucket: it writes this
// replica's pending changes or, with none, reads the entry (a read is
// not replicated; a write is).
func (q *quota) sync(ctx context.Context, sender kez.PublicKey) error {
	lock := &q.flushing[sender.Bytes()[0]]
	lock.Lock()
	defer lock.Unlock()
	q.mu.Lock()
	p := q.pending[sender]
	q.mu.Unlock()
	if p == 0 {
		_, err := q.load(ctx, sender)
		return err
	}
	return q.writePending(ctx, sender)
}

// recount makes sender's count the messages the stream holds from it
// (the truth) and returns that number, dropping the pending changes the
// number holds (see quota). Within quotaFullFor of a recount that found
// sender at max it counts nothing and returns that recount's number.
func (q *quota) recount(ctx context.Context, sender kez.PublicKey) (int64, error) {
	rlock := &q.recounting[sender.Bytes()[0]]
	rlock.Lock()
	defer rlock.Unlock()
	if f, ok := q.fullRecently(sender); ok {
		return f.held, nil
	}
	q.mu.Lock()
	q.adds[sender] = 0
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.adds, sender)
		q.mu.Unlock()
	}()
	held, err := q.held(ctx, sender)
	if err != nil {
		return 0, err
	}
	lock := &q.flushing[sender.Bytes()[0]]
	lock.Lock()
	defer lock.Unlock()
	gen := newGen()
	err = q.write(ctx, sender, func(count, int64) count { return count{n: held, gen: gen} }, func(int64, int64) {
		delete(q.pending, sender)
		q.addPending(sender, q.adds[sender])
		delete(q.subs, sender)
		if q.atMax(sender) {
			if len(q.full) >= maxRemembered {
				now := q.now()
				for k, f := range q.full {
					if !now.Before(f.until) {
						delete(q.full, k)
					}
				}
			}
			q.full[sender] = fullness{held: held, until: q.now().Add(quotaFullFor)}
		}
	})
	return held, err
}

// flushOne writes sender's pending changes.
func (q *quota) flushOne(ctx context.Context, sender kez.PublicKey) error {
	lock := &q.flushing[sender.Bytes()[0]]
	lock.Lock()
	defer lock.Unlock()
	return q.writePending(ctx, sender)
}

// writePending writes sender's pending changes; the caller holds its
// flushing lock.
func (q *quota) writePending(ctx context.Context, sender kez.PublicKey) error {
	return q.write(ctx, sender,
		func(cur count, pending int64) count { return count{n: max(0, cur.n+pending), gen: cur.gen} },
		func(pending, subs int64) {
			q.addPending(sender, -pending)
			// subs can be gone already: a newer generation dropped them
			// from pending (the count runs high by them, which is safe).
			if q.subs[sender] -= subs; q.subs[sender] <= 0 {
				delete(q.subs, sender)
			}
		})
}

// write sets sender's entry, compare-and-set, to what next makes of it
// and this replica's pending changes, then calls done, holding q.mu, with
// the pending changes (and their subs) next was given. It writes nothing
// if the entry stays what it is. The caller holds sender's flushing
// lock.
func (q *quota) write(ctx context.Context, sender kez.PublicKey, next func(cur count, pending int64) count, done func(pending, subs int64)) error {
	key := sender.Hex()
	for range 16 {
		q.mu.Lock()
		c, known := q.counts[sender]
		q.mu.Unlock()
		if !known {
			var err error
			if c, err = q.load(ctx, sender); err != nil {
				return err
			}
		}
		q.mu.Lock()
		pending, subs := q.pending[sender], q.subs[sender]
		q.mu.Unlock()
		w := next(c, pending)
		w.rev = c.rev
		var err error
		switch {
		case w.n == c.n && w.gen == c.gen: // the entry stays (no entry counts 0)
		case c.rev == 0:
			w.rev, err = q.kv.Create(ctx, key, formatCount(w.n, w.gen))
		default:
			w.rev, err = q.kv.Update(ctx, key, formatCount(w.n, w.gen), c.rev)
		}
		if err == nil {
			q.mu.Lock()
			q.setCount(sender, w)
			done(pending, subs)
			q.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("quota: %w", err)
		}
		if _, err := q.load(ctx, sender); err != nil { // another replica wrote it
			return err
		}
	}
	return errors.New("quota: too many concurrent changes")
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// flush writes every pending change.
func (q *quota) flush(ctx context.Context) {
	q.mu.Lock()
	senders := make([]kez.PublicKey, 0, len(q.pending))
	for k := range q.pending {
		senders = append(senders, k)
	}
	q.mu.Unlock()
	for _, k := range senders {
		if err := q.flushOne(ctx, k); err != nil {
			q.logger.Warn("door: quota count", "sender", k.String(), "err", err)
		}
	}
}

// run flushes every quotaFlush until ctx ends, then once more.
func (q *quota) run(ctx context.Context) {
	t := time.NewTicker(quotaFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			q.flush(fctx)
			cancel()
			return
		case <-t.C:
			q.flush(ctx)
		}
	}
}
