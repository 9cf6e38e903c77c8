package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
	"kez.lat/kez/sigchain"
)

// LoadConfig is what the simulated users do.
type LoadConfig struct {
	Domain     string
	Prefix     string        // handles are <prefix><n>
	Offline    float64       // share of users registered but never signed in
	Rate       float64       // messages per online user per minute
	Size       int           // plaintext bytes per message
	Contacts   int           // peers each user writes to
	Refresh    float64       // share of sends that look the peer up again first
	SetupConc  int           // users set up at once
	Ramp       time.Duration // spread the set-up of a batch of users over at least this long
	Workers    int           // concurrent senders (sends in flight at most)
	OpTimeout  time.Duration // per operation
	DrainLimit time.Duration // how long to wait for messages in flight at the end of a phase
	// SignInLater leaves every user offline at set-up; Connect signs in
	// those who would have been online.
	SignInLater bool
}

// user is one simulated user. Its key, handle and inbox are real: the
// broker only knows it through the auth callout, like any client, and it
// reaches its inbox only through the home server's door.
type user struct {
	i      int
	handle kez.Handle
	key    *kez.PrivateKey
	id     *message.Identity // key's, for sealing and opening
	pub    kez.PublicKey
	online bool
	// later: to be signed in by Connect, at natsURL (SignInLater).
	later   bool
	natsURL string

	nc    *nats.Conn
	inbox client.Inbox
	down  atomic.Int64    // unix nanos of the last disconnect, 0 when up
	seen  map[string]bool // dedup keys received (only the following goroutine touches it)

	mu       sync.Mutex
	contacts []*user
	known    map[kez.PublicKey]kez.PublicKey // peer → the key a look-up returned
}

// Gen is the load generator: the users and what they measured.
type Gen struct {
	cfg   LoadConfig
	chats []string // home server replicas, used round-robin
	hc    *http.Client
	rec   *Recorder
	log   io.Writer

	mu      sync.RWMutex
	users   []*user
	online  []*user
	byKey   map[kez.PublicKey]*user
	nextURL atomic.Uint64

	sent, toOffline, received, expected atomic.Int64
	redelivered                         atomic.Int64 // received again: a message already received (its ack was lost)
	reconnects, authExpired             atomic.Int64

	following sync.WaitGroup // the users' inbox readers
}

// NewGen returns a generator against the home servers chats.
func NewGen(cfg LoadConfig, chats []string, log io.Writer) *Gen {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A few hundred keep-alive connections serve every simulated user: an
	// ephemeral port per request would run out under load.
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 256
	return &Gen{cfg: cfg, chats: chats, log: log, rec: NewRecorder(), byKey: map[kez.PublicKey]*user{},
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (g *Gen) home() client.Home {
	n := g.nextURL.Add(1)
	return client.Home{BaseURL: g.chats[int(n)%len(g.chats)], HTTP: g.hc}
}

// Grow sets up users until there are n: each one registers, appends its
// nats endpoint to its sigchain and, if online, signs in through the
// callout and follows its inbox. It returns the users set up.
func (g *Gen) Grow(ctx context.Context, n int) int {
	g.mu.RLock()
	from := len(g.users)
	g.mu.RUnlock()
	if n <= from {
		return 0
	}
	var wg sync.WaitGroup
	next := make(chan int)
	var done atomic.Int64
	start := time.Now()
	for range max(g.cfg.SetupConc, 1) {
		wg.Go(func() {
			for i := range next {
				if g.setup(ctx, i) {
					done.Add(1)
				}
			}
		})
	}
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	total := n - from
feed:
	for i := from; i < n; i++ {
		if g.cfg.Ramp > 0 {
			at := start.Add(time.Duration(float64(g.cfg.Ramp) * float64(i-from) / float64(total)))
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
					break feed
				case <-time.After(d):
				}
			}
		}
		select {
		case <-ctx.Done():
			break feed
		case next <- i:
		case <-progress.C:
			fmt.Fprintf(g.log, "kez-load: set up %d of %d users (%.0f/s)\n", done.Load(), total, float64(done.Load())/time.Since(start).Seconds())
			i--
		}
	}
	close(next)
	wg.Wait()
	g.pickContacts()
	return int(done.Load())
}

