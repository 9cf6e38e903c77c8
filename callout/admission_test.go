package callout_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/callout/mock"
	"kez.lat/kez/nats/natstest"
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

// newAnswerer returns a callout over users (denials counted in reg, its
// clock now; nil for the real one) and the function that answers a
// sign-in of key, its nonce signed by signer, from host, through a
// server of its own.
func newAnswerer(t *testing.T, users *mock.Users, reg *prometheus.Registry, now func() time.Time) func(key kez.PublicKey, signer *kez.PrivateKey, host string) ([]byte, error) {
	t.Helper()
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "USERS", Now: now}, users, streams.UserPermissions, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return func(key kez.PublicKey, signer *kez.PrivateKey, host string) ([]byte, error) {
		resp, _, err := svc.Answer(fromHost(t, server, key, signer, host), "")
		return resp, err
	}
}

// TestSignInFlood: a key that keeps failing from an address is refused
// from there before any signature is checked, not from other addresses;
// an unregistered key costs one
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
		t.Fatalf("alice's key from the address forging it: %v, want ErrThrottled", err)
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
	if got := denials(t, reg, "throttled_key"); got != 81 {
		t.Errorf("throttled_key denials counted %v, want 81", got)
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
// of its /64 each time, with a new key each time, is still one client:
// after 100 failures the whole /64 is refused, another /64 is not.
func TestSignInFloodIPv6Block(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	reg := prometheus.NewRegistry()
	answer := newAnswerer(t, cached(kez.HandleRecord{Handle: h, Primary: alice.Public()}), reg, nil)
	for i := range 100 {
		k, _ := kez.GenerateKey(nil)
		if _, err := answer(k.Public(), mallory, fmt.Sprintf("2001:db8:0:1::%x", i+1)); err == nil {
			t.Fatal("a forged signature signed in")
		}
	}
	if _, err := answer(alice.Public(), alice, "2001:db8:0:1:ffff::7"); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("alice from a new address of the flooding /64: %v, want ErrThrottled", err)
	}
	if got := denials(t, reg, "throttled"); got != 1 {
		t.Errorf("throttled (address) denials counted %v, want 1", got)
	}
	if _, err := answer(alice.Public(), alice, "2001:db8:0:2::1"); err != nil {
		t.Fatalf("alice from another /64: %v", err)
	}
}

// TestSignInFloodIPv6Net: a /48 that fails from a new /64 each time,
// each /64 far below its own budget, is refused as a whole once it
// failed 200 times, for a minute; another /48 is not. IPv4 has no such
// wider tier: as many failures spread over one /24 refuse none of it.
func TestSignInFloodIPv6Net(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	now := time.Unix(1_800_000_000, 0)
	reg := prometheus.NewRegistry()
	answer := newAnswerer(t, cached(kez.HandleRecord{Handle: h, Primary: alice.Public()}), reg, func() time.Time { return now })
	signIn := func(host string, key kez.PublicKey, signer *kez.PrivateKey) error {
		_, err := answer(key, signer, host)
		return err
	}
	for i := range 200 {
		if err := signIn(fmt.Sprintf("2001:db8:5:%x::1", i), mallory.Public(), alice); !errors.Is(err, kez.ErrBadSignature) {
			t.Fatalf("failure %d from its own /64: %v, want a bad signature (no /64 is over its budget)", i+1, err)
		}
		// An IPv4 /24 failing as much: twice from each of 100 addresses.
		if err := signIn(fmt.Sprintf("203.0.113.%d", i%100), mallory.Public(), alice); !errors.Is(err, kez.ErrBadSignature) {
			t.Fatalf("IPv4 failure %d: %v, want a bad signature", i+1, err)
		}
	}
	if err := signIn("2001:db8:5:ffff::1", alice.Public(), alice); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("alice from a new /64 of the flooding /48: %v, want ErrThrottled", err)
	}
	if got := denials(t, reg, "throttled_48"); got != 1 {
		t.Errorf("throttled_48 denials counted %v, want 1", got)
	}
	if err := signIn("2001:db8:6::1", alice.Public(), alice); err != nil {
		t.Fatalf("alice from another /48: %v", err)
	}
	if err := signIn("203.0.113.200", alice.Public(), alice); err != nil {
		t.Fatalf("alice from the IPv4 /24 that failed as much: %v", err)
	}
	now = now.Add(61 * time.Second)
	if err := signIn("2001:db8:5:ffff::1", alice.Public(), alice); err != nil {
		t.Fatalf("alice from the /48 a minute later: %v", err)
	}
}

