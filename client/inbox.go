package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"kez.lat/kez"
)

// DoorError is a refusal of the home server's inbox door: Code is one of
// the kez.Door* codes.
type DoorError struct {
	Code, Message string
}

func (e *DoorError) Error() string { return e.Message + " (" + e.Code + ")" }

// doorAttempt bounds one attempt of a door request. A request the broker
// took just before it closed the connection (as it does whenever a user
// JWT expires) is never answered, and nats.go does not send it again
// after reconnecting. Every door operation may be repeated (a send is
// stored once by its dedup id, a read and a stat change nothing, an ack
// removes messages up to a sequence), so an attempt unanswered this long
// is sent again until the caller's deadline.
const doorAttempt = 4 * time.Second

// doorCall asks the door to perform op for me with body and decodes its
// answer into out. A refusal is a *DoorError; no answer is ErrUnreachable.
func doorCall(ctx context.Context, nc *nats.Conn, me kez.PublicKey, op string, body []byte, out any) error {
	m, err := doorRequest(ctx, nc, me, op, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%w: inbox door answered %d bytes that are not its JSON", ErrBadRecord, len(m.Data))
	}
	return nil
}

// doorRequest asks the door to perform op for me with body and returns
// its answer. A refusal is a *DoorError; no answer is ErrUnreachable.
func doorRequest(ctx context.Context, nc *nats.Conn, me kez.PublicKey, op string, body []byte) (*nats.Msg, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var m *nats.Msg
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, doorAttempt)
		m, err = nc.RequestWithContext(actx, kez.DoorSubject(me, op), body)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, withHint(fmt.Errorf("%w: the home server's inbox door does not answer", ErrUnreachable),
				"kez-chat-server is not running or not connected to the broker; nothing was changed, try again")
		}
		return nil, fmt.Errorf("%w: inbox door: %w", ErrUnreachable, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &DoorError{Code: code, Message: m.Header.Get(micro.ErrorHeader)}
	}
	return m, nil
}

// InboxMsg is one message of the own inbox: its stream sequence, its
// sender (as the subject names it, which the door set) and the envelope.
type InboxMsg struct {
	Seq    uint64
	Sender kez.PublicKey
	Data   []byte
}

// Inbox is the own inbox of a signed-in user, reached through the home
// server's door over NC, the user's connection; Me is the user's key.
// [Client.Listen] and [Client.Send] use it; programs that hold many
// users' connections (kez-load) use it directly.
type Inbox struct {
	NC *nats.Conn
	Me kez.PublicKey
	// Commit, if set, is called once fn has taken a page of the backlog
	// and once per live message, before any of it is acked: fn may keep
	// what it takes and make it durable here, at once. An error stops
	// Drain and Follow as fn's would, and nothing taken since the last
	// commit is acked.
	Commit func() error
}

// Send hands an envelope (its wire form) to the door, which stores it if
// it passes the door's checks.
func (in Inbox) Send(ctx context.Context, wire []byte) (kez.SendReply, error) {
	var reply kez.SendReply
	err := doorCall(ctx, in.NC, in.Me, kez.DoorSend, wire, &reply)
	return reply, err
}

// read returns the unread messages after sequence after, and whether
// more follow the last one. It asks for the door's binary answer
// (kez.ParseReadReply), and for JSON from a door that refuses that
// request as malformed (a home server from before it).
func (in Inbox) read(ctx context.Context, after uint64) ([]InboxMsg, bool, error) {
	req, _ := json.Marshal(kez.ReadRequest{After: after, Format: kez.ReadFormatBinary})
	m, err := doorRequest(ctx, in.NC, in.Me, kez.DoorRead, req)
	var de *DoorError
	if errors.As(err, &de) && de.Code == kez.DoorMalformed {
		return in.readJSON(ctx, after)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the inbox: %w", err)
	}
	msgs, more, err := kez.ParseReadReply(m.Data)
	if err != nil {
		return nil, false, fmt.Errorf("%w: the inbox door's answer: %w", ErrBadRecord, err)
	}
	out, err := checkPage(after, msgs)
	return out, more, err
}