// setup brings user i to life; failures are recorded and leave the user
// out of the population.
func (g *Gen) setup(ctx context.Context, i int) bool {
	key, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		g.rec.Error(opRegister, "keygen")
		return false
	}
	h, err := kez.ParseHandle(g.cfg.Prefix+strconv.Itoa(i), g.cfg.Domain)
	if err != nil {
		g.rec.Error(opRegister, "handle")
		return false
	}
	u := &user{i: i, handle: h, key: key, id: message.NewIdentity(key), pub: key.Public(), known: map[kez.PublicKey]kez.PublicKey{}}
	// Every g.cfg.Offline-th user stays offline, spread evenly.
	u.online = g.cfg.Offline <= 0 || math.Floor(float64(i+1)*g.cfg.Offline) == math.Floor(float64(i)*g.cfg.Offline)

	octx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
	t0 := time.Now()
	rec, err := g.home().Register(octx, kez.NewRegistrationRequest(key, h, time.Now()))
	cancel()
	if err != nil {
		g.rec.Error(opRegister, ErrKind(err))
		return false
	}
	g.rec.Observe(opRegister, time.Since(t0))

	// The first sigchain event, as client.PublishEndpoints appends it: the
	// nats inbox the record names.
	ev, err := sigchain.Next(key, nil, sigchain.TypeAddEndpoint,
		sigchain.NATSEndpoint{URL: rec.NATSURL, Inbox: kez.InboxSubject(u.pub)}, time.Now())
	if err != nil {
		g.rec.Error(opAppend, "build")
		return false
	}
	octx, cancel = context.WithTimeout(ctx, g.cfg.OpTimeout)
	t0 = time.Now()
	_, err = (&client.Sigchains{BaseURL: rec.SigchainBase, HTTP: g.hc}).Append(octx, ev)
	cancel()
	if err != nil {
		g.rec.Error(opAppend, ErrKind(err))
		return false
	}
	g.rec.Observe(opAppend, time.Since(t0))

	if g.cfg.SignInLater {
		u.later, u.natsURL, u.online = u.online, rec.NATSURL, false
	}
	if u.online {
		if err := g.signIn(ctx, u, rec.NATSURL); err != nil {
			return false
		}
	}
	g.mu.Lock()
	g.users = append(g.users, u)
	g.byKey[u.pub] = u
	if u.online {
		g.online = append(g.online, u)
	}
	g.mu.Unlock()
	return true
}

// Connect signs in the users among the first n set up with SignInLater
// that are still offline, SetupConc at a time, and returns how many
// signed in. It runs between phases, while nobody sends (a send reads
// its peer's online without the lock).
func (g *Gen) Connect(ctx context.Context, n int) int {
	g.mu.RLock()
	var todo []*user
	for _, u := range g.users[:min(n, len(g.users))] {
		if u.later {
			todo = append(todo, u)
		}
	}
	g.mu.RUnlock()
	next := make(chan *user)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range max(g.cfg.SetupConc, 1) {
		wg.Go(func() {
			for u := range next {
				if g.signIn(ctx, u, u.natsURL) != nil {
					continue
				}
				done.Add(1)
				g.mu.Lock()
				u.later, u.online = false, true
				g.online = append(g.online, u)
				g.mu.Unlock()
			}
		})
	}
feed:
	for _, u := range todo {
		select {
		case <-ctx.Done():
			break feed
		case next <- u:
		}
	}
	close(next)
	wg.Wait()
	return int(done.Load())
}

// signIn connects u through the auth callout and follows its inbox the
// way client.Listen does (client.Inbox.Follow), until Close.
func (g *Gen) signIn(ctx context.Context, u *user, url string) error {
	t0 := time.Now()
	nc, err := client.ConnectNATS(url, u.key,
		nats.Timeout(g.cfg.OpTimeout),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { u.down.Store(time.Now().UnixNano()) }),
		nats.ReconnectHandler(func(*nats.Conn) {
			g.reconnects.Add(1)
			if d := u.down.Swap(0); d != 0 {
				g.rec.Observe(opReauth, time.Since(time.Unix(0, d)))
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			switch {
			case errors.Is(err, nats.ErrAuthExpired):
				g.authExpired.Add(1)
			case err != nil:
				g.rec.Error("nats async", ErrKind(err))
			}
		}),
	)
	if err != nil {
		g.rec.Error(opSignIn, ErrKind(err))
		return err
	}
	g.rec.Observe(opSignIn, time.Since(t0))
	u.nc = nc
	u.inbox = client.Inbox{NC: nc, Me: u.pub}
	if u.seen == nil {
		u.seen = map[string]bool{}
	}
	g.following.Go(func() {
		err := u.inbox.Follow(context.Background(), func(m client.InboxMsg) error {
			g.receive(u, m.Data)
			return nil
		})
		if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			g.rec.Error("consume", ErrKind(err))
		}
	})
	return nil
}

// loadPrefix starts every message the generator sends.
const loadPrefix = "kez-load "

// receive parses, authenticates and decrypts one inbox message as a
// client does; the send time in the plaintext gives the send→receive
// latency.
func (g *Gen) receive(u *user, data []byte) {
	env, err := u.id.Parse(data)
	if err != nil {
		g.rec.Error("receive", "malformed")
		return
	}
	if dk := env.DedupKey(); u.seen[dk] {
		g.redelivered.Add(1)
		return
	} else {
		u.seen[dk] = true
	}
	g.mu.RLock()
	_, known := g.byKey[env.From]
	g.mu.RUnlock()
	if !known || !env.To.Equal(u.pub) {
		g.rec.Error("receive", "unknown sender")
		return
	}
	pt, err := env.Open(u.id, env.From)
	if err != nil {
		g.rec.Error("receive", "does not open")
		return
	}
	body, ok := strings.CutPrefix(pt.Body(), loadPrefix)
	if !ok {
		g.rec.Error("receive", "foreign body")
		return
	}
	ns, _, _ := strings.Cut(body, " ")
	sent, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		g.rec.Error("receive", "foreign body")
		return
	}
	g.rec.Observe(opDeliver, time.Since(time.Unix(0, sent)))
	g.received.Add(1)
}

