package callout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrTooManyConnections: the user has Config.MaxConnsPerKey connections
// open already.
var ErrTooManyConnections = errors.New("too many connections for one key")

// ConnEvent is the part of nats-server's connect and disconnect events
// ($SYS.ACCOUNT.<account>.CONNECT and .DISCONNECT) that kez reads: the
// connection (server id, client id) and its user, which for a callout user
// is the handle the callout named it (the client cannot choose it).
type ConnEvent struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID   uint64 `json:"id"`
		User string `json:"user"`
	} `json:"client"`
}

// ParseConnEvent reads a connect or disconnect event.
func ParseConnEvent(data []byte) (ConnEvent, error) {
	var ev ConnEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("connection event: %w", err)
	}
	if ev.Client.User == "" || ev.Server.ID == "" {
		return ev, errors.New("connection event without a user or a server")
	}
	return ev, nil
}

// ConnEventSubjects returns the subjects of the connect and disconnect
// events of account's users (nats/nats.conf exports them from SYS).
func ConnEventSubjects(account string) (connect, disconnect string) {
	return "$SYS.ACCOUNT." + account + ".CONNECT", "$SYS.ACCOUNT." + account + ".DISCONNECT"
}

// Every broker node's heartbeat (its statistics, every 10 s) and its
// shutdown notice, which nats/nats.conf exports from SYS: a node sends
// no disconnect events for its clients when it stops, crashes or is cut
// off, so the connections counted on it are dropped when it says it
// stops or goes silent.
const (
	ServerHeartbeatSubjects = "$SYS.SERVER.*.STATSZ"
	ServerShutdownSubjects  = "$SYS.SERVER.*.SHUTDOWN"
)

// serverSilence is how long a broker node may go unheard (no heartbeat,
// no connect or disconnect event) before the connections counted on it
// are taken for gone: three and a half heartbeats.
const serverSilence = 35 * time.Second

// pendingFor is how long a sign-in a replica allowed counts as a
// connection before its connect event arrives.
const pendingFor = 5 * time.Second

// expiryMargin is how much longer than a user JWT's lifetime
// (Config.TTL) a connection counts as open without its disconnect
// event. nats-server closes a connection when its JWT expires, reckoned
// by the broker's clock from the expiry the callout wrote by its own:
// the margin covers the two clocks disagreeing, and the connect event's
// trip, with room to spare.
const expiryMargin = time.Minute

// AdmittedSubject is where each replica tells the others, in the KEZ
// account, of every sign-in it allowed under the cap (an admittedNote),
// so that they count it before its connect event arrives. Only the KEZ
// account's users (the services) reach it: nats/nats.conf exports
// nothing under kez.callout to USERS, so a user cannot fill another's
// key with forged notes.
const AdmittedSubject = "kez.callout.admitted"

// admittedNote is a replica's note of a sign-in it allowed: the
// connection (the authorization request's server and client ids, which
// its connect event will carry) and the handle it was named.
type admittedNote struct {
	Handle string `json:"handle"`
	Server string `json:"server"`
	Client uint64 `json:"client"`
}

// parseAdmittedNote reads a note; one without a handle or a server is
// no sign-in's.
func parseAdmittedNote(data []byte) (admittedNote, error) {
	var n admittedNote
	if err := json.Unmarshal(data, &n); err != nil {
		return n, fmt.Errorf("admitted note: %w", err)
	}
	if n.Handle == "" || n.Server == "" {
		return n, errors.New("admitted note without a handle or a server")
	}
	return n, nil
}