// readJSON is read with the door's JSON answer.
func (in Inbox) readJSON(ctx context.Context, after uint64) ([]InboxMsg, bool, error) {
	req, _ := json.Marshal(kez.ReadRequest{After: after})
	var reply kez.ReadReply
	if err := doorCall(ctx, in.NC, in.Me, kez.DoorRead, req, &reply); err != nil {
		return nil, false, fmt.Errorf("read the inbox: %w", err)
	}
	msgs := make([]kez.ReadMsg, len(reply.Msgs))
	for i, m := range reply.Msgs {
		k, err := kez.ParsePublicKeyHex(m.Sender)
		if err != nil {
			return nil, false, fmt.Errorf("%w: the inbox door answered a message it should not", ErrBadRecord)
		}
		copy(msgs[i].Sender[:], k.Bytes())
		msgs[i].Seq, msgs[i].Data = m.Seq, m.Data
	}
	out, err := checkPage(after, msgs)
	return out, reply.More, err
}

// checkPage checks a page of the door's answer to a read after
// sequence after: every sender a valid key (checked in full once a page:
// a page holds many messages of few senders), every sequence past after
// and rising.
func checkPage(after uint64, msgs []kez.ReadMsg) ([]InboxMsg, error) {
	out := make([]InboxMsg, 0, len(msgs))
	senders := map[[32]byte]kez.PublicKey{}
	for _, m := range msgs {
		sender, ok := senders[m.Sender]
		if !ok {
			k, err := kez.NewPublicKey(m.Sender[:])
			if err != nil {
				return nil, fmt.Errorf("%w: the inbox door answered a message it should not", ErrBadRecord)
			}
			sender, senders[m.Sender] = k, k
		}
		if m.Seq <= after {
			return nil, fmt.Errorf("%w: the inbox door answered a message it should not", ErrBadRecord)
		}
		out = append(out, InboxMsg{m.Seq, sender, m.Data})
		after = m.Seq
	}
	return out, nil
}