// TestSignInBesideFailingNeighbour: clients behind one NAT share its
// address. A neighbour whose key keeps failing there (a broken client, a
// forger) gets that key refused from there, not the address: alice still
// signs in from it. A neighbour who fails with many keys gets the whole
// address refused once it failed 100 times: trying keys stays bounded.
func TestSignInBesideFailingNeighbour(t *testing.T) {
	alice, _ := kez.GenerateKey(nil)
	bob, _ := kez.GenerateKey(nil)
	mallory, _ := kez.GenerateKey(nil)
	ha, _ := kez.ParseHandle("alice", "kez.test")
	hb, _ := kez.ParseHandle("bob", "kez.test")
	reg := prometheus.NewRegistry()
	answer := newAnswerer(t, cached(kez.HandleRecord{Handle: ha, Primary: alice.Public()},
		kez.HandleRecord{Handle: hb, Primary: bob.Public()}), reg, nil)
	const nat = "203.0.113.9"
	for range 50 { // bob's client signs with the wrong key
		if _, err := answer(bob.Public(), mallory, nat); err == nil {
			t.Fatal("a forged signature signed in")
		}
	}
	if _, err := answer(alice.Public(), alice, nat); err != nil {
		t.Fatalf("alice behind the NAT of a neighbour who keeps failing: %v", err)
	}
	if _, err := answer(bob.Public(), bob, nat); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("bob's failing key from there: %v, want ErrThrottled", err)
	}
	if got := denials(t, reg, "throttled_key"); got != 31 {
		t.Errorf("throttled_key denials counted %v, want 31 (bob's after his 20th failure)", got)
	}
	if _, err := answer(bob.Public(), bob, "198.51.100.7"); err != nil {
		t.Fatalf("bob from another address: %v", err)
	}
	// 80 more failures with new keys: 100 from the address in all.
	for range 80 {
		k, _ := kez.GenerateKey(nil)
		if _, err := answer(k.Public(), mallory, nat); !errors.Is(err, kez.ErrBadSignature) {
			t.Fatalf("a new key from the NAT: %v, want a bad signature", err)
		}
	}
	if _, err := answer(alice.Public(), alice, nat); !errors.Is(err, callout.ErrThrottled) {
		t.Fatalf("alice from an address that failed 100 times: %v, want ErrThrottled", err)
	}
	if got := denials(t, reg, "throttled"); got != 1 {
		t.Errorf("throttled (address) denials counted %v, want 1", got)
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
	answer := newAnswerer(t, users, reg, nil)
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
	alice, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	now := time.Unix(1_800_000_000, 0)
	answer := newAnswerer(t, cached(kez.HandleRecord{Handle: h, Primary: alice.Public()}), prometheus.NewRegistry(),
		func() time.Time { return now })
	signIn := func(host string, key kez.PublicKey, signer *kez.PrivateKey) ([]byte, error) {
		return answer(key, signer, host)
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
	// 20 failures of one key from one address: it is refused from
	// there, unanswered.
	mallory, _ := kez.GenerateKey(nil)
	for range 20 {
		signIn("203.0.113.9", alice.Public(), mallory)
	}
	now = now.Add(2 * time.Second)
	if resp, err := signIn("203.0.113.9", alice.Public(), alice); !errors.Is(err, callout.ErrThrottled) || resp != nil {
		t.Fatalf("from a refused address: err %v, answered %v; want ErrThrottled, unanswered", err, resp != nil)
	}
}

// proxied dials the broker as a load balancer in front of it does with
// the PROXY protocol: each connection starts with a header naming src as
// the client's address, which the broker reports to the callout.
type proxied struct{ src netip.Addr }

func (p proxied) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	family, dst := "TCP4", "127.0.0.1"
	if p.src.Is6() {
		family, dst = "TCP6", "::1"
	}
	if _, err := fmt.Fprintf(c, "PROXY %s %s %s 40000 4222\r\n", family, p.src, dst); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// forge signs in through the broker at url from src, as key with a
// signature that is not key's, and leaves at once: it does not wait for
// the refusal (unanswered in a flood, it would come after the broker's
// authorization timeout, 2 s). The callout is asked all the same.
func forge(t *testing.T, url string, src netip.Addr, key kez.PublicKey) {
	t.Helper()
	c, err := proxied{src}.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	// The INFO is read first: closing with it unread would reset the
	// connection, and the broker might drop the CONNECT.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Error(err)
		return
	}
	sig := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if _, err := fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"nkey\":%q,\"sig\":%q,\"protocol\":1}\r\nPING\r\n", key.NKey(), sig); err != nil {
		t.Error(err)
	}
}

