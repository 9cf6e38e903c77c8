package streams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// RateLimiter limits requests per client address with the KEZ_RATELIMIT
// stream: each request is a message on the client's subject, the stream
// keeps a subject's messages for the window (max age) and refuses more
// than the limit per subject (discard new per subject). The count lives
// in JetStream, so the limit holds across every replica.
//
// A limiter of requests per client address has a wider tier, net: an
// IPv6 client's requests are counted per /48 (kez.ClientNet) as well, in
// the KEZ_NET_RATELIMIT stream, with a larger limit, so that the holder
// of a /48 does not get the limit once per /64. IPv4 clients have no
// wider tier (carrier NATs: see kez.ClientNet).
//
// The stream is memory storage, so a broker restart (one server, or a
// whole cluster) loses it: a limiter that finds its stream gone creates
// it again, from the configuration it holds, and retries.
type RateLimiter struct {
	js      jetstream.JetStream
	subject func(token string) string // the subject counting one token's requests
	stream  jetstream.StreamConfig    // the stream, to create it again
	turns   *Turns
	net     *RateLimiter // the /48 tier; nil for limits not per address

	mu       sync.Mutex
	ensured  time.Time // when the stream was last created again
	recreate int       // how many times it was
}

// NewRateLimiter returns a limiter of one kind of request (such as
// RateLimitRegister) on the streams Setup created from cfg: at most
// cfg.RegisterLimit per client address and cfg.NetLimit() per IPv6 /48.
func NewRateLimiter(js jetstream.JetStream, cfg Config, kind string) *RateLimiter {
	return &RateLimiter{js: js, subject: func(token string) string { return rateLimitSubject(kind, token) },
		stream: registerRateLimitConfig(cfg),
		net: &RateLimiter{js: js, subject: func(token string) string { return netRateLimitSubject(kind, token) },
			stream: registerNetRateLimitConfig(cfg)},
	}
}

func registerRateLimitConfig(cfg Config) jetstream.StreamConfig {
	return rateLimitStreamConfig(RateLimitStream,
		"kez-chat: one message per rate-limited request, kept for the window",
		RateLimitSubjects, cfg.Replicas, cfg.RegisterLimit, cfg.RegisterWindow)
}

func registerNetRateLimitConfig(cfg Config) jetstream.StreamConfig {
	return rateLimitStreamConfig(NetRateLimitStream,
		"kez-chat: one message per rate-limited request from an IPv6 client, on its /48, kept for the window",
		NetRateLimitSubjects, cfg.Replicas, cfg.NetLimit(), cfg.RegisterWindow)
}

