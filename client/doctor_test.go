package client_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/relay"
	"kez.lat/kez/web/webtest"
)

// startTestRelay starts a kez-relay on loopback and returns its address
// (with /p2p/<id>).
func startTestRelay(t *testing.T) string {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.KeyFile = filepath.Join(t.TempDir(), "relay.key")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.HomeServer = "http://127.0.0.1:1" // the doctor reserves nothing
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MaxMemory, cfg.MaxConns = 256<<20, 256
	r, err := relay.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Close(ctx)
	})
	return r.Addrs()[0].String()
}

// loopbackP2P keeps the probe off the machine's other interfaces.
var loopbackP2P = []string{"/ip4/127.0.0.1/tcp/0"}

// doctorUser registers a user on st and returns its client.
func doctorUser(t *testing.T, st *clienttest.Stack, handle string) *client.Client {
	t.Helper()
	c, _ := newUser(t, st, handle)
	return c
}

// runDoctor runs the doctor and returns the checks by name.
func runDoctor(t *testing.T, c *client.Client, opts client.DoctorOptions) map[string]client.Check {
	t.Helper()
	if opts.DownloadDir == "" {
		opts.DownloadDir = t.TempDir()
	}
	if opts.MinFree == 0 {
		opts.MinFree = 1
	}
	if opts.P2PListen == nil {
		opts.P2PListen = loopbackP2P
	}
	var reported []client.Check
	checks := c.Doctor(context.Background(), opts, func(ch client.Check) { reported = append(reported, ch) })
	want := []string{client.CheckServer, client.CheckTLS, client.CheckClock, client.CheckRegistration, client.CheckSigchain,
		client.CheckKeyStore, client.CheckBroker, client.CheckRelays, client.CheckP2P, client.CheckDisk}
	if len(checks) != len(want) || len(reported) != len(checks) {
		t.Fatalf("doctor ran %d checks and reported %d, want %d: %+v", len(checks), len(reported), len(want), checks)
	}
	out := map[string]client.Check{}
	for i, ch := range checks {
		if ch.Name != want[i] {
			t.Errorf("check %d is %s, want %s", i, ch.Name, want[i])
		}
		out[ch.Name] = ch
	}
	return out
}

// failed checks that name is red, with a fix that contains fix.
func failed(t *testing.T, checks map[string]client.Check, name, detail, fix string) {
	t.Helper()
	ch := checks[name]
	if ch.Status != client.CheckFail || !strings.Contains(ch.Detail, detail) || !strings.Contains(ch.Fix, fix) {
		t.Errorf("%s = %+v, want fail with %q and fix %q", name, ch, detail, fix)
	}
}

// TestDoctorGreen: on a whole stack with a relay every check passes (TLS
// is not used on loopback, and the relay, on this machine, reports a
// local network).
func TestDoctorGreen(t *testing.T) {
	relayAddr := startTestRelay(t)
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.PublicRelays = []string{relayAddr} })
	c := doctorUser(t, st, "doc")
	checks := runDoctor(t, c, client.DoctorOptions{})
	for name, ch := range checks {
		want := client.CheckOK
		if name == client.CheckTLS {
			want = client.CheckSkip
		}
		if ch.Status != want || ch.Detail == "" {
			t.Errorf("%s = %+v, want %s", name, ch, want)
		}
	}
	if d := checks[client.CheckP2P].Detail; !strings.Contains(d, "local address") {
		t.Errorf("p2p on loopback: %q", d)
	}
	if d := checks[client.CheckRelays].Detail; !strings.Contains(d, "1 of 1 relays reachable") {
		t.Errorf("relays: %q", d)
	}
}

