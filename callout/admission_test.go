package callout_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/callout/mock"
	"kez.lat/kez/streams"
)

// logLines is a slog handler that keeps the messages it is given.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.lines = append(l.lines, b.String())
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

// fromHost is request with the client's address set.
func fromHost(t testing.TB, server nkeys.KeyPair, key kez.PublicKey, signer *kez.PrivateKey, host string) []byte {
	t.Helper()
	return []byte(requestFrom(t, server, key, signer, "a1B2c3D4e5F6g7-", host))
}

// newAnswerer returns a callout over users (denials counted in reg) and
// the function that answers a sign-in of key, its nonce signed by
// signer, from host, through a server of its own.
func newAnswerer(t *testing.T, users *mock.Users, reg *prometheus.Registry) func(key kez.PublicKey, signer *kez.PrivateKey, host string) ([]byte, error) {
	t.Helper()
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "USERS"}, users, streams.UserPermissions, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return func(key kez.PublicKey, signer *kez.PrivateKey, host string) ([]byte, error) {
		resp, _, err := svc.Answer(fromHost(t, server, key, signer, host), "")
		return resp, err
	}
}

// TestSignInFlood: an address that keeps failing is refused before any
// signature is checked, others are not; an unregistered key costs one
// registry round trip per moment, not one per attempt; denials are
// counted by reason and logged once per reason per interval.
func TestSignInFlood(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	// The cache knows alice; the registry round trips are counted.
	users := cached(kez.HandleRecord{Handle: h, Primary: alice.Public()})
	var asked atomic.Int32
	users.KeyHandleFn = func(context.Context, kez.PublicKey) (kez.Handle, error) {
		asked.Add(1)
		return kez.Handle{}, kez.ErrNotFound
	}
	now := time.Unix(1_800_000_000, 0)
	var clock sync.Mutex
	logs := &logLines{}
	reg := prometheus.NewRegistry()
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "USERS", Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }},
		users, streams.UserPermissions, reg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	signIn := func(host string, key kez.PublicKey, signer *kez.PrivateKey) error {
		_, _, err := svc.Answer(fromHost(t, server, key, signer, host), "")
		return err
	}

	// 100 forged sign-ins (alice's key, mallory's signature) from one address.
	for range 100 {
		if err := signIn("203.0.113.9", alice.Public(), mallory); err == nil {
			t.Fatal("a forged signature signed in")
		}
	}
	if err := signIn("203.0.113.9", alice.Public(), alice); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("alice from the flooding address: %v, want ErrThrottled", err)
	}
	if err := signIn("198.51.100.7", alice.Public(), alice); err != nil {
		t.Fatalf("alice from another address during the flood: %v", err)
	}
	clock.Lock()
	now = now.Add(61 * time.Second)
	clock.Unlock()
	if err := signIn("203.0.113.9", alice.Public(), alice); err != nil {
		t.Fatalf("alice from that address a minute later: %v", err)
	}
	if got := denials(t, reg, "bad_signature"); got != 20 {
		t.Errorf("bad_signature denials counted %v, want the 20 before the address was refused", got)
	}
	if got := denials(t, reg, "throttled"); got != 81 {
		t.Errorf("throttled denials counted %v, want 81", got)
	}

	// An unregistered key, 10 attempts in a moment: one registry look-up.
	for range 10 {
		if err := signIn("192.0.2.1", mallory.Public(), mallory); !errors.Is(err, callout.ErrUnregistered) {
			t.Fatalf("unregistered key: %v", err)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("%d registry look-ups for one unregistered key, want 1", n)
	}

	// 111 denials, a handful of log lines: one per reason per interval.
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.lines) > 6 {
		t.Errorf("%d log lines for 111 denials:\n%s", len(logs.lines), strings.Join(logs.lines, "\n"))
	}
	if len(logs.lines) == 0 || !strings.Contains(strings.Join(logs.lines, "\n"), "reason=bad_signature") {
		t.Errorf("denials not logged by reason: %q", logs.lines)
	}
}

// TestSignInFloodIPv6Block: an IPv6 client that fails from a new address
// of its /64 each time is still one client: after 20 failures the whole
// /64 is refused, another /64 is not.
func TestSignInFloodIPv6Block(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	answer := newAnswerer(t, cached(kez.HandleRecord{Handle: h, Primary: alice.Public()}), prometheus.NewRegistry())
	signIn := func(host string, signer *kez.PrivateKey) error {
		_, err := answer(alice.Public(), signer, host)
		return err
	}
	for i := range 20 {
		if err := signIn(fmt.Sprintf("2001:db8:0:1::%x", i+1), mallory); err == nil {
			t.Fatal("a forged signature signed in")
		}
	}
	if err := signIn("2001:db8:0:1:ffff::7", alice); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("alice from a new address of the flooding /64: %v, want ErrThrottled", err)
	}
	if err := signIn("2001:db8:0:2::1", alice); err != nil {
		t.Fatalf("alice from another /64: %v", err)
	}
}

