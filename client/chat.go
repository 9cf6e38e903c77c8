package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/message"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
)

// conn returns the broker connection, connecting on first use.
func (c *Client) conn(a Account, key *kez.PrivateKey) (*nats.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		return c.nc, nil
	}
	if !c.cfg.Insecure {
		if err := checkNATSURLs(a.NATSURL); err != nil {
			return nil, err
		}
	}
	opts := append([]nats.Option{nats.Timeout(5 * time.Second)}, c.cfg.NATSOptions...)
	nc, err := ConnectNATS(a.NATSURL, key, opts...)
	if err != nil {
		return nil, withHint(fmt.Errorf("%w: %w", ErrUnreachable, err),
			"is the broker running? the account's NATS URL is "+a.NATSURL)
	}
	c.nc = nc
	return nc, nil
}

// SendOptions tune [Client.Send].
type SendOptions struct {
	// NoRefresh skips asking the contact's server for the current key and
	// sigchain before sending (a known contact's pinned state is used as
	// it is); for bulk sends after one refresh.
	NoRefresh bool
}

// Send encrypts pt to contact h and publishes it to h's inbox through
// JetStream; it returns once JetStream has stored it, and records it in
// the history. A handle that is not a contact yet is resolved and pinned
// first (trust on first use). Sending is refused with [ErrKeyChanged]
// while the contact's key differs from the pinned one, with
// [ErrChainChanged] if its sigchain lost pinned events, and with
// [ErrFederation] for a contact of another domain.
func (c *Client) Send(ctx context.Context, h kez.Handle, pt message.Plaintext, opts SendOptions) (Entry, error) {
	a, key, err := c.account()
	if err != nil {
		return Entry{}, err
	}
	ct, err := c.sendContact(ctx, a, h, opts)
	if err != nil {
		return Entry{}, err
	}
	env, wire, err := message.Seal(c.identity(key), ct.Key, pt, c.cfg.Now(), c.cfg.Rand)
	if err != nil {
		return Entry{}, err
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return Entry{}, err
	}
	js, err := JetStream(nc)
	if err != nil {
		return Entry{}, err
	}
	pctx, cancel := withTimeout(ctx)
	defer cancel()
	// The message id makes a retried publish a duplicate JetStream drops
	// (within the stream's duplicate window).
	if _, err := js.Publish(pctx, streams.InboxSubject(ct.Key), wire, jetstream.WithMsgID(env.DedupKey())); err != nil {
		return Entry{}, publishError(h, err)
	}
	e := entryOf(DirOut, ct.Handle, ct.Key, env, pt, c.cfg.Now())
	unlock, err := c.p.lock(false)
	if err != nil {
		return e, err
	}
	defer unlock()
	return e, c.p.appendHistoryLocked(e)
}

// sendContact returns contact h, ready to be sent to: pinned first if
// it is not a contact yet, refreshed (unless opts.NoRefresh), refused
// while its key changed or for another domain.
func (c *Client) sendContact(ctx context.Context, a Account, h kez.Handle, opts SendOptions) (Contact, error) {
	ct, err := c.p.Contact(h)
	switch {
	case errors.Is(err, ErrNotContact):
		if ct, _, err = c.Add(ctx, h); err != nil {
			return ct, err
		}
	case err != nil:
		return ct, err
	case ct.ChangedKey != nil:
		return ct, keyChangedError(ct)
	case !opts.NoRefresh:
		if ct, err = c.Refresh(ctx, ct); err != nil {
			return ct, err
		}
	}
	if ct.Handle.Domain() != a.Handle.Domain() {
		return ct, withHint(fmt.Errorf("@%s: %w", h, ErrFederation),
			"users of "+ct.Handle.Domain()+" are reached through their own broker; cross-domain delivery is not built yet")
	}
	return ct, nil
}

func publishError(h kez.Handle, err error) error {
	if strings.Contains(err.Error(), "maximum messages") {
		return withHint(fmt.Errorf("@%s's inbox refused the message: %w", h, err), "the inbox may be full; try again after @"+h.String()+" has read it")
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
		return withHint(fmt.Errorf("%w: publish to @%s's inbox: %w", ErrUnreachable, h, err), "the broker or its JetStream did not answer; nothing was stored, try again")
	}
	return fmt.Errorf("publish to @%s's inbox: %w", h, err)
}

// SendText sends a text message; see [Client.Send].
func (c *Client) SendText(ctx context.Context, h kez.Handle, text string) (Entry, error) {
	return c.Send(ctx, h, message.Text(text), SendOptions{})
}