// conns counts each user's open connections, across every replica and
// broker node, from the broker's connect and disconnect events (every
// replica takes all of them), plus the sign-ins allowed whose connect
// event has not arrived yet: this replica's own, and the other replicas'
// as their notes (AdmittedSubject) arrive. Each pending sign-in is filed
// under its connection, so that a connect event removes exactly its own
// entry and not that of another sign-in still on its way.
//
// What the notes leave open: two replicas that each allow a sign-in of
// one key within the time a note takes to reach the other (one broker
// hop, a millisecond or so; a route more across a cluster) do not see
// each other's, so a burst split across R replicas can still pass the
// cap, by at most what each allowed inside that window. Closing it would
// take a replicated write on every sign-in, which a storm of 10,000
// sign-ins cannot afford. A note that arrives more than closedFor after
// its connection closed (closed forgets it) counts for pendingFor.
//
// A replica that starts knows only the connections made after it (and
// the notes sent after it): until users reconnect (at the latest when
// their JWT expires), it may allow more than the cap.
//
// Events are core NATS: those published while Track's connection is
// away (a network blip, a move to another broker node) or dropped
// behind a slow handler are lost, and a lost disconnect event would
// leave its connection counted, refusing a user at the cap with nothing
// open. So a connection counts as open for at most its JWT's lifetime
// and expiryMargin (the broker closes it at expiry: no connection
// outlives maxAge), and when Track's connection comes back or reports
// a slow consumer, the replica forgets every open connection it counted
// (forget) and counts afresh from the events that follow, as a replica
// that starts does: it under-counts until users reconnect, rather than
// lock anyone out.
//
// A node that stops (its shutdown notice) or goes silent (serverSilence)
// takes its connections with it: its clients reconnect elsewhere and
// must not find their keys full of connections nobody holds.
type conns struct {
	mu sync.Mutex
	// open holds each handle's connections, and when their connect
	// events arrived; one older than maxAge is taken for closed.
	open    map[string]map[connID]time.Time
	pending map[string]map[connID]time.Time // handle -> sign-ins allowed, not yet connected -> when
	heard   map[string]time.Time            // server id -> when it last gave a sign of life
	// closed holds the connections closed lately (for closedFor), and
	// when: nats.go runs the connect and the disconnect subscription's
	// handlers on goroutines of their own, so a connection that closes
	// at once can have its disconnect event applied before its connect
	// event, and must not then count as open here for good. A note too
	// can arrive after its connection closed (it travels on another
	// replica's connection than the answer), and must not count it.
	closed map[connID]time.Time
	// pruned is when pending and closed were last swept whole, and
	// aged when open was: the entries of handles that never sign in
	// here again (their notes came from other replicas, their clients
	// gave up, their disconnect events were lost) must not stay
	// forever.
	pruned, aged time.Time
	// maxAge is how long a connection counts as open without its
	// disconnect event: the user JWT's lifetime and expiryMargin.
	maxAge time.Duration
	// lastBeat is when the latest heartbeat of any node arrived (zero:
	// none yet; a nats.conf from before exports none). A node is gone
	// when it has been silent for serverSilence by that clock, not by
	// the wall's: a replica that hears nothing at all (its own
	// connection cut, its process paused) drops nobody.
	lastBeat time.Time
}

// connID names one connection: nats-server's id and the client id (cid)
// it gave the connection, the same in the authorization request
// (Server.ID, ClientInformation.ID) and in the connect and disconnect
// events (server.id, client.id).
type connID struct {
	server string
	id     uint64
}

// newConns returns an empty count whose open connections last at most
// maxAge.
func newConns(maxAge time.Duration) *conns {
	return &conns{
		maxAge:  maxAge,
		open:    map[string]map[connID]time.Time{},
		pending: map[string]map[connID]time.Time{},
		closed:  map[connID]time.Time{},
		heard:   map[string]time.Time{},
	}
}

// heartbeat records server's heartbeat, received at now.
func (c *conns) heartbeat(server string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.heard[server] = now
	if now.After(c.lastBeat) {
		c.lastBeat = now
	}
}

// gone drops every connection counted on server.
func (c *conns) gone(server string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.goneLocked(server)
}

func (c *conns) goneLocked(server string) {
	delete(c.heard, server)
	for h, ids := range c.open {
		for id := range ids {
			if id.server == server {
				delete(ids, id)
			}
		}
		if len(ids) == 0 {
			delete(c.open, h)
		}
	}
}

// sweepLocked drops the connections of the servers silent for longer
// than serverSilence before the latest heartbeat of any; c.mu is held.
func (c *conns) sweepLocked() {
	if c.lastBeat.IsZero() {
		return
	}
	for server, t := range c.heard {
		if c.lastBeat.Sub(t) > serverSilence {
			c.goneLocked(server)
		}
	}
}

