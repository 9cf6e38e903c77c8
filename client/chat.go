package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/message"
	"kez.lat/kez/sigchain"
)

// conn returns the broker connection, connecting on first use. The dial
// (up to nats.Timeout per URL, seconds while the broker is unreachable)
// runs outside c.mu, so that local calls (contacts, history, the chat's
// screen) never wait for it; dialMu keeps it to one dial at a time, and
// its result is published under c.mu. A connection dialed while
// [Client.Close] ran is closed, not kept: Close ends what was under way,
// as it did when the dial held c.mu.
func (c *Client) conn(a Account, key *kez.PrivateKey) (*nats.Conn, error) {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	nc, gen := c.nc, c.closes
	c.mu.Unlock()
	if nc != nil {
		return nc, nil
	}
	if !c.cfg.Insecure {
		if err := checkNATSURLs(a.NATSURL); err != nil {
			return nil, err
		}
	}
	opts := append([]nats.Option{nats.Timeout(5 * time.Second)}, c.cfg.NATSOptions...)
	nc, err := ConnectNATS(a.NATSURL, key, opts...)
	if errors.Is(err, ErrSignInUnanswered) {
		return nil, withHint(fmt.Errorf("the broker did not answer @%s's sign-in: %w", a.Handle, err),
			"the home server's sign-in service (kez-chat-server) may be down or overloaded, or this address throttled after many failed sign-ins: try again in a minute",
			"kez-chat doctor says more; if it persists, tell the operator")
	}
	if errors.Is(err, nats.ErrAuthorization) {
		// The broker says no more than this; the home server knows why.
		return nil, withHint(fmt.Errorf("the broker refused @%s's sign-in: %w", a.Handle, err),
			"too many connections of this account may be open at once (the home server allows a few: listen, a chat window, some sends); close some and try again",
			"or the key is not registered at the home server any more: kez-chat whoami, kez-chat status")
	}
	if err != nil {
		return nil, withHint(fmt.Errorf("%w: %w", ErrUnreachable, err),
			"is the broker running? the account's NATS URL is "+a.NATSURL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closes != gen {
		nc.Close()
		return nil, nats.ErrConnectionClosed
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
	// NoHistory does not record the message in the history (receipts).
	NoHistory bool
}

// Send encrypts pt to contact h and hands it to the home server's inbox
// door, which checks it and stores it in h's inbox; it returns once it is
// stored, and records it in the history: if that fails, the message was
// delivered all the same, and the error wraps [ErrSentNotRecorded] (the
// Entry comes with it). A handle that is not a contact yet is resolved and pinned
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
	// The door stores the message under its id: a send retried after a
	// lost answer is stored once (within the stream's duplicate window).
	in := Inbox{NC: nc, Me: a.Primary}
	_, err = in.Send(ctx, wire)
	if transient(err) { // stored at most once: the door dedups by id
		_, err = in.Send(ctx, wire)
	}
	if err != nil {
		return Entry{}, sendError(h, err)
	}
	e := entryOf(DirOut, ct.Handle, ct.Key, env, pt, c.cfg.Now())
	if opts.NoHistory {
		return e, nil
	}
	if err := c.record(e); err != nil {
		// Stored at the door: an error that reads as a failed send
		// would have the user send it again, and h receive it twice.
		return e, withHint(fmt.Errorf("to @%s: %w: %w", h, ErrSentNotRecorded, err),
			"the message was delivered; it is not in your history on this device: do not send it again")
	}
	return e, nil
}

// record appends e to the history.
func (c *Client) record(e Entry) error {
	unlock, err := c.p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	return c.p.appendHistoryLocked(e)
}

// sendContact returns contact h, ready to be sent to: refused for
// another domain, pinned first if it is not a contact yet, refreshed
// (unless opts.NoRefresh), refused while its key changed.
func (c *Client) sendContact(ctx context.Context, a Account, h kez.Handle, opts SendOptions) (Contact, error) {
	// Before anything is pinned: a contact that cannot be sent to is
	// not made one.
	if h.Domain() != a.Handle.Domain() {
		return Contact{}, withHint(fmt.Errorf("@%s: %w", h, ErrFederation),
			"users of "+h.Domain()+" are reached through their own broker; cross-domain delivery is not built yet")
	}
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
	return ct, nil
}

// sendError explains a refused or failed send to @h.
func sendError(h kez.Handle, err error) error {
	var de *DoorError
	if !errors.As(err, &de) {
		return withHint(fmt.Errorf("send to @%s: %w", h, err), "nothing was stored; try again")
	}
	err = fmt.Errorf("@%s's home server refused the message: %w", h, err)
	switch de.Code {
	case kez.DoorInboxShareFull:
		return withHint(err, "you have left @"+h.String()+" as many unread messages as one sender may; try again once they read some")
	case kez.DoorSenderQuota:
		return withHint(err, "you hold as many unread messages as one sender may, across everyone you wrote to; try again once some are read")
	case kez.DoorStoreFull, kez.DoorStoreUnavailable, kez.DoorUnavailable:
		return withHint(err, "the home server cannot store messages right now; nothing was stored, try again later")
	case kez.DoorUnknownRecipient:
		return withHint(err, "@"+h.String()+"'s key is not registered any more; kez-chat add @"+h.String()+" looks it up again")
	}
	return err
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
// accepted message (Entry, stored before the ack), a dropped one
// (Dropped, acked and not stored) or a held one (Held, left unread).
type Event struct {
	Entry   *Entry
	Dropped *Dropped
	Held    *Held
}

// Dropped is an inbox message that failed a check. It was acked, so it
// cannot block the inbox, and it is never shown as genuine.
type Dropped struct {
	Seq    uint64 `json:"seq"`            // stream sequence
	From   string `json:"from,omitempty"` // the sender it claims, if it parsed
	Reason string `json:"reason"`
}

// Held is an inbox message whose sender could not be identified: the
// home server named no handle for its key, answered a record that does
// not check out, or did not answer. The door took it from a registered
// key, and handles are never deleted, so this is a server that lags
// (a replica whose projection is behind) or fails, or an answer not to
// be believed, never a verdict on the message: it is left unread and
// unshown with every later message of its sender, and read again later
// (while following, with backoff; with Once, at the next listen). Other
// senders' messages go on. A sender is reported once per reason.
type Held struct {
	Seq    uint64 `json:"seq"`  // stream sequence
	From   string `json:"from"` // the sender's key
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
// sender and id, stored in the history (synced to disk; a backlog a page
// at a time, with one sync), then reported to fn in inbox order and
// acked. A message from an unknown sender is
// accepted if the home server names a handle for its key, whose key is
// then pinned (WarnNewContact); one from a contact's new key is shown
// with WarnKeyChanged and the change recorded, so sends stay refused
// until [Client.Trust]. Anything failing a check is acked and reported as
// Dropped. A message whose sender cannot be identified is never acked:
// it is reported as Held and read again later, and the other senders'
// messages go on. Only one Listen runs per profile ([ErrListening]). A
// failure to store or to reach the broker stops Listen without acking
// the message, which is read again later.
func (c *Client) Listen(ctx context.Context, opts ListenOptions, fn func(Event)) error {
	a, key, err := c.account()
	if err != nil {
		return err
	}
	unlock, err := c.listenLock()
	if err != nil {
		return err
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
	r := &receiver{c: c, a: a, key: key, seen: seen, taken: map[string]bool{}, told: map[kez.PublicKey]string{}, fn: fn}
	in := Inbox{NC: nc, Me: a.Primary, Commit: r.commit}
	accepted := 0
	handle := func(m InboxMsg) error {
		ok, err := r.handle(ctx, m)
		if err != nil {
			return err
		}
		if ok {
			accepted++
		}
		if opts.Max > 0 && accepted >= opts.Max {
			// Stored and acked here: the inbox acks only what comes
			// before a stop.
			if err := r.commit(); err != nil {
				return err
			}
			return errors.Join(errListenDone, in.Ack(ctx, m))
		}
		return nil
	}
	if opts.Once {
		err = in.Drain(ctx, handle)
	} else {
		err = in.Follow(ctx, handle)
	}
	if errors.Is(err, errListenDone) {
		return nil
	}
	return err
}

// HoldListener takes the profile's listen lock for this Client until
// release is called, so that a program that listens for its whole run
// (the full-screen chat) is refused at its start, with [ErrListening],
// while another listen or chat runs on the profile, and keeps the inbox
// across restarts of [Client.Listen] (after a broker outage) without
// another process taking it in between. Listen on this Client runs
// under the held lock; other processes' Listen and HoldListener fail
// with ErrListening.
func (c *Client) HoldListener() (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		return nil, withHint(ErrListening, "this client holds the listen lock already")
	}
	unlock, err := c.p.tryListenLock()
	if err != nil {
		return nil, listenLockError(err)
	}
	c.holding = true
	return sync.OnceFunc(func() {
		c.mu.Lock()
		c.holding = false
		c.mu.Unlock()
		unlock()
	}), nil
}

// listenLock takes the listen lock for one Listen, unless
// [Client.HoldListener] holds it.
func (c *Client) listenLock() (func(), error) {
	c.mu.Lock()
	held := c.holding
	c.mu.Unlock()
	if held {
		return func() {}, nil
	}
	unlock, err := c.p.tryListenLock()
	if err != nil {
		return nil, listenLockError(err)
	}
	return unlock, nil
}

func listenLockError(err error) error {
	if errors.Is(err, ErrListening) {
		return withHint(err, "stop the other `kez-chat listen` or `kez-chat chat` on this profile first (one process reads an inbox)")
	}
	return err
}

// errListenDone ends Listen once it has its Max messages.
var errListenDone = errors.New("listen: done")

// receiver is the state of one Listen. What handle takes is stored and
// reported by commit, which the inbox calls once per page of the backlog
// and per live message, before it acks them: a backlog costs one synced
// write of the history per page, not one per message (on a slow disk,
// seconds for a long backlog), and nothing is shown before it is stored.
type receiver struct {
	c    *Client
	a    Account
	key  *kez.PrivateKey
	seen map[string]bool // dedup keys of the stored messages
	fn   func(Event)

	// Taken since the last commit, in order.
	entries []Entry         // to store
	events  []Event         // to report once stored
	taken   map[string]bool // the entries' dedup keys
	pins    []pinning       // the contact changes the entries imply
	// The contacts as read since the last commit, with the new ones
	// pinned since (nil: to read again): a page of the backlog reads the
	// file once, not per message.
	contacts []Contact
	failed   error                    // a commit that failed: every later one fails so
	told     map[kez.PublicKey]string // the held senders reported, with the reason
}

// commit stores the entries taken since the last commit in the history
// (synced), with the contact changes they imply, under one lock (store),
// and then reports what was taken. If it fails, nothing taken since the
// last commit is stored (the history is cut back) or reported, and every
// later commit fails the same way: Listen stops with ErrStore, and the
// inbox acks none of it.
func (r *receiver) commit() error {
	if r.failed != nil {
		return r.failed
	}
	if err := r.store(); err != nil {
		r.failed = &commitError{err}
		return r.failed
	}
	for dk := range r.taken {
		r.seen[dk] = true
	}
	events := r.events
	r.entries, r.events, r.pins, r.contacts = r.entries[:0], nil, nil, nil
	clear(r.taken)
	if r.fn != nil {
		for _, ev := range events {
			r.fn(ev)
		}
	}
	return nil
}

// store writes the entries, then the contact changes they imply, under
// the profile lock. The history goes first: a crash between the two
// leaves the messages stored, unacked and not shown again, and their
// sender pinned by its next message (new_contact once more), never a
// contact pinned without its messages and their warning. If the contacts
// cannot be written, the history is cut back.
func (r *receiver) store() error {
	if len(r.entries) == 0 {
		return nil // pins come with entries
	}
	unlock, err := r.c.p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	size, err := r.c.p.historySizeLocked()
	if err != nil {
		return err
	}
	if err := r.c.p.appendHistoryLocked(r.entries...); err != nil {
		return err
	}
	if len(r.pins) == 0 {
		return nil
	}
	if err := r.c.p.updateContactsLocked(r.applyPins); err != nil {
		return errors.Join(err, r.c.p.cutHistoryLocked(size))
	}
	return nil
}

// commitError is a commit that failed (the profile's disk, or a contact
// pinned meanwhile by another process): never a reason to wait and read
// the inbox again (see transient).
type commitError struct{ err error }

func (e *commitError) Error() string   { return e.err.Error() }
func (e *commitError) Unwrap() []error { return []error{ErrStore, e.err} }

// handle takes one message, for commit to store and report; it reports
// whether it was accepted. An error means the message was left unacked.
func (r *receiver) handle(ctx context.Context, m InboxMsg) (bool, error) {
	seq := m.Seq
	drop := func(from, why string) (bool, error) {
		r.events = append(r.events, Event{Dropped: &Dropped{Seq: seq, From: from, Reason: why}})
		return false, nil
	}
	env, err := r.c.identity(r.key).Parse(m.Data)
	if err != nil {
		return drop("", "malformed envelope: "+err.Error())
	}
	if !env.From.Equal(m.Sender) { // the door checked it; a door that did not is not believed
		return drop(env.From.String(), "stored as from another key ("+m.Sender.String()+")")
	}
	from := env.From.String()
	if !env.To.Equal(r.a.Primary) {
		return drop(from, "addressed to another key ("+env.To.String()+")")
	}
	ct, warning, err := r.sender(ctx, env.From)
	var le *lookupError
	if errors.As(err, &le) && ctx.Err() == nil {
		return r.hold(m, from, le.err)
	}
	if err != nil {
		return false, fmt.Errorf("identify the sender of message %d: %w", seq, err)
	}
	delete(r.told, m.Sender)
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
	if r.seen[dk] || r.taken[dk] {
		return false, nil
	}
	e := entryOf(DirIn, ct.Handle, env.From, env, pt, r.c.cfg.Now())
	e.Warning = warning
	r.pin(ct, warning, e)
	r.entries = append(r.entries, e)
	r.taken[dk] = true
	e.quarantine(ct.Key)
	r.events = append(r.events, Event{Entry: &e})
	return true, nil
}

// hold leaves m, and every later message of its sender, unread (see
// [Held]): asking the home server for its sender failed with err. Whether
// the server lags, fails or answers what cannot be believed, the message
// is not to blame: dropping it would lose a message the door accepted
// from a registered key.
func (r *receiver) hold(m InboxMsg, from string, err error) (bool, error) {
	why := "the home server did not identify the sender: " + err.Error()
	if errors.Is(err, kez.ErrNotFound) {
		why = "the home server names no handle for the sender's key yet (a replica that lags?)"
	}
	if r.told[m.Sender] != why {
		r.told[m.Sender] = why
		r.events = append(r.events, Event{Held: &Held{Seq: m.Seq, From: from, Reason: why}})
	}
	return false, fmt.Errorf("message %d: %w: %w", m.Seq, ErrHoldSender, err)
}

// lookupError is a failure of the home server (or the sender's sig-server)
// to identify a sender: the sender's messages are held, not dropped.
type lookupError struct{ err error }

func (e *lookupError) Error() string { return e.err.Error() }
func (e *lookupError) Unwrap() error { return e.err }

// sender returns the contact that key belongs to, and the warning the
// message must carry: a pinned contact's key has none; otherwise the home
// server names the key's handle, which is a contact whose key changed
// (the message is quarantined) or a new contact, pinned once the message
// opens the way [Client.Add] pins one: the handle resolves back to the
// key and its sigchain verifies. A failure of the servers to answer
// that, or an answer that does not check out, is a *lookupError.
func (r *receiver) sender(ctx context.Context, key kez.PublicKey) (Contact, string, error) {
	if r.contacts == nil {
		cs, err := r.c.p.Contacts()
		if err != nil {
			return Contact{}, "", err
		}
		r.contacts = cs
	}
	cs := r.contacts
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
		return Contact{}, "", &lookupError{err}
	}
	if !rec.Primary.Equal(key) {
		return Contact{}, "", &lookupError{fmt.Errorf("%w: asked for the handle of %s, the server named %s's", ErrBadRecord, key, rec.Primary)}
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
		return Contact{}, "", &lookupError{fmt.Errorf("%w: %w", ErrBadRecord, err)}
	case err != nil:
		return Contact{}, "", &lookupError{err}
	}
	rec = back
	if !rec.Primary.Equal(key) {
		return Contact{}, "", &lookupError{fmt.Errorf("%w: %s is @%s's key by its key, %s by its handle", ErrBadRecord, key, rec.Handle, rec.Primary)}
	}
	return Contact{Handle: rec.Handle, Key: rec.Primary, Server: home.BaseURL, NATSURL: rec.NATSURL,
		AddedAt: r.c.cfg.Now().Unix(), Chain: st}, WarnNewContact, nil
}

// pinning is a contact change a taken message implies, written by commit
// with the message.
type pinning struct {
	ct      Contact
	warning string // WarnNewContact or WarnKeyChanged
	key     kez.PublicKey
}

// pin keeps the contact change the warning of e implies for commit. A new
// contact counts at once for the messages taken after it (the sender's
// next message in the page carries no warning), as it will once stored.
func (r *receiver) pin(ct Contact, warning string, e Entry) {
	if warning == "" {
		return
	}
	r.pins = append(r.pins, pinning{ct, warning, e.PeerKey})
	if warning == WarnNewContact {
		r.contacts = append(r.contacts, ct)
	}
}

// applyPins writes the kept contact changes into cs, the contacts as
// stored now. Another process may have pinned a new contact meanwhile:
// with the same key it is the same pin; with another, the messages taken
// as that contact's first were checked against no pinned key and must
// be checked again (the commit fails; the next listen quarantines them).
func (r *receiver) applyPins(cs []Contact) ([]Contact, error) {
	for _, pn := range r.pins {
		switch pn.warning {
		case WarnNewContact:
			i := slices.IndexFunc(cs, func(o Contact) bool { return o.Handle == pn.ct.Handle })
			if i < 0 {
				cs = append(cs, pn.ct)
			} else if !cs[i].Key.Equal(pn.ct.Key) {
				return nil, fmt.Errorf("@%s was pinned with another key meanwhile (by another kez-chat): listen again to check its messages against it", pn.ct.Handle)
			}
		case WarnKeyChanged:
			for i := range cs {
				if cs[i].Handle == pn.ct.Handle && !cs[i].Key.Equal(pn.key) {
					cs[i].setChanged(pn.key, r.c.cfg.Now().Unix())
				}
			}
		}
	}
	return cs, nil
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
	if st.Unread, err = (Inbox{NC: nc, Me: a.Primary}).Unread(ctx); err != nil {
		st.NATSError = err.Error()
	}
	return st, nil
}