func entryOf(dir string, peer kez.Handle, peerKey kez.PublicKey, env message.Envelope, pt message.Plaintext, now time.Time) Entry {
	e := Entry{Dir: dir, Peer: peer, PeerKey: peerKey, ID: env.ID.String(), SentAt: env.Timestamp,
		StoredAt: now.Unix(), Type: pt.Type(), Body: pt.Body(), Plaintext: pt.Raw()}
	if dir == DirIn {
		e.Dedup = env.DedupKey()
	}
	return e
}

// History returns the stored messages exchanged with h (all if h is
// zero), oldest first. A message signed by a key the user has not trusted
// for its contact comes back [Entry.Quarantined], without its content.
func (c *Client) History(h kez.Handle) ([]Entry, error) {
	if _, _, err := c.account(); err != nil {
		return nil, err
	}
	es, err := c.p.History(h)
	if err != nil {
		return nil, err
	}
	cs, err := c.p.Contacts()
	if err != nil {
		return nil, err
	}
	pinned := make(map[kez.Handle]kez.PublicKey, len(cs))
	for _, ct := range cs {
		pinned[ct.Handle] = ct.Key
	}
	for i := range es {
		es[i].quarantine(pinned[es[i].Peer])
	}
	return es, nil
}

// Event is what [Client.Listen] reports for one inbox message: an
// accepted message (Entry, stored before the ack) or a dropped one
// (Dropped, acked and not stored).
type Event struct {
	Entry   *Entry
	Dropped *Dropped
}

// Dropped is an inbox message that failed a check. It was acked, so it
// cannot block the inbox, and it is never shown as genuine.
type Dropped struct {
	Seq    uint64 `json:"seq"`            // stream sequence
	From   string `json:"from,omitempty"` // the sender it claims, if it parsed
	Reason string `json:"reason"`
}

// ListenOptions tune [Client.Listen].
type ListenOptions struct {
	// Once returns when the inbox is empty instead of following it.
	Once bool
	// Max returns after this many accepted messages (0: no limit).
	Max int
}

// Listen follows the own inbox until ctx ends (or, with Once, until the
// inbox is empty): each message is parsed, checked (addressed to this
// key, signed by the pinned key of its sender, decrypts), deduplicated by
// sender and id, stored in the history (synced to disk), then acked, and
// reported to fn in inbox order. A message from an unknown sender is
// accepted if the home server names a handle for its key, whose key is
// then pinned (WarnNewContact); one from a contact's new key is shown
// with WarnKeyChanged and the change recorded, so sends stay refused
// until [Client.Trust]. Anything failing a check is acked and reported as
// Dropped. Only one Listen runs per profile ([ErrListening]). A failure
// to store or to reach the home server stops Listen without acking the
// message, which the broker delivers again later.
func (c *Client) Listen(ctx context.Context, opts ListenOptions, fn func(Event)) error {
	a, key, err := c.account()
	if err != nil {
		return err
	}
	unlock, err := c.p.tryListenLock()
	if err != nil {
		return withHint(err, "stop the other `kez-chat listen` first")
	}
	defer unlock()
	seen := map[string]bool{}
	if err := c.p.scanHistory(func(e Entry) {
		if e.Dir == DirIn {
			seen[e.Dedup] = true
		}
	}); err != nil {
		return err
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return err
	}
	js, err := JetStream(nc)
	if err != nil {
		return err
	}
	cctx, cancel := withTimeout(ctx)
	cons, err := js.Consumer(cctx, streams.InboxStream, streams.InboxConsumer(a.Primary))
	cancel()
	if err != nil {
		return withHint(fmt.Errorf("bind to the inbox: %w", err), "the home server creates the inbox at registration and at sign-in; try again")
	}
	r := &receiver{c: c, a: a, key: key, seen: seen, fn: fn}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = nc.FlushWithContext(fctx)
	}()
	accepted := 0
	handle := func(m jetstream.Msg) (bool, error) {
		ok, err := r.handle(ctx, m)
		if ok {
			accepted++
		}
		return opts.Max > 0 && accepted >= opts.Max, err
	}
	if opts.Once {
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			var ms []jetstream.Msg
			for m := range batch.Messages() {
				ms = append(ms, m)
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return fmt.Errorf("fetch: %w", err)
			}
			for i, m := range ms {
				// The last ack of a batch waits for the broker's answer: the
				// consumer takes acks in order, so when --once returns
				// every ack has been applied and a status right after
				// counts none of these messages as unread.
				r.syncAck = i == len(ms)-1
				if done, err := handle(m); err != nil || done {
					return err
				}
			}
			if len(ms) == 0 {
				return nil
			}
		}
	}
	err = FollowInbox(ctx, nc, cons, func(m jetstream.Msg) error {
		done, err := handle(m)
		if err == nil && done {
			err = errListenDone
		}
		return err
	})
	if errors.Is(err, errListenDone) {
		return nil
	}
	return err
}

