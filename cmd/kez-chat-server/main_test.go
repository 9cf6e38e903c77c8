package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/cmd/cli/clitest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
)

func TestHelpDocumentsEveryCommand(t *testing.T) {
	out, _, err := clitest.Run(t, run, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "rebuild", "scrub", "keys", "healthcheck"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("--help does not mention %s:\n%s", cmd, out)
		}
	}
	out, _, err = clitest.Run(t, run, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"$NATS_URL", "$NATS_NKEY_FILE", "$HTTP_ADDR", "$DOMAIN", "$SIGCHAIN_URL", "$PUBLIC_NATS_URL", "$REPLICAS", "$RESERVED_FILE", "$KEYS_DIR", "$CALLOUT_ISSUER_FILE", "$KEZ_PUBLIC_RELAYS", "$CHECKPOINT_FILE", "$INTEGRITY_INTERVAL"} {
		if !strings.Contains(out, env) {
			t.Errorf("serve --help does not document %s", env)
		}
	}
}

func TestPublicRelayFlag(t *testing.T) {
	const r1 = "/ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"
	const r2 = "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"
	var c command
	if err := cli.Parse(&c, []string{"serve", "--public-relay", r1, "--public-relay", r2}); err != nil {
		t.Fatal(err)
	}
	if got := c.Serve.PublicRelays; len(got) != 2 || got[0] != r1 || got[1] != r2 {
		t.Errorf("--public-relay twice: %q", got)
	}
	t.Setenv("KEZ_PUBLIC_RELAYS", r1+","+r2)
	c = command{}
	if err := cli.Parse(&c, []string{"serve"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Serve.PublicRelays; len(got) != 2 || got[0] != r1 || got[1] != r2 {
		t.Errorf("KEZ_PUBLIC_RELAYS: %q", got)
	}
}

func TestUnknownFlagFails(t *testing.T) {
	if _, _, err := clitest.Run(t, run, "serve", "--no-such-flag"); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	out, _, err := clitest.Run(t, run, "keys", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "KEZ_CALLOUT_ISSUER") {
		t.Fatalf("keys printed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "kez-keys.conf")); err != nil {
		t.Fatal(err)
	}
	again, _, err := clitest.Run(t, run, "keys", "--dir", dir)
	if err != nil || again != out {
		t.Fatalf("second run changed the keys (%v)", err)
	}
}

// TestKeysCommandSplitsSeeds: with a folder per service, each gets only the
// seeds it uses and nats-server's only the public kez-keys.conf.
func TestKeysCommandSplitsSeeds(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "keys")
	for i := 0; i < 2; i++ { // the second keeps what the first wrote
		if _, _, err := clitest.Run(t, run, "keys", "--dir", dir, "--chat-server-dir", filepath.Join(tmp, "chat"),
			"--sig-server-dir", filepath.Join(tmp, "sig"), "--nats-dir", filepath.Join(tmp, "nats")); err != nil {
			t.Fatal(err)
		}
	}
	for sub, want := range map[string]string{
		"keys": "admin.nk callout.nk chat-server.nk issuer.nk kez-keys.conf sig-server.nk sys.nk xkey.nk",
		"chat": "callout.nk chat-server.nk issuer.nk xkey.nk",
		"sig":  "sig-server.nk",
		"nats": "kez-keys.conf",
	} {
		ents, err := os.ReadDir(filepath.Join(tmp, sub))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s holds %s, want %s", sub, got, want)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", srv.URL); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", srv.URL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy server: %v", err)
	}
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", "http://127.0.0.1:1/"); err == nil {
		t.Fatal("unreachable server passed")
	}
}