// Ack removes m and every earlier message of its sender: the caller has
// stored (or dropped) them, in order.
func (in Inbox) Ack(ctx context.Context, m InboxMsg) error {
	req, _ := json.Marshal(kez.AckRequest{Sender: m.Sender.Hex(), Seq: m.Seq})
	var reply struct{}
	if err := doorCall(ctx, in.NC, in.Me, kez.DoorAck, req, &reply); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// Unread counts the unread messages.
func (in Inbox) Unread(ctx context.Context) (uint64, error) {
	var reply kez.StatReply
	err := doorCall(ctx, in.NC, in.Me, kez.DoorStat, nil, &reply)
	return reply.Unread, err
}

// Drain passes every unread message to fn in stream order, page by page,
// until the inbox is read to its end (as the answering replica knows it),
// and acks what fn took: after each page, one ack per sender up to its
// last message taken. A message for which fn fails, and every later one,
// stays unread; one for which fn returns [ErrHoldSender] stays unread with
// every later message of its sender, which fn is not asked about again,
// and Drain goes on with the other senders' messages.
//
// The round trips overlap: the next page is read while fn takes this one,
// and a page's acks are on their way while fn takes the next page (an ack
// still comes only after fn took every message it covers; one page's
// acks at a time). Nothing Drain started outlives it.
func (in Inbox) Drain(ctx context.Context, fn func(InboxMsg) error) error {
	type page struct {
		ms   []InboxMsg
		more bool
		err  error
	}
	readAfter := func(after uint64) chan page {
		ch := make(chan page, 1)
		go func() {
			ms, more, err := in.read(ctx, after)
			ch <- page{ms, more, err}
		}()
		return ch
	}
	var acked chan error // the previous page's acks; nil: none on their way
	waitAcks := func() error {
		if acked == nil {
			return nil
		}
		err := <-acked
		acked = nil
		return err
	}
	held := map[kez.PublicKey]bool{} // senders fn held
	next := readAfter(0)
	for {
		p := <-next
		next = nil
		if p.err != nil {
			return errors.Join(p.err, waitAcks())
		}
		if p.more && len(p.ms) > 0 {
			next = readAfter(p.ms[len(p.ms)-1].Seq)
		}
		last := map[kez.PublicKey]InboxMsg{}
		var err error
		heldHere := false
		for _, m := range p.ms {
			if held[m.Sender] {
				continue // not a message of this sender is acked past the held one
			}
			if err = fn(m); errors.Is(err, ErrHoldSender) {
				held[m.Sender], heldHere, err = true, true, nil
				continue
			}
			if err != nil {
				break
			}
			last[m.Sender] = m
		}
		// A page of held messages only is committed too: fn may have
		// kept something to report.
		if (len(last) > 0 || heldHere) && in.Commit != nil {
			if cerr := in.Commit(); cerr != nil {
				if !errors.Is(err, cerr) { // fn's own, from a commit of its own
					err = errors.Join(err, cerr)
				}
				clear(last) // nothing of the page is stored: nothing is acked
			}
		}
		if aerr := waitAcks(); aerr != nil {
			err = errors.Join(err, aerr)
		} else if len(last) > 0 {
			acked = make(chan error, 1)
			go func(done chan<- error) {
				var err error
				for _, m := range last {
					if err = in.Ack(ctx, m); err != nil {
						break
					}
				}
				done <- err
			}(acked)
		}
		if err != nil || next == nil {
			if next != nil {
				<-next // the page read ahead is not taken
			}
			return errors.Join(err, waitAcks())
		}
	}
}

// resyncEvery is how often a following client reads its inbox even when
// nothing says it missed a message: the stream's live republish can miss
// one stored around a leader change, and a missed last message of a
// sender would otherwise wait for the next reconnect.
const resyncEvery = 2 * time.Minute

// Follow passes every message of the inbox to fn, in order per sender,
// and acks each one fn took (live ones in the background, per sender up
// to the last one taken; see acker), until ctx ends (nil) or fn fails
// (that message stays unread). A backlog read returns what fn took
// until its ack is through: Follow knows the last takenRemembered
// messages fn took by their content and passes them once, but fn must
// still take a message once by its id (Listen does, by the envelope's
// dedup key). A sequence is no proof of a message taken: the inbox
// stream's sequences start again when it is made again (lost, or
// restored from a backup). A sender fn holds ([ErrHoldSender]) is tried again
// at the next backlog read, which comes within holdFirst, a wait
// doubled up to holdMax while a sender stays held; meanwhile its
// messages stay unread and the other senders' go on. It reads the
// backlog at start, after every reconnect and whenever the live feed
// shows a gap, and otherwise takes messages as the stream republishes
// them to the own kez.live.<hex>.* subjects.
//
// A live message is taken only with the republish headers of the own
// inbox (Nats-Stream and a Nats-Subject of kez.inbox.<own hex>.<sender>
// matching its subject): anyone may send a request whose reply subject is
// this user's live subject, and the answer that lands there must not pass
// for a message. It is taken directly only if the previous message of its
// sender (Nats-Last-Sequence) has been handled; otherwise the backlog is
// read first. The backlog may come from a stream replica that lags: then
// it is read again shortly until it holds what the live feed announced.
func (in Inbox) Follow(ctx context.Context, fn func(InboxMsg) error) error {
	live := make(chan *nats.Msg, 1024)
	sub, err := in.NC.ChanSubscribe(kez.LiveFilter(in.Me), live)
	if err != nil {
		return fmt.Errorf("follow the inbox: %w", err)
	}
	defer sub.Unsubscribe()
	slow := sub.StatusChanged(nats.SubscriptionSlowConsumer)
	status := in.NC.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer in.NC.RemoveStatusListener(status)

	done := map[kez.PublicKey]uint64{}   // the sequence of the message last handled, per sender
	wanted := map[kez.PublicKey]uint64{} // announced live, not yet read
	held := map[kez.PublicKey]bool{}     // held by fn until the next backlog read
	taken := newTakenSet(takenRemembered)
	handle := func(m InboxMsg) error {
		sum := taken.sum(m.Data)
		if m.Seq <= done[m.Sender] && taken.has(sum) {
			return nil // taken already: a backlog read before its ack was through
		}
		if err := fn(m); err != nil {
			if errors.Is(err, ErrHoldSender) {
				// Its messages, live ones too, wait for the backlog
				// read that tries the sender again.
				held[m.Sender] = true
			}
			return err
		}
		taken.add(sum)
		if m.Seq < done[m.Sender] { // sequences began again: the stream was made again
			delete(wanted, m.Sender)
		}
		done[m.Sender] = m.Seq
		if wanted[m.Sender] <= m.Seq {
			delete(wanted, m.Sender)
		}
		return nil
	}
	actx, stopAcks := context.WithCancel(ctx)
	acks := in.startAcker(actx)
	defer acks.wait()
	defer stopAcks()
	retry := time.NewTimer(0) // the first backlog read
	defer retry.Stop()
	due := time.Now()                // when retry fires; zero once it has
	after := func(d time.Duration) { // read the backlog within d
		if at := time.Now().Add(d); due.IsZero() || at.Before(due) {
			retry.Reset(d)
			due = at
		}
	}
	backoff, holdWait := 50*time.Millisecond, holdFirst
	resync := func() error {
		clear(held) // every held sender is tried again
		if err := in.Drain(ctx, handle); err != nil {
			return err
		}
		next := resyncEvery + rand.N(resyncEvery/4)
		lagging := false // a lagging replica answered
		for sender := range wanted {
			lagging = lagging || !held[sender] // a held sender waits for holdWait
		}
		if lagging {
			next, backoff = backoff, min(2*backoff, 2*time.Second)
		} else {
			backoff = 50 * time.Millisecond
		}
		if len(held) > 0 {
			next, holdWait = min(next, holdWait), min(2*holdWait, holdMax)
		} else {
			holdWait = holdFirst
		}
		after(next)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-status:
			if s == nats.CLOSED {
				return fmt.Errorf("follow the inbox: %w", nats.ErrConnectionClosed)
			}
			after(0)
		case <-slow:
			after(0)
		case <-retry.C:
			due = time.Time{}
			if err := resync(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if !transient(err) {
					return err
				}
				after(time.Second) // the door, the broker or its store is away
			}
		case m := <-live:
			im, last, ok := in.liveMsg(m)
			if !ok {
				continue
			}
			// Taken directly only if it follows the message handled
			// last (last: its sender's previous message in the stream;
			// 0 once the ones before were acked away); else the backlog
			// read takes it, and what the live feed missed before it.
			if d := done[im.Sender]; held[im.Sender] || (last != d && (last != 0 || im.Seq <= d)) {
				if im.Seq <= d { // the stream was made again: what was wanted is gone
					delete(wanted, im.Sender)
				}
				wanted[im.Sender] = max(wanted[im.Sender], im.Seq)
				if !held[im.Sender] {
					after(0)
				}
				continue
			}
			err := handle(im)
			hold := errors.Is(err, ErrHoldSender)
			if err != nil && !hold {
				return err
			}
			if in.Commit != nil { // what fn took, or what it has to say of a hold
				if err := in.Commit(); err != nil {
					return err
				}
			}
			if hold {
				after(holdWait)
				continue
			}
			acks.add(im)
		case <-acks.failed:
			// Still unread: read (and taken as a repeat) again later.
			after(time.Second)
		}
	}
}

