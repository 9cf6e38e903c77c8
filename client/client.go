package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/message"
	"kez.lat/kez/mnemonic"
	"kez.lat/kez/sigchain"
)

// Config is what a [Client] needs beyond its profile.
type Config struct {
	// Server is the home server's base URL. Register and Recover need
	// it; for other calls it overrides the URL saved in the account.
	Server string
	// Domain qualifies bare handles before an account exists (register):
	// when empty it is the server URL's host name, or kez.DefaultDomain
	// for an IP address or localhost.
	Domain string
	// HTTP is the client for the home server, other domains and the
	// sig-servers; http.DefaultClient if nil.
	HTTP *http.Client
	// RemoteURL returns the home server URL of another domain; by default
	// https://<domain> (DESIGN §2: bob@other.example is resolved at
	// https://other.example/v1/u/bob).
	RemoteURL func(domain string) string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Rand is the randomness of keys and messages; crypto/rand if nil.
	Rand io.Reader
	// NATSOptions are added to the broker connection (tests, names).
	NATSOptions []nats.Option
	// RelayOnly keeps the user's IP address from other users: file
	// transfers go only through the relays the home server advertises
	// (see p2p.Config.RelayOnly), and the sigchain's p2p endpoint and
	// file announcements list relay circuit addresses only (direct ones
	// an earlier run published are replaced when the node starts or a
	// file is shared).
	RelayOnly bool
	// Insecure allows plaintext (http://, nats://) connections to hosts
	// other than this machine. Without it they fail with [ErrInsecure]:
	// whoever is on the path could rewrite handle records and sigchains
	// and read the traffic. Loopback needs no TLS.
	Insecure bool
	// UserAgent is the User-Agent of every HTTP request; by default
	// kez-chat/<version> (commit <revision>; <go>; <os/arch>) from the
	// binary's build information.
	UserAgent string
	// Note receives what the user should know that is not an error, such
	// as the OS keyring failing and the key going to the key file
	// instead; ignored if nil.
	Note func(msg string)
}

// Client acts for the user of one profile. Its methods are safe for
// concurrent use, and several Clients (processes) may share a profile:
// see [Profile].
type Client struct {
	cfg Config
	p   *Profile

	// dialMu is held for a broker dial (see conn), c.mu only around
	// reads and writes of the fields below it.
	dialMu sync.Mutex
	mu     sync.Mutex
	nc     *nats.Conn
	closes int // Close calls, so that a dial under way learns of one
	key    *kez.PrivateKey
	id     *message.Identity // key's, made by identity, cleared by Close
	store  *blob.Store
	// holding is set while [Client.HoldListener] holds the listen lock.
	holding bool
}

// New returns a client of profile p.
func New(p *Profile, cfg Config) *Client {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.RemoteURL == nil {
		cfg.RemoteURL = func(domain string) string { return "https://" + domain }
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = defaultUserAgent()
	}
	cfg.HTTP = userAgentHTTP(cfg.HTTP, cfg.UserAgent)
	if !cfg.Insecure {
		cfg.HTTP = secureHTTP(cfg.HTTP)
	}
	return &Client{cfg: cfg, p: p}
}

// Profile returns the client's profile.
func (c *Client) Profile() *Profile { return c.p }

// Close closes the broker connection, if any, and clears the secrets of
// the message identity (the X25519 scalar and the shared secret with each
// contact). A later call makes them again.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	if c.id != nil {
		c.id.Close()
		c.id = nil
	}
}

// identity returns the message identity of key, the profile's key from
// account: one per client, so that the shared secret with a contact is
// computed once, not per message.
func (c *Client) identity(key *kez.PrivateKey) *message.Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == nil || !c.id.Public().Equal(key.Public()) {
		if c.id != nil {
			c.id.Close()
		}
		c.id = message.NewIdentity(key)
	}
	return c.id
}

