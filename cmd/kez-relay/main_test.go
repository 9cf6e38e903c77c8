package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/cmd/cli/clitest"
	"kez.lat/kez/relay"
)

func TestHelp(t *testing.T) {
	out, _, err := clitest.Run(t, run, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "id", "healthcheck"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("--help does not mention %s:\n%s", cmd, out)
		}
	}
	for cmd, envs := range map[string][]string{
		"serve":       {"$KEZ_RELAY_KEY_FILE", "$KEZ_RELAY_LISTEN", "$KEZ_RELAY_HOME_SERVER", "$KEZ_RELAY_HTTP", "$KEZ_RELAY_CIRCUIT_DURATION", "$KEZ_RELAY_CIRCUIT_DATA", "$LOG_LEVEL"},
		"id":          {"$KEZ_RELAY_KEY_FILE", "$KEZ_RELAY_LISTEN"},
		"healthcheck": {"$HEALTHCHECK_URL"},
	} {
		out, _, err := clitest.Run(t, run, cmd, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		for _, env := range envs {
			if !strings.Contains(out, env) {
				t.Errorf("%s --help does not document %s", cmd, env)
			}
		}
	}
}

// TestDeployFlags parses the command line deploy/ runs the relay with.
func TestDeployFlags(t *testing.T) {
	var c command
	err := cli.Parse(&c, strings.Fields("serve --key-file /data/relay.key --home-server http://chat-server:8080 --http :7879 --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Serve.config()
	if cfg.KeyFile != "/data/relay.key" || cfg.HomeServer != "http://chat-server:8080" || cfg.HTTPAddr != ":7879" {
		t.Errorf("config = %+v", cfg)
	}
	if want := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}; !reflect.DeepEqual(cfg.Listen, want) {
		t.Errorf("listen = %v, want %v", cfg.Listen, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}

	c = command{}
	if err := cli.Parse(&c, []string{"serve", "--key-file", "k"}); err != nil {
		t.Fatal(err)
	}
	cfg = c.Serve.config()
	if len(cfg.Listen) != 4 || cfg.HTTPAddr != ":7879" || cfg.CircuitData != 4<<30 || cfg.CircuitDuration != time.Hour {
		t.Errorf("defaults: %+v", cfg)
	}
	if err := cli.Parse(&command{}, []string{"serve"}); err == nil {
		t.Error("serve without --key-file accepted")
	}
}

// TestFlagDefaults: the flags' defaults are relay.DefaultConfig, but for
// the key file and home server, which it leaves to the deployment.
func TestFlagDefaults(t *testing.T) {
	for _, env := range cli.EnvNames(serveCmd{}) {
		t.Setenv(env, "") // restored at the end
		os.Unsetenv(env)
	}
	var c command
	if err := cli.Parse(&c, []string{"serve", "--key-file", "k"}); err != nil {
		t.Fatal(err)
	}
	got, want := c.Serve.config(), relay.DefaultConfig()
	want.KeyFile, want.HomeServer = got.KeyFile, "http://127.0.0.1:8080" // a path made absolute
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flag defaults give\n%+v\nwant relay.DefaultConfig()\n%+v", got, want)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	defer srv.Close()
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", srv.URL+"/healthz"); err != nil {
		t.Fatalf("healthy relay: %v", err)
	}
	status = http.StatusServiceUnavailable
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", srv.URL+"/healthz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy relay: %v", err)
	}
	if _, _, err := clitest.Run(t, run, "healthcheck", "--url", "http://127.0.0.1:1/healthz"); err == nil {
		t.Fatal("no relay: healthcheck passed")
	}
}

func TestIDStable(t *testing.T) {
	key := filepath.Join(t.TempDir(), "relay.key")
	first, _, err := clitest.Run(t, run, "id", "--key-file", key, "--listen", "/dns4/relay.kez.test/udp/4001/quic-v1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(first), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "12D3KooW") || lines[1] != "/dns4/relay.kez.test/udp/4001/quic-v1/p2p/"+lines[0] {
		t.Fatalf("id printed:\n%s", first)
	}
	again, _, err := clitest.Run(t, run, "id", "--key-file", key, "--listen", "/dns4/relay.kez.test/udp/4001/quic-v1")
	if err != nil || again != first {
		t.Fatalf("second id = %q, %v; want %q", again, err, first)
	}
}

// TestServe runs the relay in-process until its context ends; it prints
// its addresses on stdout first.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--key-file", filepath.Join(t.TempDir(), "relay.key"),
			"--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--home-server", "http://127.0.0.1:1",
			"--log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "/ip4/127.0.0.1/tcp/") || !strings.Contains(line, "/p2p/12D3KooW") {
		t.Fatalf("first line %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// TestSystemdUnitStartsOnLiveness: deploy/systemd's unit counts the server
// started once it serves (livez), not once it is ready.
func TestSystemdUnitStartsOnLiveness(t *testing.T) {
	clitest.UnitStartsOnLiveness(t, run, filepath.Join("..", "..", "deploy", "systemd", "kez-relay.service"), "/readyz")
}
