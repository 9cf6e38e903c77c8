package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/p2p"
)

// ACL is the relay's access control: it allows a reservation or a relayed
// connection only for peers whose ed25519 key is registered on the home
// server. Answers are cached (registered keys for ACLPositiveTTL, unknown
// ones for ACLNegativeTTL) in a bounded cache; look-ups that fail (home
// server unreachable, timed out or answering 5xx) deny and are not
// cached.
type ACL struct {
	// Now is the clock; time.Now if nil. Set it before first use.
	Now func() time.Time

	home   string
	hc     *http.Client
	posTTL time.Duration
	negTTL time.Duration
	size   int
	logger *slog.Logger

	mu       sync.Mutex
	cache    map[kez.PublicKey]aclEntry
	inflight map[kez.PublicKey]*lookup

	decisions *prometheus.CounterVec
	lookups   *prometheus.CounterVec
}

type aclEntry struct {
	registered bool
	expires    time.Time
}

// lookup is one home-server request that concurrent checks of the same
// key wait for.
type lookup struct {
	done       chan struct{}
	registered bool
	err        error
}

var _ relayv2.ACLFilter = (*ACL)(nil)

// NewACL returns the ACL of cfg (HomeServer, ACL* fields), with its
// metrics registered on reg.
func NewACL(cfg Config, reg prometheus.Registerer, logger *slog.Logger) *ACL {
	a := &ACL{
		home:   strings.TrimRight(cfg.HomeServer, "/"),
		hc:     &http.Client{Timeout: cfg.ACLTimeout},
		posTTL: cfg.ACLPositiveTTL, negTTL: cfg.ACLNegativeTTL, size: cfg.ACLCacheSize,
		logger:   logger,
		cache:    map[kez.PublicKey]aclEntry{},
		inflight: map[kez.PublicKey]*lookup{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_relay_acl_decisions_total", Help: "ACL decisions by request (reserve, connect) and result (allow, deny).",
		}, []string{"op", "result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_relay_acl_lookups_total", Help: "Home-server key look-ups (cache misses) by result (registered, unknown, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(a.decisions, a.lookups, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kez_relay_acl_cache_entries", Help: "Keys in the ACL cache.",
	}, func() float64 { a.mu.Lock(); defer a.mu.Unlock(); return float64(len(a.cache)) }))
	return a
}

// AllowReserve implements relay.ACLFilter: p may hold a reservation if
// its key is registered.
func (a *ACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	ok := a.Allowed(context.Background(), p)
	a.count("reserve", ok)
	if !ok {
		a.logger.Info("reservation denied", "peer", p.String())
	}
	return ok
}

// AllowConnect implements relay.ACLFilter: src may open a circuit to dest
// if both keys are registered (dest's was checked when it reserved; it is
// checked again, from the cache, so the rule reads the same both ways).
func (a *ACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	ctx := context.Background()
	ok := a.Allowed(ctx, src) && a.Allowed(ctx, dest)
	a.count("connect", ok)
	if !ok {
		a.logger.Info("circuit denied", "src", src.String(), "dest", dest.String())
	}
	return ok
}

func (a *ACL) count(op string, ok bool) {
	res := "deny"
	if ok {
		res = "allow"
	}
	a.decisions.WithLabelValues(op, res).Inc()
}

func (a *ACL) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Allowed reports whether p is an ed25519 peer whose key is registered on
// the home server, from the cache when it can.
func (a *ACL) Allowed(ctx context.Context, p peer.ID) bool {
	key, err := p2p.KeyOf(p)
	if err != nil {
		return false
	}
	a.mu.Lock()
	if e, ok := a.cache[key]; ok && a.now().Before(e.expires) {
		a.mu.Unlock()
		return e.registered
	}
	l, waiting := a.inflight[key]
	if !waiting {
		l = &lookup{done: make(chan struct{})}
		a.inflight[key] = l
	}
	a.mu.Unlock()

	if waiting {
		select {
		case <-l.done:
			return l.err == nil && l.registered
		case <-ctx.Done():
			return false
		}
	}

	l.registered, l.err = a.lookup(ctx, key)
	a.mu.Lock()
	delete(a.inflight, key)
	if l.err == nil {
		ttl := a.negTTL
		if l.registered {
			ttl = a.posTTL
		}
		a.put(key, aclEntry{registered: l.registered, expires: a.now().Add(ttl)})
	}
	a.mu.Unlock()
	close(l.done)

	switch {
	case l.err != nil:
		a.lookups.WithLabelValues("error").Inc()
		a.logger.Warn("home server look-up failed: denying", "key", key.String(), "err", l.err)
		return false
	case l.registered:
		a.lookups.WithLabelValues("registered").Inc()
	default:
		a.lookups.WithLabelValues("unknown").Inc()
	}
	return l.registered
}

// put stores e, making room first if the cache is full: expired entries
// go, and if none had expired, arbitrary ones (map order) until there is
// room. a.mu is held.
func (a *ACL) put(key kez.PublicKey, e aclEntry) {
	if _, ok := a.cache[key]; !ok && len(a.cache) >= a.size {
		now := a.now()
		for k, old := range a.cache {
			if !now.Before(old.expires) {
				delete(a.cache, k)
			}
		}
		for k := range a.cache {
			if len(a.cache) < a.size {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[key] = e
}

// errUnavailable: the home server did not give a usable answer.
var errUnavailable = errors.New("home server unavailable")

// lookup asks the home server about key: 200 with key's record means
// registered, 404 unknown, anything else an error.
func (a *ACL) lookup(ctx context.Context, key kez.PublicKey) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.home+"/v1/k/"+key.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, fmt.Errorf("%w: read answer: %v", errUnavailable, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var rec struct {
			Primary string `json:"primary"`
		}
		if err := json.Unmarshal(body, &rec); err != nil {
			return false, fmt.Errorf("%w: answer is not a record", errUnavailable)
		}
		got, err := kez.ParsePublicKey(rec.Primary)
		if err != nil || !got.Equal(key) {
			return false, fmt.Errorf("%w: record is for another key", errUnavailable)
		}
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("%w: answered %s", errUnavailable, resp.Status)
	}
}

// HomeReady is a readiness check: the home server answers HTTP (its
// /v1/livez), so that look-ups of keys not cached can be made.
func (a *ACL) HomeReady(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.home+"/v1/livez", nil)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnavailable, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w: answered %s", errUnavailable, resp.Status)
	}
	return nil
}