// live drops the entries of m[handle] (its open connections, or its
// pending sign-ins) older than maxAge at now and returns those left;
// the conns' mu is held.
func live(m map[string]map[connID]time.Time, handle string, maxAge time.Duration, now time.Time) map[connID]time.Time {
	ids := m[handle]
	for id, t := range ids {
		if now.Sub(t) > maxAge {
			delete(ids, id)
		}
	}
	if len(ids) == 0 {
		delete(m, handle)
		return nil
	}
	return ids
}

// forget drops every open connection counted: events may have been
// lost (Track's connection was away, or dropped some behind a slow
// handler), and a disconnect event lost would keep its connection
// counted. The sign-ins pending stay: they are this replica's own, or
// notes that expire in pendingFor anyway.
func (c *conns) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.open)
}

// closedFor is how long a closed connection is remembered: far longer
// than its two events, or its note and its events, can be apart on
// their way to this replica.
const closedFor = pendingFor

// pruneLocked expires every handle's pending sign-ins and forgets the
// connections closed before closedFor, at most once per pendingFor, and
// drops the open connections older than maxAge, at most once per
// expiryMargin; c.mu is held.
func (c *conns) pruneLocked(now time.Time) {
	if now.Sub(c.aged) >= expiryMargin {
		c.aged = now
		for h := range c.open {
			live(c.open, h, c.maxAge, now)
		}
	}
	if now.Sub(c.pruned) < pendingFor {
		return
	}
	c.pruned = now
	for h := range c.pending {
		live(c.pending, h, pendingFor, now)
	}
	for id, t := range c.closed {
		if now.Sub(t) > closedFor {
			delete(c.closed, id)
		}
	}
}

// addPendingLocked counts connection id of handle as pending from now,
// unless it is counted already or has closed already; c.mu is held.
func (c *conns) addPendingLocked(handle string, id connID, now time.Time) {
	if _, ok := c.closed[id]; ok {
		return
	}
	if _, ok := c.open[handle][id]; ok {
		return
	}
	p := c.pending[handle]
	if p == nil {
		p = map[connID]time.Time{}
		c.pending[handle] = p
	}
	if _, ok := p[id]; !ok {
		p[id] = now
	}
}

// take counts sign-in id of handle at now if handle has fewer than max
// connections (open, or allowed and not yet connected); it returns the
// count before and whether it took one. Checking and counting under one
// lock, concurrent sign-ins of one key on this replica cannot pass the
// cap together.
func (c *conns) take(handle string, id connID, max int, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
	c.pruneLocked(now)
	n := len(live(c.open, handle, c.maxAge, now)) + len(live(c.pending, handle, pendingFor, now))
	if n < max {
		c.addPendingLocked(handle, id, now)
	}
	return n, n < max
}

// note counts another replica's sign-in id of handle (its note, received
// at now) as pending, unless its connection has opened (or opened and
// closed) already. A replica also hears its own notes: their sign-ins
// are pending already, and stay counted from when they were taken.
func (c *conns) note(handle string, id connID, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	c.addPendingLocked(handle, id, now)
}

// event applies a connect (up) or disconnect event, received at now.
func (c *conns) event(ev ConnEvent, up bool, now time.Time) {
	id := connID{ev.Server.ID, ev.Client.ID}
	h := ev.Client.User
	c.mu.Lock()
	defer c.mu.Unlock()
	c.heard[ev.Server.ID] = now
	c.pruneLocked(now)
	// The connection's own pending entry, and no other: another sign-in
	// of the key allowed a moment ago still counts until its own event.
	if p := c.pending[h]; p != nil {
		delete(p, id)
		if len(p) == 0 {
			delete(c.pending, h)
		}
	}
	if up {
		if _, ok := c.closed[id]; ok {
			return // its disconnect event came first
		}
		if c.open[h] == nil {
			c.open[h] = map[connID]time.Time{}
		}
		c.open[h][id] = now
		return
	}
	delete(c.open[h], id)
	if len(c.open[h]) == 0 {
		delete(c.open, h)
	}
	c.closed[id] = now
}

