package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// Presence states.
const (
	PresenceOnline  = kez.PresenceOnline  // announcing now
	PresenceOffline = kez.PresenceOffline // was online; LastSeen says when
	PresenceUnknown = "unknown"           // never announced, invisible, or aged out
)

// Presence timing.
const (
	// DefaultPresenceTTL is how long an announcement counts as online
	// without a renewal; a client renews it every third of that.
	DefaultPresenceTTL = 60 * time.Second
	// MaxPresenceTTL caps the period an entry claims, so a client
	// claiming a year cannot stay online for a year after it dies.
	MaxPresenceTTL = 10 * time.Minute
	// MinPresenceTTL is the shortest period an announcement may claim.
	MinPresenceTTL = time.Second
)

// PresenceEntry is the JSON a user stores in their own presence entry
// (kez.PresenceBucket, key = the user's key hex).
type PresenceEntry = kez.PresenceEntry

// Presence is what a reader knows of a user's presence.
type Presence struct {
	Handle kez.Handle    `json:"handle,omitzero"`
	Key    kez.PublicKey `json:"key"`
	// State is PresenceOnline, PresenceOffline or PresenceUnknown.
	State string `json:"state"`
	// LastSeen is when the user was last known online (unix seconds):
	// the last renewal or the goodbye, by the broker's clock; 0 when
	// unknown. While online it is the last renewal.
	LastSeen int64 `json:"last_seen,omitempty"`
	// Until is when an online state lapses without a renewal (unix
	// seconds, online only).
	Until int64 `json:"until,omitempty"`
}

// ErrPresenceDenied: the broker refused a presence write (the subject is
// not the user's own, or the account lacks the presence imports).
var ErrPresenceDenied = errors.New("presence write refused")

// PublishPresence stores the presence entry of key over a user
// connection: online with ttl, or the goodbye (status offline, ttl
// ignored). It returns once JetStream has stored it. The broker lets a
// user write their own entry only (streams.UserPermissions).
func PublishPresence(ctx context.Context, nc *nats.Conn, key kez.PublicKey, status string, ttl time.Duration, now time.Time) error {
	e := PresenceEntry{Status: status, TS: now.Unix()}
	if status == PresenceOnline {
		e.TTL = int64(max(ttl, MinPresenceTTL) / time.Second)
		// The connection that announces: the home server marks the entry
		// offline as soon as the broker says it closed.
		e.Server = nc.ConnectedServerId()
		e.Conn, _ = nc.GetClientID()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return putPresence(ctx, nc, &nats.Msg{Subject: kez.PresenceKeySubject(key), Data: b})
}

// DeletePresence makes key's presence entry vanish: a delete that itself
// expires after a second, leaving nothing behind (the bucket has no
// subject delete markers). Watchers see the delete as "went away".
func DeletePresence(ctx context.Context, nc *nats.Conn, key kez.PublicKey) error {
	m := nats.NewMsg(kez.PresenceKeySubject(key))
	m.Header.Set("KV-Operation", "DEL")
	m.Header.Set(jetstream.MsgTTLHeader, "1s")
	return putPresence(ctx, nc, m)
}

func putPresence(ctx context.Context, nc *nats.Conn, m *nats.Msg) error {
	js, err := JetStream(nc)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: %w", ErrPresenceDenied, err)
		}
		return fmt.Errorf("presence: %w", err)
	}
	return nil
}

// GetPresence reads key's presence entry with a direct get and judges it
// at now.
func GetPresence(ctx context.Context, nc *nats.Conn, key kez.PublicKey, now time.Time) (Presence, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, kez.PresenceGetSubject(key), nil)
	if err != nil {
		return Presence{Key: key}, fmt.Errorf("presence of %s: %w", key, err)
	}
	if st := m.Header.Get("Status"); st == "404" {
		return Presence{Key: key, State: PresenceUnknown}, nil
	} else if st != "" {
		return Presence{Key: key}, fmt.Errorf("presence of %s: %s %s", key, st, m.Header.Get("Description"))
	}
	p, ok := presenceOf(key, m, now)
	if !ok {
		return Presence{Key: key}, fmt.Errorf("presence of %s: %w: the answer is not that key's stored presence entry", key, ErrBadRecord)
	}
	return p, nil
}