// errListenDone ends FollowInbox once Listen has its Max messages.
var errListenDone = errors.New("listen: done")

// receiver is the state of one Listen.
type receiver struct {
	c    *Client
	a    Account
	key  *kez.PrivateKey
	seen map[string]bool
	fn   func(Event)
	// syncAck makes the next ack wait for the broker's confirmation.
	syncAck bool
}

// handle processes one message; it reports whether it was accepted. An
// error means the message was left unacked.
func (r *receiver) handle(ctx context.Context, m jetstream.Msg) (bool, error) {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	drop := func(from, why string) (bool, error) {
		if err := r.ack(ctx, m); err != nil {
			return false, err
		}
		if r.fn != nil {
			r.fn(Event{Dropped: &Dropped{Seq: seq, From: from, Reason: why}})
		}
		return false, nil
	}
	env, err := r.c.identity(r.key).Parse(m.Data())
	if err != nil {
		return drop("", "malformed envelope: "+err.Error())
	}
	from := env.From.String()
	if !env.To.Equal(r.a.Primary) {
		return drop(from, "addressed to another key ("+env.To.String()+")")
	}
	ct, warning, err := r.sender(ctx, env.From)
	if err != nil {
		if errors.Is(err, kez.ErrNotFound) {
			return drop(from, "the sender's key has no handle on the home server")
		}
		if errors.Is(err, ErrBadRecord) {
			return drop(from, err.Error())
		}
		return false, fmt.Errorf("identify the sender of message %d: %w", seq, err)
	}
	// A pinned contact's message opens with the pinned key (the same as
	// From, which sender matched); any other key is the one the home
	// server names for the handle, and what it signs is quarantined.
	pinned := ct.Key
	if warning == WarnKeyChanged {
		pinned = env.From
	}
	pt, err := env.Open(r.c.identity(r.key), pinned)
	if errors.Is(err, message.ErrClosed) { // the client closed meanwhile: not the message's fault
		return false, fmt.Errorf("open message %d: %w", seq, err)
	}
	if err != nil {
		return drop(from, fmt.Sprintf("claims to be from @%s but %v", ct.Handle, err))
	}
	// Only now is the sender authentic, and so its dedup key meaningful.
	dk := env.DedupKey()
	if r.seen[dk] {
		return false, r.ack(ctx, m)
	}
	e := entryOf(DirIn, ct.Handle, env.From, env, pt, r.c.cfg.Now())
	e.Warning = warning
	if err := r.store(ct, warning, e); err != nil {
		return false, err
	}
	r.seen[dk] = true
	if err := r.ack(ctx, m); err != nil {
		return false, err
	}
	if r.fn != nil {
		e.quarantine(ct.Key)
		r.fn(Event{Entry: &e})
	}
	return true, nil
}

