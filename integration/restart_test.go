//go:build integration

package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigserver"
)

// TestBrokerRestart: every registration and message the servers
// acknowledged is still there after the whole broker (one nats-server, or
// all three nodes of a cluster) goes down and comes back on the same
// JetStream store, cleanly stopped and then killed (natstest.Crash: the
// store as kill -9 leaves it); and after each, the replicas that lived
// through it work again on their own: they register, look up, sign a
// user in (the callout), send and read through the inbox door, and
// append to a sigchain, with no replica restarted. The broker is
// nats/nats.conf, as shipped (sync_interval: always).
func TestBrokerRestart(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		ns := natstest.Start(t)
		checkBrokerRestart(t, ns, ns.ClientURL(), 1, []*natstest.Server{ns})
	})
	t.Run("cluster", func(t *testing.T) {
		c := natstest.StartCluster(t, 3)
		checkBrokerRestart(t, c.Servers[0], c.ClientURL(), 3, c.Servers)
	})
}

// brokerDowns are the ways the whole broker goes down in
// TestBrokerRestart, in order.
var brokerDowns = []struct {
	name string
	down func(*natstest.Server)
}{
	{"clean stop", (*natstest.Server).Stop},
	{"kill -9", (*natstest.Server).Crash},
}

func checkBrokerRestart(t *testing.T, keys *natstest.Server, natsURL string, replicas int, nodes []*natstest.Server) {
	h := startHome(t, keys, natsURL, replicas)
	chat := h.startChat()
	cli := func(name string) *user {
		return &user{t: t, profile: filepath.Join(t.TempDir(), name), server: chat.URL(), keyStore: "file"}
	}

	// Acknowledged before the restarts: two CLI accounts (registration and
	// sigchain), 20 registrations over HTTP, 20 messages of which bob reads
	// (and acknowledges) the first 10.
	alice, bob := cli("alice"), cli("bob")
	alice.ok("", "register", "alice", "--i-have-written-it-down")
	bob.ok("", "register", "bob", "--i-have-written-it-down")
	var registered []registration
	for i := range 20 {
		registered = append(registered, registerHTTP(t, chat.URL(), fmt.Sprintf("durable%d", i)))
	}
	const n = 20
	for i := range n {
		alice.ok("", "send", "@bob", fmt.Sprintf("message %02d", i))
		if i == n/2-1 {
			if msgs, _, _ := bob.listenOnce(); len(msgs) != n/2 {
				t.Fatalf("bob read %d messages before the restart, want %d", len(msgs), n/2)
			}
		}
	}

	for i, d := range brokerDowns {
		start := time.Now()
		for _, s := range nodes {
			d.down(s)
		}
		for _, s := range nodes {
			s.Restart() // the same client and route ports, the same store
		}
		waitBroker(t, nodes)
		t.Logf("%s: broker (%d node(s)) back and current after %v", d.name, len(nodes), time.Since(start).Round(time.Millisecond))
		waitHealthz(t, chat.URL(), 60*time.Second)
		t.Logf("%s: the replica that lived through it healthy after %v", d.name, time.Since(start).Round(time.Millisecond))

		// The door answers once the inbox stream has its leader again (on
		// a cluster a few seconds after the registry's): the first read
		// is retried while the door says unavailable, which reads and
		// acknowledges nothing. bob then gets exactly the 10 messages he
		// had not read (none after the second restart).
		want := 0
		if i == 0 {
			want = n - n/2
		}
		var msgs, dropped []listened
		for {
			out, errw, code := bob.run("", "--json", "listen", "--once")
			if code == 0 {
				msgs, dropped = parseListened(t, out)
				break
			}
			if !strings.Contains(errw, "(unavailable)") || time.Since(start) > 60*time.Second {
				t.Fatalf("%s: listen --once: exit %d\n%s", d.name, code, errw)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("%s: the door of the replica that lived through it answered after %v", d.name, time.Since(start).Round(time.Millisecond))
		if len(msgs) != want || len(dropped) != 0 {
			t.Fatalf("%s: bob received %d messages (%d dropped), want %d", d.name, len(msgs), len(dropped), want)
		}
		for i, m := range msgs {
			if want := fmt.Sprintf("message %02d", n/2+i); m.Body != want {
				t.Fatalf("message %d after the restart = %q, want %q", i, m.Body, want)
			}
		}
		// Everything through the replicas that lived through the restart
		// (the only ones running): a registration over HTTP (the rate
		// limiter's memory stream is gone with the broker) and one by the
		// CLI, whose sigchain endpoints are appended through the
		// sig-server (its limiter's stream too); look-ups by handle and
		// by key; a sign-in, a message sent and read through the door.
		registered = append(registered, registerHTTP(t, chat.URL(), fmt.Sprintf("after%d", i)))
		if err := lookupHTTP(chat.URL(), registered[len(registered)-1]); err != nil {
			t.Errorf("%s: %v", d.name, err)
		}
		name := fmt.Sprintf("carol%d", i)
		carol := cli(name)
		if _, errw := carol.ok("", "register", name, "--i-have-written-it-down"); strings.Contains(errw, "warning") {
			t.Fatalf("%s: register %s: %s", d.name, name, errw)
		}
		_, key := carol.whoami()
		events, err := (&client.Sigchains{BaseURL: h.sigURL}).Events(context.Background(), key, 0)
		if err != nil || len(events) < 2 {
			t.Fatalf("%s: %s's sigchain: %d events, %v; want its two endpoints", d.name, name, len(events), err)
		}
		if err := lookupKeyHTTP(chat.URL(), key, name); err != nil {
			t.Errorf("%s: %v", d.name, err)
		}
		alice.ok("", "add", "@"+name) // fetches and verifies the chain
		carol.ok("", "send", "@bob", "after the "+d.name)
		if msgs, _, _ := bob.listenOnce(); len(msgs) != 1 || msgs[0].Body != "after the "+d.name {
			t.Fatalf("%s: bob received %+v, want %s's message", d.name, msgs, name)
		}
		bob.ok("", "send", "@"+name, "welcome")
		if msgs, _, _ := carol.listenOnce(); len(msgs) != 1 || msgs[0].Body != "welcome" {
			t.Fatalf("%s: %s received %+v, want bob's message", d.name, name, msgs)
		}
	}

	// A fresh replica projects the registry from the restarted store
	// alone, and both replicas resolve every acknowledged registration.
	fresh := h.startChat()
	waitHealthz(t, fresh.URL(), 30*time.Second)
	for _, r := range registered {
		for _, base := range []string{chat.URL(), fresh.URL()} {
			if err := lookupHTTP(base, r); err != nil {
				t.Errorf("after the restarts: %v", err)
			}
		}
	}
	for _, who := range []string{"alice", "bob", "carol0", "carol1"} {
		if err := lookupHTTP(fresh.URL(), registration{handle: who}); err != nil {
			t.Errorf("after the restarts: %v", err)
		}
	}
	alice.ok("", "add", "@bob")
}

// home is kez-sig-server and any number of kez-chat-server replicas
// started in-process against a broker, wired as clienttest wires them
// but with a replica count and more than one home-server replica.
type home struct {
	t        *testing.T
	keys     *natstest.Server
	natsURL  string
	replicas int
	sigURL   string
	sig      *sigserver.Server
	// adjust, if set, changes each home-server replica's configuration.
	adjust func(*chatserver.Config)
}

func startHome(t *testing.T, keys *natstest.Server, natsURL string, replicas int) *home {
	scfg := clienttest.SigConfig(keys)
	scfg.NATSURL = natsURL
	scfg.Streams.Replicas = replicas
	sig, err := sigserver.Start(context.Background(), scfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start sig-server: %v", err)
	}
	t.Cleanup(func() { closeCtx(sig.Close) })
	return &home{t: t, keys: keys, natsURL: natsURL, replicas: replicas, sigURL: sig.URL(), sig: sig}
}

// startChat starts one more home-server replica on a loopback port.
func (h *home) startChat() *chatserver.Server {
	h.t.Helper()
	chat, err := h.tryStartChat()
	if err != nil {
		h.t.Fatalf("start chat-server: %v", err)
	}
	return chat
}

func (h *home) tryStartChat() (*chatserver.Server, error) {
	cfg := clienttest.ChatConfig(h.keys)
	cfg.NATSURL = h.natsURL
	cfg.SigchainURL = h.sigURL
	// One URL: records carry it into sigchain endpoints, which take one.
	cfg.PublicNATS, _, _ = strings.Cut(h.natsURL, ",")
	cfg.Streams.Replicas = h.replicas
	cfg.Streams.RegisterLimit = 100000
	if h.adjust != nil {
		h.adjust(&cfg)
	}
	chat, err := chatserver.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	h.t.Cleanup(func() { closeCtx(chat.Close) })
	return chat, nil
}

func closeCtx(close func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	close(ctx)
}

// waitBroker waits until every node reports JetStream healthy (meta
// leader, every stream and consumer current), as /healthz does.
func waitBroker(t *testing.T, nodes []*natstest.Server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range nodes {
		for {
			st := s.Healthz(&server.HealthzOptions{})
			if st.Status == "ok" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not healthy after the restart: %s %s", s.Name(), st.Status, st.Error)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func waitHealthz(t *testing.T, base string, d time.Duration) {
	t.Helper()
	if ok, last := pollHealthz(base, d, func(status int, _ []byte) bool { return status == http.StatusOK }); !ok {
		t.Fatalf("%s not healthy after %v: %s", base, d, last)
	}
}

// pollHealthz asks base's /v1/healthz every 100 ms, for d at most, until
// done says the answer (status and body) is the one waited for; otherwise
// it returns false and the last answer.
func pollHealthz(base string, d time.Duration, done func(status int, body []byte) bool) (bool, string) {
	var last string
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/v1/healthz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if done(resp.StatusCode, b) {
			return true, ""
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	return false, last
}

// registration is a handle the home server acknowledged (201), with its
// key; a zero key matches any.
type registration struct {
	handle string
	key    kez.PublicKey
}

func registerHTTP(t *testing.T, base, name string) registration {
	t.Helper()
	r, status, body := tryRegister(t, base, name)
	if status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", name, status, body)
	}
	return r
}

// lookupKeyHTTP checks that base resolves key to the handle local.
func lookupKeyHTTP(base string, key kez.PublicKey, local string) error {
	resp, err := http.Get(base + "/v1/k/" + key.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/v1/k/%s: %d %s", base, key, resp.StatusCode, b)
	}
	var rec struct {
		Handle string `json:"handle"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || !strings.HasPrefix(rec.Handle, local+"@") {
		return fmt.Errorf("%s/v1/k/%s: %s, want %s (%v)", base, key, b, local, err)
	}
	return nil
}

// lookupHTTP checks that base resolves r to r's key.
func lookupHTTP(base string, r registration) error {
	resp, err := http.Get(base + "/v1/u/" + r.handle)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/v1/u/%s: %d %s", base, r.handle, resp.StatusCode, b)
	}
	var rec struct {
		Primary kez.PublicKey `json:"primary"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("%s/v1/u/%s: %v", base, r.handle, err)
	}
	if !r.key.IsZero() && !rec.Primary.Equal(r.key) {
		return fmt.Errorf("%s/v1/u/%s is bound to %s, want %s", base, r.handle, rec.Primary, r.key)
	}
	return nil
}