// pickContacts gives every user without contacts some random peers (any
// user, online or not).
func (g *Gen) pickContacts() {
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := len(g.users)
	if n < 2 {
		return
	}
	for _, u := range g.users {
		u.mu.Lock()
		for len(u.contacts) < min(g.cfg.Contacts, n-1) {
			p := g.users[mrand.IntN(n)]
			if p != u {
				u.contacts = append(u.contacts, p)
			}
		}
		u.mu.Unlock()
	}
}

// sendOne sends one message from a random online user to one of its
// contacts, looking the contact up first if it has not yet (or, for
// cfg.Refresh of the sends, again).
func (g *Gen) sendOne(ctx context.Context) {
	g.mu.RLock()
	if len(g.online) == 0 {
		g.mu.RUnlock()
		return
	}
	s := g.online[mrand.IntN(len(g.online))]
	g.mu.RUnlock()
	s.mu.Lock()
	if len(s.contacts) == 0 {
		s.mu.Unlock()
		return
	}
	p := s.contacts[mrand.IntN(len(s.contacts))]
	key, ok := s.known[p.pub]
	s.mu.Unlock()
	if !ok || mrand.Float64() < g.cfg.Refresh {
		octx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
		t0 := time.Now()
		rec, err := g.home().User(octx, p.handle)
		cancel()
		if err != nil {
			g.rec.Error(opLookup, ErrKind(err))
			return
		}
		g.rec.Observe(opLookup, time.Since(t0))
		key = rec.Primary
		s.mu.Lock()
		s.known[p.pub] = key
		s.mu.Unlock()
	}
	now := time.Now()
	text := loadPrefix + strconv.FormatInt(now.UnixNano(), 10) + " "
	if pad := g.cfg.Size - len(text); pad > 0 {
		text += strings.Repeat("x", pad)
	}
	_, wire, err := message.Seal(s.id, key, message.Text(text), now, nil)
	if err != nil {
		g.rec.Error(opSend, "seal")
		return
	}
	octx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
	t0 := time.Now()
	_, err = s.inbox.Send(octx, wire)
	cancel()
	if err != nil {
		g.rec.Error(opSend, ErrKind(err))
		return
	}
	g.rec.Observe(opSend, time.Since(t0))
	g.sent.Add(1)
	if p.online {
		g.expected.Add(1)
	} else {
		g.toOffline.Add(1)
	}
}

// Steady sends at the configured rate per online user for d. It returns
// how long the sending lasted.
func (g *Gen) Steady(ctx context.Context, d time.Duration) time.Duration {
	g.mu.RLock()
	rate := float64(len(g.online)) * g.cfg.Rate / 60
	g.mu.RUnlock()
	// Each sender waits for its send's answer (and, the first time, a
	// look-up), so senders bound the sends in flight. The queue is short:
	// a send that waits here is late, and that wait is not in its latency.
	tasks := make(chan struct{}, g.cfg.Workers)
	var wg sync.WaitGroup
	for range g.cfg.Workers {
		wg.Go(func() {
			for range tasks {
				g.sendOne(ctx)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	progress := time.NewTicker(10 * time.Second)
	dispatched := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-progress.C:
			fmt.Fprintf(g.log, "kez-load: %.0fs of %s: sent %d, received %d, reconnects %d\n",
				time.Since(start).Seconds(), d, g.sent.Load(), g.received.Load(), g.reconnects.Load())
		case now := <-tick.C:
			el := now.Sub(start)
			if el >= d {
				break loop
			}
			for due := int(el.Seconds()*rate) - dispatched; due > 0; due-- {
				select {
				case tasks <- struct{}{}:
				default:
					// The senders are behind: the generator, not the stack,
					// is the limit of this run.
					g.rec.Error(opSend, "generator behind")
				}
				dispatched++
			}
		}
	}
	tick.Stop()
	progress.Stop()
	close(tasks)
	wg.Wait()
	return time.Since(start)
}

// Drain waits for the messages in flight, up to cfg.DrainLimit.
func (g *Gen) Drain(ctx context.Context) {
	deadline := time.Now().Add(g.cfg.DrainLimit)
	for g.received.Load() < g.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
}

// Counters returns and resets the message and connection counters.
func (g *Gen) counters() (sent, toOffline, received, redelivered, lost, reconnects, expired int64) {
	sent, toOffline = g.sent.Swap(0), g.toOffline.Swap(0)
	expected, received := g.expected.Swap(0), g.received.Swap(0)
	lost = max(expected-received, 0)
	return sent, toOffline, received, g.redelivered.Swap(0), lost, g.reconnects.Swap(0), g.authExpired.Swap(0)
}

// Population returns the number of users and of online users.
func (g *Gen) Population() (int, int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.users), len(g.online)
}

// Close disconnects every user and clears their message identities.
func (g *Gen) Close() {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, u := range g.online {
		if u.nc != nil {
			u.nc.Close()
		}
	}
	g.following.Wait()
	for _, u := range g.users {
		u.id.Close()
	}
}