// TestSignInRegistryUnanswered: a registry that does not answer for a
// key (a time-out, no leader) refuses the sign-in without calling the
// key unregistered: the next attempt asks again and signs in once the
// registry answers, and the failures are not held against the address.
// A cache entry of another key under the key's lookup (a projection that
// changed a handle's key) is not used: the key's own claim decides.
func TestSignInRegistryUnanswered(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)
	ha, _ := kez.ParseHandle("alice", "kez.test")
	hb, _ := kez.ParseHandle("bob", "kez.test")
	var answering atomic.Bool
	users := &mock.Users{
		// Bob's lookup finds alice's record: damage.
		LookupKeyFn: func(k kez.PublicKey) (kez.HandleRecord, bool) {
			if k.Equal(bob.Public()) {
				return kez.HandleRecord{Handle: ha, Primary: alice.Public()}, true
			}
			return kez.HandleRecord{}, false
		},
		KeyHandleFn: func(_ context.Context, k kez.PublicKey) (kez.Handle, error) {
			switch {
			case !answering.Load():
				return kez.Handle{}, fmt.Errorf("%w: no leader", kez.ErrUnavailable)
			case k.Equal(alice.Public()):
				return ha, nil
			case k.Equal(bob.Public()):
				return hb, nil
			}
			return kez.Handle{}, kez.ErrNotFound
		},
	}
	reg := prometheus.NewRegistry()
	answer := newAnswerer(t, users, reg)
	for range 30 {
		if _, err := answer(alice.Public(), alice, "203.0.113.5"); !errors.Is(err, callout.ErrLookup) {
			t.Fatalf("sign-in with the registry not answering: %v, want ErrLookup", err)
		}
	}
	answering.Store(true)
	if _, err := answer(alice.Public(), alice, "203.0.113.5"); err != nil {
		t.Fatalf("sign-in once the registry answers: %v", err)
	}
	if got := denials(t, reg, "registry_unavailable"); got != 30 {
		t.Errorf("registry_unavailable denials counted %v, want 30", got)
	}
	tok, err := answer(bob.Public(), bob, "198.51.100.5")
	if err != nil {
		t.Fatalf("bob with alice's record under his key: %v", err)
	}
	claims, err := jwt.DecodeAuthorizationResponseClaims(string(tok))
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(claims.Jwt)
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := streams.UserPermissions(bob.Public()); uc.Name != hb.String() || !slices.Equal(uc.Pub.Allow, jwt.StringList(pub)) {
		t.Errorf("bob signed in as %q with %v; want his own handle and permissions", uc.Name, uc.Pub.Allow)
	}
}

// denials returns kez_callout_denied_total{reason} from reg.
func denials(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kez_callout_denied_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestFloodDenialsUnanswered: a denial is answered (the broker refuses
// the client at once) until a replica denies more than 20 sign-ins in a
// second; then denials go unanswered (the broker refuses the client at
// its authorization timeout, and neither side signs, seals or checks an
// answer), while a registered key still signs in, answered. Addresses
// being refused are never answered. A quiet second later, denials are
// answered again.
func TestFloodDenialsUnanswered(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	users := cached(kez.HandleRecord{Handle: h, Primary: alice.Public()})
	now := time.Unix(1_800_000_000, 0)
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "USERS", Now: func() time.Time { return now }},
		users, streams.UserPermissions, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	signIn := func(host string, key kez.PublicKey, signer *kez.PrivateKey) ([]byte, error) {
		resp, _, err := svc.Answer(fromHost(t, server, key, signer, host), "")
		return resp, err
	}
	bogus := func(i int) ([]byte, error) {
		k, _ := kez.GenerateKey(nil)
		// One address each: none is refused for failing.
		return signIn("198.51.100."+strconv.Itoa(i%250), k.Public(), k)
	}
	for i := range 21 {
		if resp, err := bogus(i); err == nil || resp == nil {
			t.Fatalf("bogus sign-in %d of 21 in a second: err %v, answered %v; want denied and answered", i+1, err, resp != nil)
		}
	}
	if resp, err := bogus(21); !errors.Is(err, callout.ErrUnregistered) || resp != nil {
		t.Fatalf("the 22nd bogus sign-in in a second: err %v, answered %v; want denied, unanswered", err, resp != nil)
	}
	if resp, err := signIn("192.0.2.1", alice.Public(), alice); err != nil || resp == nil {
		t.Fatalf("alice during the flood: err %v, answered %v", err, resp != nil)
	}
	now = now.Add(2 * time.Second)
	if resp, err := bogus(0); err == nil || resp == nil {
		t.Fatalf("a bogus sign-in after a quiet second: err %v, answered %v; want denied and answered", err, resp != nil)
	}
	// 20 failures from one address: it is refused, unanswered.
	mallory, _ := kez.GenerateKey(nil)
	for range 20 {
		signIn("203.0.113.9", alice.Public(), mallory)
	}
	now = now.Add(2 * time.Second)
	if resp, err := signIn("203.0.113.9", alice.Public(), alice); !errors.Is(err, callout.ErrThrottled) || resp != nil {
		t.Fatalf("from a refused address: err %v, answered %v; want ErrThrottled, unanswered", err, resp != nil)
	}
}