// takenRemembered is how many of the messages it took lately a
// follower knows by their content: a backlog read returns those whose
// ack is not through yet, and they are not passed to fn again.
const takenRemembered = 4096

// takenSet remembers the last messages a follower took, by a hash of
// their content (an envelope holds a random id, so content is identity).
// A sequence alone is no proof: the stream's sequences begin again when
// it is made again.
type takenSet struct {
	seed maphash.Seed
	ring []uint64
	next int
	set  map[uint64]struct{}
}

func newTakenSet(n int) *takenSet {
	return &takenSet{seed: maphash.MakeSeed(), ring: make([]uint64, 0, n), set: make(map[uint64]struct{}, n)}
}

func (t *takenSet) sum(data []byte) uint64 { return maphash.Bytes(t.seed, data) }

func (t *takenSet) has(sum uint64) bool {
	_, ok := t.set[sum]
	return ok
}

// add remembers sum, forgetting the oldest once full.
func (t *takenSet) add(sum uint64) {
	if len(t.ring) < cap(t.ring) {
		t.ring = append(t.ring, sum)
	} else {
		delete(t.set, t.ring[t.next])
		t.ring[t.next] = sum
		t.next = (t.next + 1) % len(t.ring)
	}
	t.set[sum] = struct{}{}
}

// holdFirst and holdMax bound the wait of a follower before it tries a
// held sender again (see ErrHoldSender): the wait doubles while the
// sender stays held. A home server replica whose projection lags catches
// up within seconds; a sender that stays unknown costs one look-up a
// minute.
const (
	holdFirst = time.Second
	holdMax   = time.Minute
)

// ackFlush bounds the acks a follower still sends when it stops.
const ackFlush = 2 * time.Second