// TestStartStoreTooSmall: an inbox larger than the JetStream store stops
// serve with both sizes and the flag to change.
func TestStartStoreTooSmall(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.JetStreamMaxStore = 32 << 20 })
	_, _, err := clitest.Run(t, run, "serve", "--nats-url", ns.ClientURL(), "--keys-dir", ns.KeysDir(), "--http-addr", "127.0.0.1:0",
		"--inbox-max-bytes", "1073741824")
	if err == nil {
		t.Fatal("serve started with a 1 GiB inbox on a 32 MiB store")
	}
	for _, want := range []string{"1.0 GiB", "MiB", "--inbox-max-bytes", "max_file_store"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

// TestScrubCommand: scrub passes on a healthy broker (text and --json),
// and after the registry's message block is cut while the broker is
// stopped it exits non-zero naming the stream, its leader and the gap.
func TestScrubCommand(t *testing.T) {
	ns := natstest.Start(t)
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = "kez.test"
	cfg.Streams.RegisterLimit = 1000
	srv, err := chatserver.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		k, _ := kez.GenerateKey(nil)
		h, _ := kez.ParseHandle(fmt.Sprintf("scrub%d", i), "kez.test")
		body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
		resp, err := http.Post(srv.URL()+"/v1/register", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("register: %v %v", err, resp.Status)
		}
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	srv.Close(ctx)
	cancel()

	args := []string{"scrub", "--nats-url", ns.ClientURL(), "--nats-nkey-file", ns.KeyFile(natskeys.KeyChatServer), "--domain", "KEZ.test"}
	out, _, err := clitest.Run(t, run, args...)
	if err != nil {
		t.Fatalf("scrub of a healthy log: %v\n%s", err, out)
	}
	for _, want := range []string{"KEZ_REGISTRY", "ok", "kez.test/registry\n40\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("scrub output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = clitest.Run(t, run, append(args, "--json")...)
	var res chatserver.ScrubResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.OK || len(res.Streams) != 4 || res.Streams[0].Events != 40 {
		t.Fatalf("scrub --json of a healthy log: %v\n%s", err, out)
	}

	ns.Stop()
	for _, b := range ns.MessageBlocks("KEZ_REGISTRY") {
		st, _ := os.Stat(b)
		if err := os.Truncate(b, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	ns.Restart()
	out, _, err = clitest.Run(t, run, append(args, "--json")...)
	if err == nil || !strings.Contains(err.Error(), "damage found") {
		t.Fatalf("scrub of a truncated log: err = %v", err)
	}
	res = chatserver.ScrubResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("scrub --json output: %v\n%s", err, out)
	}
	if r := res.Streams[0]; res.OK || r.Stream != "KEZ_REGISTRY" || r.Status != "damaged" || r.Leader != ns.Name() || len(r.Problems) == 0 {
		t.Fatalf("scrub of a truncated log: %+v", res)
	}
	t.Logf("scrub found: %q", res.Streams[0].Problems)
}

// TestFlagDefaults: the flags' defaults are chatserver.DefaultConfig, the
// one source of the server's defaults.
func TestFlagDefaults(t *testing.T) {
	for _, env := range cli.EnvNames(serveCmd{}) {
		t.Setenv(env, "") // restored at the end
		os.Unsetenv(env)
	}
	var c command
	if err := cli.Parse(&c, []string{"serve"}); err != nil {
		t.Fatal(err)
	}
	got, want := c.Serve.config(), chatserver.DefaultConfig()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flag defaults give\n%+v\nwant chatserver.DefaultConfig()\n%+v", got, want)
	}
	t.Setenv("SCRUB_RATE", "7")
	if err := cli.Parse(&c, []string{"serve"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Serve.config(); got.ScrubRate != 7 {
		t.Errorf("SCRUB_RATE=7 gives scrub rate %d", got.ScrubRate)
	}
}

// TestSystemdUnitStartsOnLiveness: deploy/systemd's unit counts the server
// started once it serves (livez), not once it is ready.
func TestSystemdUnitStartsOnLiveness(t *testing.T) {
	clitest.UnitStartsOnLiveness(t, run, filepath.Join("..", "..", "deploy", "systemd", "kez-chat-server.service"), "/v1/readyz")
}
