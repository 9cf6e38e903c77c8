package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/cmd/cli/clitest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigserver"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--help"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"NATS_URL", "NATS_NKEY_FILE", "HTTP_ADDR", ":7878", "REPLICAS", "REQUIRE_REGISTERED", "--[no-]require-registered",
		"MAX_EVENTS", "APPEND_LIMIT", "APPEND_WINDOW", "CTIME_SKEW", "TRUST_PROXY", "LOG_FORMAT", "LOG_LEVEL"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("serve --help lacks %s:\n%s", s, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--help"}, &out, &errb); err != nil || !strings.Contains(out.String(), "healthcheck") {
		t.Errorf("--help = %v:\n%s", err, out.String())
	}
}

func TestDefaults(t *testing.T) {
	var c command
	for _, env := range cli.EnvNames(serveCmd{}) {
		t.Setenv(env, "") // restored at the end
		os.Unsetenv(env)
	}
	if err := cli.Parse(&c, nil); err != nil {
		t.Fatal(err)
	}
	cfg := c.Serve.config()
	want := sigserver.DefaultConfig()
	if cfg != want {
		t.Errorf("flag defaults give %+v, want sigserver.DefaultConfig() %+v", cfg, want)
	}
	t.Setenv("REQUIRE_REGISTERED", "false")
	t.Setenv("APPEND_LIMIT", "7")
	if err := cli.Parse(&c, nil); err != nil {
		t.Fatal(err)
	}
	if cfg := c.Serve.config(); cfg.RequireRegistered || cfg.Streams.AppendLimit != 7 {
		t.Errorf("env REQUIRE_REGISTERED=false APPEND_LIMIT=7 gives %+v", cfg)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"healthcheck", "--url", srv.URL}, &out, &out); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := run(context.Background(), []string{"healthcheck", "--url", srv.URL}, &out, &out); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy: %v", err)
	}
}

func TestServeAndShutDown(t *testing.T) {
	ns := natstest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--nats-url", ns.ClientURL(), "--nats-nkey-file", ns.KeyFile(natskeys.KeySigServer),
			"--http-addr", addr, "--no-require-registered", "--log-format", "text"}, &bytes.Buffer{}, &logs)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := run(ctx, []string{"healthcheck", "--url", "http://" + addr + "/v1/healthz"}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy within 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not shut down")
	}
}

func TestBadConfig(t *testing.T) {
	err := run(context.Background(), []string{"--max-events", "0"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, sigserver.ErrConfig) {
		t.Fatalf("--max-events 0: %v, want ErrConfig", err)
	}
}

// TestSystemdUnitStartsOnLiveness: deploy/systemd's unit counts the server
// started once it serves (livez), not once it is ready.
func TestSystemdUnitStartsOnLiveness(t *testing.T) {
	clitest.UnitStartsOnLiveness(t, run, filepath.Join("..", "..", "deploy", "systemd", "kez-sig-server.service"), "/v1/readyz")
}