// Recreated reports how many times the limiter found its streams gone
// and created them again.
func (l *RateLimiter) Recreated() int {
	n := 0
	if l.net != nil {
		n = l.net.Recreated()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return n + l.recreate
}

// RateLimitRegister is the kind of limit on registration attempts.
const RateLimitRegister = "register"

// Allow records one request from addr and returns
// kez.ErrRateLimited if addr is over its limit. IPv6 clients are limited
// per /64, the block one subscriber usually holds, and per /48
// (kez.ErrNetRateLimited). A request the /64 refuses is not counted
// against the /48: one /64 flooding does not use up its neighbours'
// budget faster than it may itself.
func (l *RateLimiter) Allow(ctx context.Context, addr netip.Addr) error {
	if err := l.allow(ctx, clientToken(addr)); err != nil {
		return err
	}
	n := kez.ClientNet(addr)
	if !n.IsValid() || l.net == nil {
		return nil
	}
	err := l.net.allow(ctx, netToken(n))
	if errors.Is(err, kez.ErrRateLimited) {
		return kez.ErrNetRateLimited
	}
	return err
}

// allow records one request counted under token (a subject token) and
// returns kez.ErrRateLimited if token is over its limit.
func (l *RateLimiter) allow(ctx context.Context, token string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// One id for every attempt: a record stored by an attempt whose
	// answer was lost is not counted again (the stream's 2 min dedup).
	id := rand.Text()
	publish := func() error {
		var err error
		for attempt := 0; ; attempt++ {
			// A leader that froze or died answers nothing: give the
			// attempt up and ask again, the stream electing another.
			err, _ = guarded(ctx, l.turns, nil, func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, limiterAttempt)
				defer cancel()
				_, err := l.js.Publish(ctx, l.subject(token), nil, jetstream.WithMsgID(id))
				return err
			})
			if ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
				errors.Is(err, nats.ErrTimeout)) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(backoff(attempt + 6)):
			}
		}
	}
	err := publish()
	for errors.Is(err, jetstream.ErrNoStreamResponse) && ctx.Err() == nil {
		// Nothing stores the subject: the memory stream went with a
		// broker restart, or a cluster is electing its leader (then
		// creating it, a meta operation, may wait on a node that froze).
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		_, ierr := l.js.Stream(ictx, l.stream.Name)
		cancel()
		if errors.Is(ierr, jetstream.ErrStreamNotFound) {
			if cerr := l.ensure(ctx); cerr != nil {
				return fmt.Errorf("%w: rate limiter: %v; creating its stream again: %v", kez.ErrUnavailable, err, cerr)
			}
		} else {
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		err = publish()
	}
	if err == nil {
		return nil
	}
	// The stream holds nothing but these per-subject capped records, so
	// a refused store (10077, "maximum messages per subject exceeded") is
	// the limit; the code is matched, not the text, which may change.
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed {
		return kez.ErrRateLimited
	}
	return fmt.Errorf("%w: rate limiter: %v", kez.ErrUnavailable, err)
}

// ensure creates the limiter's stream again, once for every request that
// found it missing at about the same time.
func (l *RateLimiter) ensure(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.ensured) < time.Second {
		return nil // another request just did
	}
	if _, err := l.js.CreateOrUpdateStream(ctx, l.stream); err != nil {
		return fmt.Errorf("create stream %s: %w", l.stream.Name, err)
	}
	l.ensured = time.Now()
	l.recreate++
	return nil
}

// rateLimitStreamConfig is the configuration of a rate-limit stream: one
// message per request on the subject of what is limited, kept for window,
// at most limit per subject (discard new per subject).
func rateLimitStreamConfig(name, desc, subjects string, replicas, limit int, window time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    []string{subjects},
		// Counters need not survive a broker restart; memory keeps the
		// limiter off the fsync path.
		Storage:              jetstream.MemoryStorage,
		Replicas:             replicas,
		MaxAge:               window,
		MaxMsgsPerSubject:    int64(limit),
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgSize:           64,
	}
}

// limiterAttempt bounds one attempt to record a request: a memory store
// answers in milliseconds, and a turn (Guard) cuts an attempt sent to a
// leader that froze or died sooner.
const limiterAttempt = 5 * time.Second

// Guard makes the limiter send a record again at a turn (a leader
// elected, the connection back) instead of waiting for an answer that
// will not come.
func (l *RateLimiter) Guard(turns *Turns) {
	l.turns = turns
	if l.net != nil {
		l.net.Guard(turns)
	}
}

// errCodeStoreFailed is JetStream's JSStreamStoreFailedF.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// clientToken is a subject-safe token for an address: hex of the IPv4
// address or of the IPv6 /64 prefix.
func clientToken(addr netip.Addr) string {
	addr = kez.ClientBlock(addr)
	if addr.Is4() {
		b := addr.As4()
		return hex.EncodeToString(b[:])
	}
	b := addr.As16()
	return hex.EncodeToString(b[:8])
}

// netToken is a subject-safe token for an IPv6 /48: hex of its 6 bytes.
func netToken(p netip.Prefix) string {
	b := p.Addr().As16()
	return hex.EncodeToString(b[:6])
}