// storedPresence reports whether m is key's presence entry as the presence
// stream stored it: a direct get's answer or the stream's republished
// write both name the stream and the entry's subject. Anything else on
// kez.presence.<key> is somebody's reply pointed there (any user may set
// the reply subject of a direct get of their own entry, or of a door
// request, to another user's live presence subject), and must not make
// that user look online, offline or invisible.
//
// Every header the broker sets must appear once (brokerHeader): the
// entry's own headers come first, and its writer chose them.
func storedPresence(key kez.PublicKey, m *nats.Msg) bool {
	stream, ok1 := brokerHeader(m.Header, jetstream.StreamHeader)
	subject, ok2 := brokerHeader(m.Header, jetstream.SubjectHeader)
	_, ok3 := brokerHeader(m.Header, "Nats-Time-Stamp")
	return ok1 && ok2 && ok3 && stream == kez.PresenceStream && subject == kez.PresenceKeySubject(key)
}

// presenceOf judges a presence message (a direct get answer or a
// republished write) at now; ok is false, and the presence unknown, for
// a message that is not key's stored entry (storedPresence).
func presenceOf(key kez.PublicKey, m *nats.Msg, now time.Time) (p Presence, ok bool) {
	p = Presence{Key: key, State: PresenceUnknown}
	if !storedPresence(key, m) {
		return p, false
	}
	if op := m.Header.Get("KV-Operation"); op != "" {
		return p, true // a delete: the user went invisible
	}
	stamp, _ := brokerHeader(m.Header, "Nats-Time-Stamp")
	stored, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		stored = now // a republished write without its time: just now
	}
	var e PresenceEntry
	if json.Unmarshal(m.Data, &e) != nil {
		return p, true
	}
	switch e.Status {
	case PresenceOnline:
		ttl := min(max(time.Duration(e.TTL)*time.Second, MinPresenceTTL), MaxPresenceTTL)
		p.LastSeen = stored.Unix()
		if until := stored.Add(ttl); now.Before(until) {
			p.State, p.Until = PresenceOnline, until.Unix()
		} else {
			p.State = PresenceOffline
		}
	case PresenceOffline:
		p.State, p.LastSeen = PresenceOffline, stored.Unix()
	}
	return p, true
}

// AnnounceOptions tune [Client.Announce].
type AnnounceOptions struct {
	// TTL is how long one announcement counts; renewed every third of it.
	// DefaultPresenceTTL if zero.
	TTL time.Duration
	// Invisible publishes nothing, and removes an entry left by an
	// earlier visible run.
	Invisible bool
}

// Announce keeps the user's presence "online" until ctx ends, then says
// goodbye (status offline, so others see "last seen" now). A client
// killed without a goodbye stops renewing, and others see it as last
// seen at its last renewal once TTL has passed. With Invisible nothing
// is published; an existing entry is deleted so that nothing remains.
// Failed renewals are retried at the next tick (the connection
// reconnects on its own); Announce returns an error only if the first
// announcement fails.
func (c *Client) Announce(ctx context.Context, opts AnnounceOptions) error {
	a, key, err := c.account()
	if err != nil {
		return err
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return err
	}
	if opts.Invisible {
		p, err := GetPresence(ctx, nc, a.Primary, c.cfg.Now())
		if err != nil {
			return err
		}
		if p.State != PresenceUnknown {
			return DeletePresence(ctx, nc, a.Primary)
		}
		return nil
	}
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = DefaultPresenceTTL
	}
	ttl = min(max(ttl, MinPresenceTTL), MaxPresenceTTL)
	// Ended while the first announcement was on its way (it may have been
	// stored): the goodbye below still goes.
	if err := PublishPresence(ctx, nc, a.Primary, PresenceOnline, ttl, c.cfg.Now()); err != nil && ctx.Err() == nil {
		return err
	}
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	// After a reconnect (a new connection: its JWT expired, or the broker
	// restarted) announce again at once: the home server marks the entry
	// offline when the old connection's close is reported.
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	for {
		select {
		case <-reconnected:
			_ = PublishPresence(ctx, nc, a.Primary, PresenceOnline, ttl, c.cfg.Now())
		case <-ctx.Done():
			if nc.IsClosed() {
				return nil
			}
			gctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			return PublishPresence(gctx, nc, a.Primary, PresenceOffline, 0, c.cfg.Now())
		case <-tick.C:
			if nc.IsClosed() {
				return nil
			}
			_ = PublishPresence(ctx, nc, a.Primary, PresenceOnline, ttl, c.cfg.Now())
		}
	}
}