// TestDoctorBrokenHops breaks one hop at a time on one stack and sees
// that check fail with its fix.
func TestDoctorBrokenHops(t *testing.T) {
	st := clienttest.Start(t)

	t.Run("server", func(t *testing.T) {
		c := doctorUser(t, st, "docserver")
		down := client.New(c.Profile(), client.Config{Server: "http://127.0.0.1:1"})
		checks := runDoctor(t, down, client.DoctorOptions{})
		failed(t, checks, client.CheckServer, "cannot connect", "the server is down")
		for _, name := range []string{client.CheckTLS, client.CheckClock, client.CheckRegistration, client.CheckSigchain} {
			if checks[name].Status != client.CheckSkip {
				t.Errorf("%s after a failed server: %+v", name, checks[name])
			}
		}
	})

	t.Run("tls", func(t *testing.T) {
		self := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		self.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
		self.StartTLS()
		defer self.Close()
		c := client.New(doctorUser(t, st, "doctls").Profile(), client.Config{Server: self.URL})
		checks := runDoctor(t, c, client.DoctorOptions{})
		if checks[client.CheckServer].Status != client.CheckOK {
			t.Errorf("server with a bad certificate: %+v", checks[client.CheckServer])
		}
		failed(t, checks, client.CheckTLS, "certificate", "not signed by an authority this device trusts")
	})

	t.Run("clock", func(t *testing.T) {
		p := doctorUser(t, st, "docclock").Profile()
		c := client.New(p, client.Config{Server: st.URL(), Now: func() time.Time { return time.Now().Add(-time.Hour) }})
		// Date has whole seconds: 59m59s or 1h0m0s.
		failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckClock, "behind the home server's", "network time")
	})

	t.Run("registration", func(t *testing.T) {
		c := doctorUser(t, st, "docreg")
		a, _ := c.Profile().Account()
		a.Handle = handle(t, "nobodyhere")
		if err := c.Profile().SaveAccount(a); err != nil {
			t.Fatal(err)
		}
		failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckRegistration, "not registered", "lost the registration")
	})

	t.Run("sigchain", func(t *testing.T) {
		c := doctorUser(t, st, "docchain")
		a, _ := c.Profile().Account()
		a.Chain.Tail.Seqno += 3 // the profile saw events the server no longer shows
		if err := c.Profile().SaveAccount(a); err != nil {
			t.Fatal(err)
		}
		failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckSigchain, "differs from what this profile saw", "tell the operator")
	})

	t.Run("keystore", func(t *testing.T) {
		c := doctorUser(t, st, "dockey")
		key := filepath.Join(c.Profile().Dir, "key")
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		checks := runDoctor(t, c, client.DoctorOptions{})
		failed(t, checks, client.CheckKeyStore, "accessible by other users", "chmod 600 "+key)
		if checks[client.CheckBroker].Status != client.CheckSkip {
			t.Errorf("broker without a key: %+v", checks[client.CheckBroker])
		}
	})

	t.Run("broker", func(t *testing.T) {
		c := doctorUser(t, st, "docnats")
		a, _ := c.Profile().Account()
		a.NATSURL = "nats://127.0.0.1:1"
		if err := c.Profile().SaveAccount(a); err != nil {
			t.Fatal(err)
		}
		failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckBroker, "cannot reach the broker at nats://127.0.0.1:1", "firewall")
	})

	t.Run("sign-in unanswered", func(t *testing.T) {
		c := doctorUser(t, st, "docslow")
		a, _ := c.Profile().Account()
		a.NATSURL, _ = fakeBroker(t, "abcdefghijklmno", "PING\r\n")
		if err := c.Profile().SaveAccount(a); err != nil {
			t.Fatal(err)
		}
		failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckBroker, "did not answer @docslow@kez.test's sign-in in time", "sign-in service")
	})

	t.Run("p2p", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		c := doctorUser(t, st, "docp2p")
		checks := runDoctor(t, c, client.DoctorOptions{P2PListen: []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(port)}})
		failed(t, checks, client.CheckP2P, "cannot listen for peers", "holds the port")
	})

	t.Run("disk", func(t *testing.T) {
		c := doctorUser(t, st, "docdisk")
		failed(t, runDoctor(t, c, client.DoctorOptions{MinFree: 1 << 62}), client.CheckDisk, "free in", "free some space")
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		failed(t, runDoctor(t, c, client.DoctorOptions{DownloadDir: file}), client.CheckDisk, "not a folder", "fetch -o DIR")
	})
}

// TestDoctorRelayDown: a relay the home server advertises that does not
// answer fails the relays check.
func TestDoctorRelayDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there any more
	dead := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port) + "/p2p/" + relayID
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.PublicRelays = []string{dead} })
	c := doctorUser(t, st, "docrelay")
	failed(t, runDoctor(t, c, client.DoctorOptions{}), client.CheckRelays, "no relay reachable", "the relay is down")
}

const relayID = "12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"