// ack acknowledges m. The ack is not waited for (unless syncAck): one
// lost on the way only means the broker delivers the message again, and
// the dedup key stored with it makes the second delivery a silent ack.
// Listen flushes the connection before it returns, so the acks of a
// --once run reach the broker.
func (r *receiver) ack(ctx context.Context, m jetstream.Msg) error {
	var err error
	if r.syncAck {
		actx, cancel := withTimeout(ctx)
		err = m.DoubleAck(actx)
		cancel()
	} else {
		err = m.Ack()
	}
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// sender returns the contact that key belongs to, and the warning the
// message must carry: a pinned contact's key has none; otherwise the home
// server names the key's handle, which is a contact whose key changed
// (the message is quarantined) or a new contact, pinned once the message
// opens the way [Client.Add] pins one: the handle resolves back to the
// key and its sigchain verifies.
func (r *receiver) sender(ctx context.Context, key kez.PublicKey) (Contact, string, error) {
	cs, err := r.c.p.Contacts()
	if err != nil {
		return Contact{}, "", err
	}
	for _, ct := range cs {
		if ct.Key.Equal(key) {
			return ct, "", nil
		}
	}
	home, err := r.c.home()
	if err != nil {
		return Contact{}, "", err
	}
	rec, err := home.Key(ctx, key)
	if err != nil {
		return Contact{}, "", err
	}
	if !rec.Primary.Equal(key) {
		return Contact{}, "", fmt.Errorf("%w: asked for the handle of %s, the server named %s's", ErrBadRecord, key, rec.Primary)
	}
	for _, ct := range cs {
		if ct.Handle == rec.Handle {
			return ct, WarnKeyChanged, nil
		}
	}
	back, st, err := r.c.resolve(ctx, rec.Handle, sigchain.Pin{})
	switch {
	case sigUnreachable(err):
		// The chain is pinned at the first look that reaches it.
		back, st = rec, sigchain.State{Key: rec.Primary}
	case errors.Is(err, kez.ErrBadSignature), errors.Is(err, kez.ErrInvalidRequest),
		errors.Is(err, sigchain.ErrWrongSeqno), errors.Is(err, sigchain.ErrWrongPrev):
		// The chain the server shows for the handle does not verify.
		return Contact{}, "", fmt.Errorf("%w: %w", ErrBadRecord, err)
	case err != nil:
		return Contact{}, "", err
	}
	rec = back
	if !rec.Primary.Equal(key) {
		return Contact{}, "", fmt.Errorf("%w: %s is @%s's key by its key, %s by its handle", ErrBadRecord, key, rec.Handle, rec.Primary)
	}
	return Contact{Handle: rec.Handle, Key: rec.Primary, Server: home.BaseURL, NATSURL: rec.NATSURL,
		AddedAt: r.c.cfg.Now().Unix(), Chain: st}, WarnNewContact, nil
}

// store records e, and the contact change its warning implies, under the
// profile lock.
func (r *receiver) store(ct Contact, warning string, e Entry) error {
	unlock, err := r.c.p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	switch warning {
	case WarnNewContact:
		err = r.c.p.updateContactsLocked(func(cs []Contact) ([]Contact, error) {
			for _, o := range cs {
				if o.Handle == ct.Handle {
					return cs, nil // added meanwhile
				}
			}
			return append(cs, ct), nil
		})
	case WarnKeyChanged:
		err = r.c.p.updateContactsLocked(func(cs []Contact) ([]Contact, error) {
			for i := range cs {
				if cs[i].Handle == ct.Handle && !cs[i].Key.Equal(e.PeerKey) {
					k := e.PeerKey
					cs[i].ChangedKey, cs[i].ChangedAt = &k, r.c.cfg.Now().Unix()
				}
			}
			return cs, nil
		})
	}
	if err != nil {
		return err
	}
	return r.c.p.appendHistoryLocked(e)
}

// Status is an overview of the profile and its connections.
type Status struct {
	Profile string  `json:"profile"`
	Account Account `json:"account"`
	// Server is the home server; ServerError why it did not answer.
	Server      string `json:"server"`
	ServerError string `json:"server_error,omitempty"`
	// NATSError is why the broker could not be reached or the inbox not
	// read; Unread counts the messages waiting in the inbox.
	NATSError string `json:"nats_error,omitempty"`
	Unread    uint64 `json:"unread"`
	Contacts  int    `json:"contacts"`
	// KeyChanged lists the contacts whose key changed (sending refused).
	KeyChanged []string `json:"key_changed"`
}

// Status checks the home server and the broker and counts unread
// messages; failures to reach either are reported in the Status, not as
// an error.
func (c *Client) Status(ctx context.Context) (Status, error) {
	a, key, err := c.account()
	if err != nil {
		return Status{}, err
	}
	st := Status{Profile: c.p.Dir, Account: a, KeyChanged: []string{}}
	st.Server, _ = c.server()
	if err := (Home{BaseURL: st.Server, HTTP: c.cfg.HTTP}).Health(ctx); err != nil {
		st.ServerError = err.Error()
	}
	cs, err := c.p.Contacts()
	if err != nil {
		return st, err
	}
	st.Contacts = len(cs)
	for _, ct := range cs {
		if ct.ChangedKey != nil {
			st.KeyChanged = append(st.KeyChanged, ct.Handle.String())
		}
	}
	nc, err := c.conn(a, key)
	if err != nil {
		st.NATSError = err.Error()
		return st, nil
	}
	js, err := JetStream(nc)
	if err == nil {
		cctx, cancel := withTimeout(ctx)
		defer cancel()
		var cons jetstream.Consumer
		if cons, err = js.Consumer(cctx, streams.InboxStream, streams.InboxConsumer(a.Primary)); err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(cctx); err == nil {
				st.Unread = info.NumPending + uint64(info.NumAckPending)
			}
		}
	}
	if err != nil {
		st.NATSError = err.Error()
	}
	return st, nil
}