// Domain returns the home domain: the account's, else [Config.Domain],
// else the server URL's host name (kez.DefaultDomain for an address or
// localhost).
func (c *Client) Domain() string {
	if a, err := c.p.Account(); err == nil {
		return a.Handle.Domain()
	}
	if c.cfg.Domain != "" {
		return c.cfg.Domain
	}
	if u, err := url.Parse(c.cfg.Server); err == nil {
		host := u.Hostname()
		if host != "" && host != "localhost" && net.ParseIP(host) == nil && kez.ValidateDomain(host) == nil {
			return host
		}
	}
	return kez.DefaultDomain
}

// ParseHandle parses a handle as the user typed it (alice, @alice,
// @alice@other.example), qualifying a bare one with [Client.Domain].
func (c *Client) ParseHandle(s string) (kez.Handle, error) {
	return kez.ParseHandle(s, c.Domain())
}

// server returns the home server URL to use.
func (c *Client) server() (string, error) {
	if c.cfg.Server != "" {
		return c.cfg.Server, nil
	}
	if a, err := c.p.Account(); err == nil && a.Server != "" {
		return a.Server, nil
	}
	return "", withHint(errors.New("no home server chosen"), "pass --server URL (or set KEZ_SERVER)")
}

func (c *Client) home() (Home, error) {
	s, err := c.server()
	if err != nil {
		return Home{}, err
	}
	return Home{BaseURL: s, HTTP: c.cfg.HTTP}, nil
}

// homeOf returns the home server of handle h's domain.
func (c *Client) homeOf(h kez.Handle) (Home, error) {
	if h.Domain() == c.Domain() {
		return c.home()
	}
	return Home{BaseURL: c.cfg.RemoteURL(h.Domain()), HTTP: c.cfg.HTTP}, nil
}

func (c *Client) sig(base string) *Sigchains {
	return &Sigchains{BaseURL: base, HTTP: c.cfg.HTTP}
}

