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
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/natstest"
	"kez.lat/kez/sigserver"
)

// TestBrokerRestart: every registration and message the servers
// acknowledged is still there after the whole broker (one nats-server, or
// all three nodes of a cluster) is shut down and started again on the same
// JetStream store, and the system works again afterwards. The broker is
// deploy/nats.conf, as shipped (sync_interval: always).
func TestBrokerRestart(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		ns := natstest.Start(t)
		checkBrokerRestart(t, ns, ns.ClientURL(), 1, func() { ns.Restart() }, []*natstest.Server{ns})
	})
	t.Run("cluster", func(t *testing.T) {
		c := natstest.StartCluster(t, 3)
		restart := func() {
			for _, s := range c.Servers {
				s.Stop()
			}
			for _, s := range c.Servers {
				s.Restart() // the same client and route ports, the same store
			}
		}
		checkBrokerRestart(t, c.Servers[0], c.ClientURL(), 3, restart, c.Servers)
	})
}

func checkBrokerRestart(t *testing.T, keys *natstest.Server, natsURL string, replicas int, restart func(), nodes []*natstest.Server) {
	h := startHome(t, keys, natsURL, replicas)
	chat := h.startChat()
	cli := func(name string) *user {
		return &user{t: t, profile: filepath.Join(t.TempDir(), name), server: chat.URL(), keyStore: "file"}
	}

	// Acknowledged before the restart: two CLI accounts (registration and
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

	start := time.Now()
	restart()
	waitBroker(t, nodes)
	t.Logf("broker (%d node(s)) restarted and current after %v", len(nodes), time.Since(start).Round(time.Millisecond))

	// The replica that lived through the restart reconnects; a fresh one
	// projects the registry from the restarted store alone.
	waitHealthz(t, chat.URL(), 60*time.Second)
	fresh := h.startChat() // its stream setup waits out the cluster's recovery
	waitHealthz(t, fresh.URL(), 30*time.Second)
	t.Logf("both home-server replicas healthy %v after the restart began", time.Since(start).Round(time.Millisecond))
	for _, r := range registered {
		for _, base := range []string{chat.URL(), fresh.URL()} {
			if err := lookupHTTP(base, r); err != nil {
				t.Errorf("after the restart: %v", err)
			}
		}
	}
	for _, who := range []string{"alice", "bob"} {
		if err := lookupHTTP(fresh.URL(), registration{handle: who}); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	}

	// bob gets exactly the 10 messages he had not read; alice still finds
	// bob's sigchain (add fetches and verifies it).
	msgs, dropped, _ := bob.listenOnce()
	if len(msgs) != n-n/2 || len(dropped) != 0 {
		t.Fatalf("after the restart bob received %d messages (%d dropped), want %d", len(msgs), len(dropped), n-n/2)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("message %02d", n/2+i); m.Body != want {
			t.Fatalf("message %d after the restart = %q, want %q", i, m.Body, want)
		}
	}
	alice.ok("", "add", "@bob")

	// And it works again: a new account, through the fresh replica, and a
	// message each way.
	carol := cli("carol")
	carol.server = fresh.URL()
	carol.ok("", "register", "carol", "--i-have-written-it-down")
	registerHTTP(t, fresh.URL(), "durable_after")
	carol.ok("", "send", "@bob", "after the restart")
	bob.ok("", "send", "@carol", "welcome")
	if msgs, _, _ := bob.listenOnce(); len(msgs) != 1 || msgs[0].Body != "after the restart" {
		t.Fatalf("bob received %+v, want carol's message", msgs)
	}
	if msgs, _, _ := carol.listenOnce(); len(msgs) != 1 || msgs[0].Body != "welcome" {
		t.Fatalf("carol received %+v, want bob's message", msgs)
	}
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
}

func startHome(t *testing.T, keys *natstest.Server, natsURL string, replicas int) *home {
	scfg := sigserver.DefaultConfig()
	scfg.NATSURL = natsURL
	scfg.NATSNKeyFile = keys.KeyFile(callout.KeySigServer)
	scfg.HTTPAddr = "127.0.0.1:0"
	scfg.Streams.Replicas = replicas
	scfg.Streams.AppendLimit = 1000
	sig, err := sigserver.Start(context.Background(), scfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start sig-server: %v", err)
	}
	t.Cleanup(func() { closeCtx(sig.Close) })
	return &home{t: t, keys: keys, natsURL: natsURL, replicas: replicas, sigURL: sig.URL()}
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
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = h.natsURL
	cfg.NATSNKeyFile = h.keys.KeyFile(callout.KeyChatServer)
	cfg.CalloutNKeyFile = h.keys.KeyFile(callout.KeyCallout)
	cfg.CalloutIssuerFile = h.keys.KeyFile(callout.KeyIssuer)
	cfg.CalloutXKeyFile = h.keys.KeyFile(callout.KeyXKey)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = clienttest.Domain
	cfg.SigchainURL = h.sigURL
	cfg.PublicNATS = h.natsURL
	cfg.Streams.Replicas = h.replicas
	cfg.Streams.RegisterLimit = 100000
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
	var last string
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/v1/healthz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	t.Fatalf("%s not healthy after %v: %s", base, d, last)
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
