package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"kez.lat/kez/cli"
	"kez.lat/kez/natstest"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestHelpDocumentsEveryCommand(t *testing.T) {
	out, _, err := runCLI(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "rebuild", "keys", "healthcheck"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("--help does not mention %s:\n%s", cmd, out)
		}
	}
	out, _, err = runCLI(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"$NATS_URL", "$NATS_NKEY_FILE", "$HTTP_ADDR", "$DOMAIN", "$SIGCHAIN_URL", "$PUBLIC_NATS_URL", "$REPLICAS", "$RESERVED_FILE", "$KEYS_DIR", "$CALLOUT_ISSUER_FILE", "$KEZ_PUBLIC_RELAYS"} {
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
	if _, _, err := runCLI(t, "serve", "--no-such-flag"); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	out, _, err := runCLI(t, "keys", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "KEZ_CALLOUT_ISSUER") {
		t.Fatalf("keys printed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "kez-keys.conf")); err != nil {
		t.Fatal(err)
	}
	again, _, err := runCLI(t, "keys", "--dir", dir)
	if err != nil || again != out {
		t.Fatalf("second run changed the keys (%v)", err)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	if _, _, err := runCLI(t, "healthcheck", "--url", srv.URL); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if _, _, err := runCLI(t, "healthcheck", "--url", srv.URL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy server: %v", err)
	}
	if _, _, err := runCLI(t, "healthcheck", "--url", "http://127.0.0.1:1/"); err == nil {
		t.Fatal("unreachable server passed")
	}
}

// TestStartStoreTooSmall: an inbox larger than the JetStream store stops
// serve with both sizes and the flag to change.
func TestStartStoreTooSmall(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.JetStreamMaxStore = 32 << 20 })
	_, _, err := runCLI(t, "serve", "--nats-url", ns.ClientURL(), "--keys-dir", ns.KeysDir(), "--http-addr", "127.0.0.1:0",
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
