package door

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// fakeEntry is an entry of fakeKV.
type fakeEntry struct {
	jetstream.KeyValueEntry
	v   []byte
	rev uint64
}

func (e fakeEntry) Value() []byte    { return e.v }
func (e fakeEntry) Revision() uint64 { return e.rev }

// fakeKV is the part of a key-value bucket quota uses, in memory, with
// the number of reads and writes it was asked.
type fakeKV struct {
	jetstream.KeyValue
	mu           sync.Mutex
	m            map[string]fakeEntry
	gets, writes int
}

func (f *fakeKV) Get(_ context.Context, k string) (jetstream.KeyValueEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	e, ok := f.m[k]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

func (f *fakeKV) Create(_ context.Context, k string, v []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if _, ok := f.m[k]; ok {
		return 0, jetstream.ErrKeyExists
	}
	f.m[k] = fakeEntry{v: v, rev: 1}
	return 1, nil
}

func (f *fakeKV) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	e := f.m[k]
	if e.rev != rev {
		return 0, jetstream.ErrKeyExists
	}
	f.m[k] = fakeEntry{v: v, rev: rev + 1}
	return rev + 1, nil
}

// calls returns the reads and writes asked so far.
func (f *fakeKV) calls() (gets, writes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets, f.writes
}

// value returns key's value, -1 if it has none.
func (f *fakeKV) value(t *testing.T, key string) int64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[key]
	if !ok {
		return -1
	}
	n, _, err := parseCount(e.v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// quotaStream is a sender's messages in a stream, as the door's quota
// sees them: held counts them, send stores one through the quota, ack
// removes some as the door's ack does. onCount, if set, runs once inside
// the next count, after the stream was counted.
type quotaStream struct {
	t       *testing.T
	q       *quota
	kv      *fakeKV
	sender  kez.PublicKey
	real    int64 // the messages the stream holds from sender
	counts  int   // the counts of the stream (stream infos)
	now     time.Time
	onCount func(counted int64)
}

func newQuotaStream(t *testing.T, max int64) *quotaStream {
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &quotaStream{t: t, kv: &fakeKV{m: map[string]fakeEntry{}}, sender: k.Public(), now: time.Unix(1_800_000_000, 0)}
	s.q = newQuota(s.kv, max, func(context.Context, kez.PublicKey) (int64, error) {
		s.counts++
		n := s.real
		if f := s.onCount; f != nil {
			s.onCount = nil
			f(n)
		}
		return n, nil
	}, slog.New(slog.DiscardHandler))
	s.q.now = func() time.Time { return s.now }
	return s
}

// replica returns the quota of another replica on the same bucket and
// stream.
func (s *quotaStream) replica() *quota {
	q := newQuota(s.kv, s.q.max, s.q.held, slog.New(slog.DiscardHandler))
	q.now = s.q.now
	return q
}

// send stores one message if the quota lets it, and reports whether it did.
func (s *quotaStream) send() bool {
	s.t.Helper()
	return s.sendVia(s.q)
}

// sendVia sends through replica q.
func (s *quotaStream) sendVia(q *quota) bool {
	s.t.Helper()
	err := q.reserve(context.Background(), s.sender)
	var rf *refusal
	if errors.As(err, &rf) && rf.code == kez.DoorSenderQuota {
		return false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.real++
	q.stored(s.sender, true)
	return true
}

// fill sends until the quota refuses, and returns how many were stored.
func (s *quotaStream) fill() int {
	n := 0
	for s.send() {
		if n++; n > 1000 {
			s.t.Fatal("the quota never refuses")
		}
	}
	return n
}

// beginAck starts an ack of n messages: it removes them from the stream
// and returns the release the door then makes.
func (s *quotaStream) beginAck(n int64) (release func()) {
	return s.beginAckVia(s.q, n)
}

// beginAckVia starts an ack through replica q.
func (s *quotaStream) beginAckVia(q *quota, n int64) (release func()) {
	gen := q.gen(context.Background(), s.sender)
	s.real -= n
	return func() { q.release(s.sender, n, gen) }
}

// TestQuotaAckDuringRecount: an ack of K of the sender's messages that
// lands while a refused send recounts her is counted once. It was counted
// twice, by the stream's count and by the pending release the recount
// kept: a sender at her quota who acked K messages sent to herself while
// a send was refused then held K more than the quota.
func TestQuotaAckDuringRecount(t *testing.T) {
	const max, k = 10, 5
	s := newQuotaStream(t, max)
	s.fill()
	if err := s.q.flushOne(context.Background(), s.sender); err != nil {
		t.Fatal(err)
	}
	s.now = s.now.Add(2 * quotaFullFor)
	// The ack's purge lands before the count, its release during it.
	release := s.beginAck(k)
	s.onCount = func(int64) { release() }
	s.fill()
	s.now = s.now.Add(2 * quotaFullFor)
	s.fill()
	if s.real > max {
		t.Fatalf("the sender holds %d unread messages, over the quota %d (bucket %d)", s.real, max, s.kv.value(t, s.sender.Hex()))
	}
	if s.real != max {
		t.Fatalf("the sender holds %d unread messages, want the quota %d", s.real, max)
	}
}

// TestQuotaAckAcrossRecount: an ack that began before a recount and
// gives its messages back after it is not counted again: the recount
// holds its removal.
func TestQuotaAckAcrossRecount(t *testing.T) {
	const max, k = 10, 4
	s := newQuotaStream(t, max)
	s.fill()
	s.now = s.now.Add(2 * quotaFullFor)
	release := s.beginAck(k)
	if got := s.fill(); got != k {
		t.Fatalf("after an ack of %d, %d more were stored", k, got)
	}
	release()
	s.now = s.now.Add(2 * quotaFullFor)
	s.fill()
	if s.real != max {
		t.Fatalf("the sender holds %d unread messages, want the quota %d", s.real, max)
	}
}

// TestQuotaStoreDuringRecount: a message stored while a refused send
// recounts the sender, after the stream was counted, stays counted.
func TestQuotaStoreDuringRecount(t *testing.T) {
	const max = 10
	s := newQuotaStream(t, max)
	for range max - 1 {
		if !s.send() {
			t.Fatal("refused under the quota")
		}
	}
	// One send reserves the last place; the next is refused and
	// recounts, and the first is stored after the count.
	if err := s.q.reserve(context.Background(), s.sender); err != nil {
		t.Fatal(err)
	}
	s.onCount = func(int64) {
		s.real++
		s.q.stored(s.sender, true)
	}
	if s.send() {
		t.Fatal("a send over the reserved last place was stored")
	}
	s.now = s.now.Add(2 * quotaFullFor)
	s.fill()
	if s.real != max {
		t.Fatalf("the sender holds %d unread messages, want the quota %d", s.real, max)
	}
}

// TestQuotaAckOnAnotherReplica: an ack through one replica that a
// recount through another already holds is not given back again when
// the first replica writes its changes. It was: a sender at her quota
// who acked K of her messages through one replica while a send of hers
// was refused through another held K more than the quota.
func TestQuotaAckOnAnotherReplica(t *testing.T) {
	const max, k = 10, 4
	s := newQuotaStream(t, max)
	b := s.replica()
	s.fill()
	// The recipient reads through b; a refused send through a
	// recounts before b writes its changes.
	release := s.beginAckVia(b, k)
	release()
	s.now = s.now.Add(2 * quotaFullFor)
	if got := s.fill(); got != k {
		t.Fatalf("after an ack of %d, %d more were stored", k, got)
	}
	if err := b.flushOne(context.Background(), s.sender); err != nil {
		t.Fatal(err)
	}
	s.now = s.now.Add(2 * quotaFullFor)
	for _, q := range []*quota{s.q, b} {
		if s.sendVia(q) {
			t.Fatalf("a send was stored over the quota: the stream holds %d, the bucket %d", s.real, s.kv.value(t, s.sender.Hex()))
		}
	}
}

// TestQuotaRefusalCost: sends refused for the quota write nothing to the
// bucket and count the stream at most once a quotaFullFor; a sender
// whose recipient read (through another replica) is let through after
// that. Every refusal cost two bucket writes and a count of the stream.
func TestQuotaRefusalCost(t *testing.T) {
	const max, n = 10, 100
	s := newQuotaStream(t, max)
	s.fill()
	gets0, writes0 := s.kv.calls()
	counts0 := s.counts
	if writes0 > 2 || counts0 != 1 {
		t.Fatalf("filling the quota wrote the bucket %d times and counted the stream %d times, want 2 (the count, the recount) and 1", writes0, counts0)
	}
	for range n {
		if s.send() {
			t.Fatal("a send over the quota was stored")
		}
	}
	gets, writes := s.kv.calls()
	if gets != gets0 || writes != writes0 || s.counts != counts0 {
		t.Fatalf("%d refused sends read the bucket %d times, wrote it %d times and counted the stream %d times, want none",
			n, gets-gets0, writes-writes0, s.counts-counts0)
	}
	// The recipient reads all through another replica, which writes the
	// bucket: still refused from memory within the window, let through
	// after it.
	s.real = 0
	s.kv.mu.Lock()
	e := s.kv.m[s.sender.Hex()]
	_, gen, err := parseCount(e.v)
	if err != nil {
		t.Fatal(err)
	}
	s.kv.m[s.sender.Hex()] = fakeEntry{v: formatCount(0, gen), rev: e.rev + 1}
	s.kv.mu.Unlock()
	s.now = s.now.Add(quotaFullFor / 2)
	if s.send() {
		t.Fatal("let through within the window, without a count")
	}
	s.now = s.now.Add(quotaFullFor)
	if !s.send() {
		t.Fatal("refused after the window though the recipient read")
	}
	if _, writes := s.kv.calls(); writes-writes0 > 1 {
		t.Fatalf("letting the sender through wrote the bucket %d times", writes-writes0)
	}
	// Full again: one count per window however many sends.
	s.fill()
	counts1 := s.counts
	_, writes1 := s.kv.calls()
	for range 3 {
		for range n {
			if s.send() {
				t.Fatal("a send over the quota was stored")
			}
		}
		s.now = s.now.Add(quotaFullFor)
	}
	_, writes = s.kv.calls()
	if c, w := s.counts-counts1, writes-writes1; c > 3 || w > 3 {
		t.Fatalf("%d refused sends over 3 windows counted the stream %d times and wrote the bucket %d times, want at most 3 each", 3*n, c, w)
	}
}

// TestQuotaReleaseLocal: a read through this replica lets the sender
// through at once, window or not.
func TestQuotaReleaseLocal(t *testing.T) {
	const max = 10
	s := newQuotaStream(t, max)
	s.fill()
	s.beginAck(3)()
	if got := s.fill(); got != 3 {
		t.Fatalf("after a read of 3, %d more were stored", got)
	}
}