// Presence returns the presence of contact h (or of any handle on the
// home server, which every signed-in user may read).
func (c *Client) Presence(ctx context.Context, h kez.Handle) (Presence, error) {
	a, key, err := c.account()
	if err != nil {
		return Presence{}, err
	}
	pk, err := c.presenceKey(ctx, h)
	if err != nil {
		return Presence{}, err
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return Presence{}, err
	}
	p, err := GetPresence(ctx, nc, pk, c.cfg.Now())
	p.Handle = h
	return p, err
}

// presenceKey returns the key of h: the pinned one for a contact, else
// the home server's answer.
func (c *Client) presenceKey(ctx context.Context, h kez.Handle) (kez.PublicKey, error) {
	ct, err := c.p.Contact(h)
	if err == nil {
		return ct.Key, nil
	}
	if !errors.Is(err, ErrNotContact) {
		return kez.PublicKey{}, err
	}
	home, err := c.homeOf(h)
	if err != nil {
		return kez.PublicKey{}, err
	}
	rec, err := home.User(ctx, h)
	if err != nil {
		return kez.PublicKey{}, err
	}
	return rec.Primary, nil
}

// ContactsPresence returns the presence of every contact, in the order
// of [Client.Contacts]. A contact whose entry could not be read is
// PresenceUnknown.
func (c *Client) ContactsPresence(ctx context.Context) ([]Presence, error) {
	a, key, err := c.account()
	if err != nil {
		return nil, err
	}
	cs, err := c.p.Contacts()
	if err != nil {
		return nil, err
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return nil, err
	}
	out := make([]Presence, len(cs))
	var wg sync.WaitGroup
	for i, ct := range cs {
		wg.Go(func() {
			p, err := GetPresence(ctx, nc, ct.Key, c.cfg.Now())
			if err != nil {
				p = Presence{Key: ct.Key, State: PresenceUnknown}
			}
			p.Handle = ct.Handle
			out[i] = p
		})
	}
	wg.Wait()
	return out, nil
}

// maxWatched bounds the contacts WatchPresence follows one subscription
// each (user connections have 100 subscriptions).
const maxWatched = 64

// WatchPresence reports changes of the contacts' presence to fn until
// ctx ends: first every contact's current state, then each change
// (online, offline with a last-seen time, unknown when one goes
// invisible). A contact whose client dies is reported offline once its
// announcement lapses. Only the first 64 contacts are followed.
func (c *Client) WatchPresence(ctx context.Context, fn func(Presence)) error {
	a, key, err := c.account()
	if err != nil {
		return err
	}
	cs, err := c.p.Contacts()
	if err != nil {
		return err
	}
	if len(cs) > maxWatched {
		cs = cs[:maxWatched]
	}
	nc, err := c.conn(a, key)
	if err != nil {
		return err
	}
	ch := make(chan *nats.Msg, 256)
	byKey := map[string]kez.Handle{}
	for _, ct := range cs {
		byKey[kez.PresenceLiveSubject(ct.Key)] = ct.Handle
		sub, err := nc.ChanSubscribe(kez.PresenceLiveSubject(ct.Key), ch)
		if err != nil {
			return fmt.Errorf("follow presence: %w", err)
		}
		defer sub.Unsubscribe()
	}
	fctx, cancel := withTimeout(ctx)
	err = nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return fmt.Errorf("follow presence: %w", err)
	}
	last := map[kez.Handle]Presence{}
	report := func(p Presence) {
		old, seen := last[p.Handle]
		last[p.Handle] = p
		if !seen || old.State != p.State {
			fn(p)
		}
	}
	for _, ct := range cs {
		p, err := GetPresence(ctx, nc, ct.Key, c.cfg.Now())
		if err != nil {
			p = Presence{Key: ct.Key, State: PresenceUnknown}
		}
		p.Handle = ct.Handle
		report(p)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			h, ok := byKey[m.Subject]
			if !ok {
				continue
			}
			var pk kez.PublicKey
			for _, ct := range cs {
				if ct.Handle == h {
					pk = ct.Key
				}
			}
			p, ok := presenceOf(pk, m, c.cfg.Now())
			if !ok {
				continue
			}
			p.Handle = h
			report(p)
		case <-tick.C:
			now := c.cfg.Now().Unix()
			for _, p := range last {
				if p.State == PresenceOnline && now >= p.Until {
					p.State, p.Until = PresenceOffline, 0
					report(p)
				}
			}
		}
	}
}