// account returns the account and the key, checking that they agree.
func (c *Client) account() (Account, *kez.PrivateKey, error) {
	a, err := c.p.Account()
	if err != nil {
		if errors.Is(err, ErrNoAccount) && c.p.HasKey() {
			return a, nil, withHint(err, "the profile holds a key: a registration or recovery stopped before the account was saved",
				"the same kez-chat register <handle> again, or kez-chat recover with the key's 24 words, finishes it")
		}
		if errors.Is(err, ErrNoAccount) {
			return a, nil, withHint(err, "kez-chat register <handle> creates one; kez-chat recover restores one from its 24 words")
		}
		return a, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == nil {
		k, err := c.p.Key()
		if err != nil {
			return a, nil, err
		}
		if !k.Public().Equal(a.Primary) {
			return a, nil, fmt.Errorf("the profile's key file does not match its account %s", a.Handle)
		}
		c.key = k
	}
	return a, c.key, nil
}

// Account returns the profile's account ([ErrNoAccount] if none).
func (c *Client) Account() (Account, error) {
	a, _, err := c.account()
	return a, err
}

// Key returns the profile's private key, for the paper backup.
func (c *Client) Key() (*kez.PrivateKey, error) {
	_, k, err := c.account()
	return k, err
}

// UnfinishedKey returns the profile's key when the profile holds a key
// but no account: a Register or Recover stopped after saving the key
// and before saving the account. Registering it again under the same
// handle, or recovering it, finishes that. It returns [ErrNoAccount] if
// the profile holds no key, [ErrAccountExists] if it holds an account.
func (c *Client) UnfinishedKey() (*kez.PrivateKey, error) {
	if !c.p.HasKey() {
		return nil, ErrNoAccount
	}
	if _, err := c.p.Account(); err == nil {
		return nil, ErrAccountExists
	} else if !errors.Is(err, ErrNoAccount) {
		return nil, err
	}
	return c.p.Key()
}

// NewBackup makes a new key and the 24 words of its paper backup. Nothing
// is saved: show the words, have the user confirm them, then [Client.Register].
func (c *Client) NewBackup() (*kez.PrivateKey, []string, error) {
	k, err := kez.GenerateKey(c.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	seed := k.Seed()
	defer clear(seed)
	words, err := mnemonic.FromSeed(seed)
	if err != nil {
		return nil, nil, err
	}
	return k, words, nil
}

// Register registers handle h for key on the home server, saves the key
// and the account in the profile and publishes the first sigchain events
// (the nats inbox and the p2p node). A failure to publish them does not
// undo the registration: it is returned as chainErr, and
// [Client.PublishEndpoints] retries.
//
// A profile that holds key but no account (a Register or Recover that
// stopped after saving the key) is finished: registering the same handle
// again is answered by the home server with the registration it holds.
// A profile holding an account refuses ([ErrAccountExists]), one holding
// another key without an account too ([ErrOtherKey]).
func (c *Client) Register(ctx context.Context, h kez.Handle, key *kez.PrivateKey) (a Account, chainErr error, err error) {
	saved, err := c.claimProfile(key, "register into another profile: --profile NAME")
	if err != nil {
		return a, nil, err
	}
	home, err := c.home()
	if err != nil {
		return a, nil, err
	}
	// The key is saved before the server is asked: an answer lost after
	// the server registered it (a timeout, a dropped connection, the
	// process stopped) must not lose the only key of a handle that is
	// never given back; the same register again then finishes it. A
	// refusal (4xx: nothing registered) takes it out again.
	fresh := !saved
	if fresh {
		if err := c.saveKey(key); err != nil {
			return a, nil, err
		}
	}
	rec, err := home.Register(ctx, kez.NewRegistrationRequest(key, h, c.cfg.Now()))
	if err != nil {
		var ae *APIError
		if fresh && errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
			if rerr := c.p.RemoveKey(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		err = registerHint(err, h, home.BaseURL, c.cfg.Now())
		if !fresh && errors.Is(err, kez.ErrKeyTaken) {
			err = c.keyTakenHint(ctx, home, key, err)
		}
		return a, nil, err
	}
	if !rec.Primary.Equal(key.Public()) || rec.Handle != h {
		return a, nil, fmt.Errorf("%w: registered %s for %s", ErrBadRecord, rec.Handle, rec.Primary)
	}
	return c.saveAccount(ctx, home.BaseURL, rec, key, true, sigchain.State{Key: rec.Primary})
}

// claimProfile checks that the profile can take the account of key: it
// holds no account, and no key or key itself, saved by a Register or
// Recover that stopped before saving the account (saved is then true).
// hint is the advice when the profile is taken.
func (c *Client) claimProfile(key *kez.PrivateKey, hint string) (saved bool, err error) {
	k, err := c.UnfinishedKey()
	switch {
	case errors.Is(err, ErrNoAccount):
		return false, nil
	case errors.Is(err, ErrAccountExists):
		return false, withHint(err, hint)
	case err != nil:
		return false, err
	case !k.Public().Equal(key.Public()):
		return false, withHint(ErrOtherKey,
			"a registration or recovery into this profile stopped before it was saved: the same kez-chat register <handle> again, or kez-chat recover with that key's 24 words, finishes it",
			hint)
	}
	return true, nil
}

// keyTakenHint explains the refusal to register key, the profile's key
// without an account, under another handle than the one it has.
func (c *Client) keyTakenHint(ctx context.Context, home Home, key *kez.PrivateKey, err error) error {
	rec, lerr := home.Key(ctx, key.Public())
	if lerr != nil || !rec.Primary.Equal(key.Public()) {
		return err
	}
	return withHint(err, fmt.Sprintf("this profile's key was registered as %s by a registration that stopped before it was saved: kez-chat register %s finishes it",
		rec.Handle, rec.Handle))
}

// saveAccount saves key (unless the profile holds it already: saved) and
// the account of rec (whose sigchain is st) in the profile, then
// publishes the endpoints the chain lacks; the common end of Register
// and Recover.
func (c *Client) saveAccount(ctx context.Context, server string, rec Record, key *kez.PrivateKey, saved bool, st sigchain.State) (a Account, chainErr error, err error) {
	a = Account{Handle: rec.Handle, Primary: rec.Primary, Server: server, NATSURL: rec.NATSURL,
		Inbox: rec.Inbox, SigchainURL: rec.SigchainBase, RegisteredAt: rec.RegisteredAt, Chain: st}
	if !saved {
		if err := c.saveKey(key); err != nil {
			return a, nil, err
		}
	}
	if err := c.p.SaveAccount(a); err != nil {
		return a, nil, err
	}
	a, chainErr = c.PublishEndpoints(ctx)
	return a, chainErr, nil
}

// saveKey saves the key in the profile, with a note if the keyring was
// tried and the key went to the file instead.
func (c *Client) saveKey(key *kez.PrivateKey) error {
	saved, err := c.p.SaveKey(key)
	if err != nil {
		return err
	}
	if saved.Fallback != nil && c.cfg.Note != nil {
		c.cfg.Note(fmt.Sprintf("the OS keyring did not take the key (%v): it is in the key file %s (mode 0600) instead",
			saved.Fallback, c.p.path(keyFile)))
	}
	return nil
}

func registerHint(err error, h kez.Handle, server string, now time.Time) error {
	var ae *APIError
	errors.As(err, &ae)
	switch {
	case errors.Is(err, kez.ErrStaleTimestamp):
		return clockHint(fmt.Errorf("register %s: %w", h, err), ae, now)
	case errors.Is(err, kez.ErrStoreUnavailable):
		wait := "a few minutes"
		if ae != nil && ae.RetryAfter > 0 {
			wait = ae.RetryAfter.String()
		}
		return withHint(fmt.Errorf("register %s: the home server %w", h, kez.ErrStoreUnavailable),
			"try the same command again in "+wait+"; if it lasts, tell the server's operator (its store is full or failing)")
	case errors.Is(err, kez.ErrHandleTaken), errors.Is(err, kez.ErrHandleTooSimilar), errors.Is(err, kez.ErrReservedHandle):
		return withHint(fmt.Errorf("register %s: %w", h, err), "choose another handle; nothing was registered")
	case errors.Is(err, kez.ErrWrongDomain):
		return withHint(fmt.Errorf("register %s: %w", h, err), "qualify the handle with the server's domain (name@domain) or pass --domain")
	case errors.Is(err, ErrUnreachable):
		return withHint(fmt.Errorf("register %s: %w", h, err),
			"is the home server running? (--server, now "+server+")",
			"the key is saved in this profile: the same kez-chat register "+h.String()+" again finishes the registration, whether or not it went through")
	}
	return fmt.Errorf("register %s: %w", h, err)
}

// clockHint explains a stale_timestamp refusal: the signed time was too
// far from the server's clock. With the server's Date it says by how
// much and which way the own clock is off.
func clockHint(err error, ae *APIError, now time.Time) error {
	fix := "set the clock right (turn on automatic time: `timedatectl set-ntp true` on Linux, Date & Time settings elsewhere), then try again"
	if ae == nil || ae.Date.IsZero() {
		return withHint(err, "this computer's clock may be off by more than a few minutes", fix)
	}
	skew := now.Sub(ae.Date)
	way := "ahead of"
	if skew < 0 {
		skew, way = -skew, "behind"
	}
	return withHint(fmt.Errorf("%w: this computer's clock is %s %s the home server's", err, skew.Round(time.Second), way),
		"the server's time was "+ae.Date.UTC().Format("2006-01-02 15:04:05 UTC")+", this computer's "+now.UTC().Format("2006-01-02 15:04:05 UTC"),
		fix)
}

// PublishEndpoints makes sure the own sigchain advertises the nats inbox
// and the p2p node (by peer ID; [Client.Serve] adds its addresses).
func (c *Client) PublishEndpoints(ctx context.Context) (Account, error) {
	return c.extendChain(ctx, func(a Account, st sigchain.State) []chainEvent {
		nep := sigchain.NATSEndpoint{URL: a.NATSURL, Inbox: kez.InboxSubject(a.Primary)}
		var want []chainEvent
		if !hasNATS(st, nep) {
			want = append(want, chainEvent{sigchain.TypeAddEndpoint, nep})
		}
		if p2pEndpoint(st, PeerID(a.Primary)) == nil {
			want = append(want, chainEvent{sigchain.TypeAddEndpoint, sigchain.P2PEndpoint{PeerID: PeerID(a.Primary)}})
		}
		return want
	})
}

// chainEvent is an event to append to the own sigchain.
type chainEvent struct {
	Type string
	Body any
}

// extendChain appends to the own sigchain the events want returns for
// its current state: it fetches and verifies the chain (against the pin
// the account holds), appends, and saves the new tail in the account.
// An append that lost a race with another process of the same user (a
// listen publishing its addresses while a share publishes its manifest)
// is retried on the new tail.
func (c *Client) extendChain(ctx context.Context, want func(Account, sigchain.State) []chainEvent) (Account, error) {
	for attempt := 1; ; attempt++ {
		a, err := c.extendChainOnce(ctx, want)
		var ae *APIError
		if attempt == maxChainAttempts || !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			return a, err
		}
		// Apart, so that the racers do not meet again at once.
		select {
		case <-time.After(time.Duration(attempt) * time.Duration(10+mrand.IntN(40)) * time.Millisecond):
		case <-ctx.Done():
			return a, ctx.Err()
		}
	}
}

// maxChainAttempts bounds the appends extendChain tries.
const maxChainAttempts = 8

func (c *Client) extendChainOnce(ctx context.Context, want func(Account, sigchain.State) []chainEvent) (Account, error) {
	a, key, err := c.account()
	if err != nil {
		return a, err
	}
	sc := c.sig(a.SigchainURL)
	// The new events chain on the tail event itself, which the state does
	// not hold: fetch the events from the pinned seqno on and verify them
	// against the pin, as Sigchains.Update would.
	tctx, cancel := withTimeout(ctx)
	events, err := sc.Events(tctx, a.Primary, a.Chain.Tail.Seqno)
	cancel()
	if err != nil {
		return a, fmt.Errorf("own sigchain: %w", err)
	}
	st, err := a.Chain.Extend(events)
	if err != nil {
		return a, fmt.Errorf("own sigchain: %w", err)
	}
	var prev *sigchain.Event
	if n := len(events); n > 0 {
		prev = &events[n-1]
	}
	for _, e := range want(a, st) {
		ev, err := sigchain.Next(key, prev, e.Type, e.Body, c.cfg.Now())
		if err != nil {
			return a, err
		}
		if _, err := sc.Append(ctx, ev); err != nil {
			return a, fmt.Errorf("publish %s: %w", e.Type, err)
		}
		run := []sigchain.Event{ev}
		if prev != nil {
			run = []sigchain.Event{*prev, ev}
		}
		if st, err = st.Extend(run); err != nil {
			return a, err
		}
		prev = &ev
	}
	a.Chain = st
	if err := c.p.SaveAccount(a); err != nil {
		return a, err
	}
	return a, nil
}

func hasNATS(st sigchain.State, e sigchain.NATSEndpoint) bool {
	for _, n := range st.NATS {
		if n == e {
			return true
		}
	}
	return false
}

// p2pEndpoint returns the chain's p2p endpoint of peerID, or nil.
func p2pEndpoint(st sigchain.State, peerID string) *sigchain.P2PEndpoint {
	for i := range st.P2P {
		if st.P2P[i].PeerID == peerID {
			return &st.P2P[i]
		}
	}
	return nil
}