// admitted tells the other replicas of sign-in id of handle, which this
// one allowed, on the connection given to Track (none: nothing to tell).
// The publish only queues the note on the connection: the sign-in does
// not wait for it.
func (s *Service) admitted(handle string, id connID) {
	nc := s.peers.Load()
	if nc == nil {
		return
	}
	data, err := json.Marshal(admittedNote{Handle: handle, Server: id.server, Client: id.id})
	if err == nil {
		err = nc.Publish(AdmittedSubject, data)
	}
	if err != nil {
		s.logger.Debug("admitted note", "err", err)
	}
}

// Track follows the connect and disconnect events of the users' account
// on nc (a connection of the account that imports them, KEZ), so that
// the callout can cap each key's connections (Config.MaxConnsPerKey),
// and the broker nodes' heartbeats and shutdown notices, so that a
// node's connections go with it. On nc too the replicas tell each other
// of the sign-ins they allow (AdmittedSubject), so that a burst of one
// key's sign-ins split across replicas is held to the cap. When nc
// reconnects, or reports a slow consumer on one of these subscriptions,
// the connections counted so far are forgotten (events were lost); Track
// sets nc's reconnect and error handlers, calling those set before.
func (s *Service) Track(nc *nats.Conn, account string) error {
	var subs []*nats.Subscription
	sub, err := nc.Subscribe(AdmittedSubject, func(m *nats.Msg) {
		if n, err := parseAdmittedNote(m.Data); err == nil {
			s.conns.note(n.Handle, connID{n.Server, n.Client}, s.cfg.Now())
		}
	})
	if err != nil {
		return fmt.Errorf("admitted notes: %w", err)
	}
	subs = append(subs, sub)
	s.peers.Store(nc)
	connect, disconnect := ConnEventSubjects(account)
	for subj, up := range map[string]bool{connect: true, disconnect: false} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			if ev, err := ParseConnEvent(m.Data); err == nil {
				s.conns.event(ev, up, s.cfg.Now())
			}
		})
		if err != nil {
			return fmt.Errorf("connection events: %w", err)
		}
		subs = append(subs, sub)
	}
	for subj, stop := range map[string]bool{ServerHeartbeatSubjects: false, ServerShutdownSubjects: true} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			server, ok := serverOf(m.Subject)
			switch {
			case !ok:
			case stop:
				s.conns.gone(server)
			default:
				s.conns.heartbeat(server, s.cfg.Now())
			}
		})
		if err != nil {
			return fmt.Errorf("server events: %w", err)
		}
		subs = append(subs, sub)
	}
	// The events published while nc was away (its broker node cut off
	// or gone, or the node dropped it as a slow consumer), or dropped by
	// nats.go behind a slow handler, are lost for good: a disconnect
	// event among them would keep its connection counted until it is
	// maxAge old, an hour and more in which a user at the cap is refused
	// with nothing open. Counting afresh heals that at once; it
	// under-counts the connections that stay open until they reconnect,
	// as a replica that starts does. The reset runs after nats.go has
	// subscribed again, so it also forgets the few events applied in
	// between (under-counting those too), and an event read before the
	// break but applied after the reset (a handler far behind) counts
	// until maxAge at most.
	reconnected := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		s.conns.forget()
		s.logger.Info("callout: connection events may have been lost while reconnecting; counting connections afresh")
		if reconnected != nil {
			reconnected(nc)
		}
	})
	failed := nc.ErrorHandler()
	nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) && slices.Contains(subs, sub) {
			s.conns.forget()
			s.logger.Warn("callout: connection events dropped (slow consumer); counting connections afresh", "subject", sub.Subject)
		}
		if failed != nil {
			failed(nc, sub, err)
		}
	})
	// The subscriptions are in place before the replica serves: it
	// hears the notes of sign-ins the others allow from its first. A
	// broker away at start is no reason not to start: nats.go sends the
	// subscriptions again when it reconnects.
	if err := nc.Flush(); err != nil {
		s.logger.Warn("callout: the broker did not confirm the connection-event subscriptions; they take effect when it answers", "err", err)
	}
	return nil
}

// serverOf returns the server id of a $SYS.SERVER.<id>.<event> subject.
func serverOf(subject string) (string, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[2] == "" {
		return "", false
	}
	return parts[2], true
}