// TestSignInFloodFromOneNetThroughBroker is TestSignInFloodIPv6Net
// through the broker: nats/nats.conf with the PROXY protocol on (as
// behind a TCP load balancer; the only way a test gives clients other
// addresses than loopback), the client's address as the broker reports
// it. Failed sign-ins from /64s of one /48, 10 from each (far below a
// /64's budget), until the callout counted 200, get the /48 refused:
// alice, signing correctly from a /64 of it not seen before, is refused;
// from another /48 she signs in.
func TestSignInFloodFromOneNetThroughBroker(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.ProxyProtocol = true })
	now := time.Now() // one moment: the flood is one window of the throttle
	st := newStackOn(t, ns, 1, func(c *callout.Config) { c.Now = func() time.Time { return now } })
	r := st.replicas[0]
	alice := st.register(t, "alice")
	from := func(addr string) nats.Option { return nats.SetCustomDialer(proxied{netip.MustParseAddr(addr)}) }

	// In batches of 50 at once, until the callout counted 200: a broker
	// this busy may drop a sign-in before it asks the callout (its own
	// authentication timeout).
	sent := 0
	for denials(t, r.reg, "bad_signature") < 200 {
		if sent >= 600 {
			t.Fatalf("the callout counted %v of %d failures", denials(t, r.reg, "bad_signature"), sent)
		}
		var wg sync.WaitGroup
		for range 50 {
			i := sent
			sent++
			wg.Go(func() {
				k, _ := kez.GenerateKey(nil)
				forge(t, st.ns.ClientURL(), netip.MustParseAddr(fmt.Sprintf("2001:db8:5:%x::%x", i/10, i%10+1)), k.Public())
			})
		}
		wg.Wait()
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end) &&
			denials(t, r.reg, "bad_signature") < float64(min(sent, 200)); {
			time.Sleep(10 * time.Millisecond)
		}
	}

	refused := denials(t, r.reg, "throttled_48")
	nc, err := signIn(st.ns.ClientURL(), alice, from("2001:db8:5:ffff::1"), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("alice signed in from a new /64 of the /48 that failed 200 times")
	}
	waitFor(t, func() bool { return denials(t, r.reg, "throttled_48") == refused+1 })
	nc, err = signIn(st.ns.ClientURL(), alice, from("2001:db8:6::1"), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("alice from another /48: %v", err)
	}
	nc.Close()
}

// TestSignInBesideFailingNeighbourThroughBroker is
// TestSignInBesideFailingNeighbour through the broker as nats/nats.conf
// configures it: every client connects from 127.0.0.1, one NAT. Bob's
// client signs with the wrong key until the callout refuses it; then
// alice still signs in: what is refused is bob's key, not the address.
func TestSignInBesideFailingNeighbourThroughBroker(t *testing.T) {
	st := newStack(t, 1, nil)
	r := st.replicas[0]
	alice := st.register(t, "alice")
	bob := st.register(t, "bob")
	mallory, _ := kez.GenerateKey(nil)
	refused := func() float64 { return denials(t, r.reg, "throttled_key") + denials(t, r.reg, "throttled") }
	for batch := 0; refused() == 0; batch++ {
		if batch == 10 {
			t.Fatalf("bob failed %v times, and is not refused", denials(t, r.reg, "bad_signature"))
		}
		var wg sync.WaitGroup
		for range 10 { // at once: unanswered, each would wait 2 s
			wg.Go(func() {
				nc, err := signIn(st.ns.ClientURL(), bob, nats.Nkey(bob.Public().NKey(), signer(mallory)),
					nats.MaxReconnects(0), nats.Timeout(5*time.Second))
				if err == nil {
					nc.Close()
					t.Error("a forged signature signed in")
				}
			})
		}
		wg.Wait()
		time.Sleep(100 * time.Millisecond) // the callout's last few
	}
	if got := denials(t, r.reg, "throttled"); got != 0 {
		t.Errorf("the address was refused %v times for bob's failures", got)
	}
	nc, err := signIn(st.ns.ClientURL(), alice, nats.MaxReconnects(0), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("alice beside a neighbour who keeps failing: %v", err)
	}
	nc.Close()
}