// acker acknowledges in the background what a follower took live: per
// sender, one ack up to the last message taken, however many arrived
// while the previous ack was on its way. The next live message never
// waits for an ack's round trip, and a burst from one sender costs one
// purge (one write to the store) instead of one per message. An ack
// comes only after fn took the message; one that fails leaves the
// messages unread, to be read again (and taken as repeats) by the
// backlog read that a value on failed asks for.
type acker struct {
	in     Inbox
	kick   chan struct{}
	failed chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	pending map[kez.PublicKey]InboxMsg // the last message taken, per sender
}

// startAcker acks on a goroutine until ctx ends, then sends what is
// pending within ackFlush; wait waits for that.
func (in Inbox) startAcker(ctx context.Context) *acker {
	a := &acker{in: in, kick: make(chan struct{}, 1), failed: make(chan struct{}, 1), done: make(chan struct{}),
		pending: map[kez.PublicKey]InboxMsg{}}
	go func() {
		defer close(a.done)
		for {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackFlush)
				a.flush(fctx)
				cancel()
				return
			case <-a.kick:
				a.flush(ctx)
			}
		}
	}()
	return a
}

// add asks for m, and every earlier message of its sender, to be acked.
func (a *acker) add(m InboxMsg) {
	a.keep(m)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// flush acks everything pending.
func (a *acker) flush(ctx context.Context) {
	a.mu.Lock()
	ms := a.pending
	a.pending = map[kez.PublicKey]InboxMsg{}
	a.mu.Unlock()
	for _, m := range ms {
		if err := a.in.Ack(ctx, m); err != nil {
			// Pending again (unless a later message of the sender is),
			// so that an ack cut short when the follower stops is sent
			// by the last flush.
			a.keep(m)
			select {
			case a.failed <- struct{}{}:
			default:
			}
		}
	}
}

// keep makes m pending unless a later message of its sender is.
func (a *acker) keep(m InboxMsg) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[m.Sender]; !ok || p.Seq < m.Seq {
		a.pending[m.Sender] = m
	}
}

// wait waits until the acker, its ctx ended, has sent what was pending.
func (a *acker) wait() { <-a.done }

// transient reports whether err is the door or its store being away for
// now (unreachable, or "unavailable"), which a follower waits out.
func transient(err error) bool {
	var (
		de *DoorError
		ce *commitError
	)
	if errors.As(err, &ce) { // whatever else went wrong with it
		return false
	}
	return errors.Is(err, ErrUnreachable) || (errors.As(err, &de) && (de.Code == kez.DoorUnavailable || de.Code == kez.DoorStoreUnavailable))
}

// liveMsg checks a message on the own live subjects and returns it with
// the sequence of its sender's previous message (0: none kept). Each
// header the broker's republish sets must appear once (brokerHeader).
func (in Inbox) liveMsg(m *nats.Msg) (InboxMsg, uint64, bool) {
	sender, err := kez.InboxSender(m.Subject)
	if err != nil {
		return InboxMsg{}, 0, false
	}
	stream, ok1 := brokerHeader(m.Header, jetstream.StreamHeader)
	subject, ok2 := brokerHeader(m.Header, jetstream.SubjectHeader)
	seqText, ok3 := brokerHeader(m.Header, jetstream.SequenceHeader)
	lastText, ok4 := brokerHeader(m.Header, "Nats-Last-Sequence")
	if !ok1 || !ok2 || !ok3 || !ok4 || stream != kez.InboxStream || subject != kez.InboxMsgSubject(in.Me, sender) {
		return InboxMsg{}, 0, false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 {
		return InboxMsg{}, 0, false
	}
	last, err := strconv.ParseUint(lastText, 10, 64)
	if err != nil {
		last = 0
	}
	return InboxMsg{seq, sender, m.Data}, last, true
}

// brokerHeader returns the value of a header that the broker sets on a
// republished message or a direct get's answer (Nats-Stream,
// Nats-Subject, Nats-Sequence, Nats-Time-Stamp, Nats-Last-Sequence), ""
// if there is none, and false if there are several. The broker keeps
// the headers a message was stored with and appends its own after them,
// and a user may store any header in her own presence entry: pointing a
// direct get of that entry at another user's live subject delivers her
// forged Nats-Stream or Nats-Sequence there, first, followed by the
// broker's. Such a header appears twice, and the message is nobody's.
func brokerHeader(h nats.Header, key string) (string, bool) {
	switch v := h.Values(key); len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}
