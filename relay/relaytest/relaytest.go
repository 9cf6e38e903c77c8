// Package relaytest starts kez-relay in-process for tests, in front of a
// home server whose URL may be known only after the relay started.
package relaytest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"kez.lat/kez/relay"
)

// Start runs kez-relay listening on TCP on host, logging to logger. It
// asks the home server whose URL home holds (a string) about keys,
// through a proxy that answers 502 until home is set: the relay's
// readiness asks from its start. Both stop when tb ends.
func Start(tb testing.TB, host string, home *atomic.Value, logger *slog.Logger) *relay.Service {
	tb.Helper()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, ok := home.Load().(string)
		if !ok {
			http.Error(w, "no home server yet", http.StatusBadGateway)
			return
		}
		u, _ := url.Parse(base)
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
	}))
	tb.Cleanup(proxy.Close)
	cfg := relay.DefaultConfig()
	cfg.KeyFile = filepath.Join(tb.TempDir(), "relay.key")
	cfg.Listen = []string{"/ip4/" + host + "/tcp/0"}
	cfg.HomeServer = proxy.URL
	cfg.HTTPAddr = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := relay.Start(ctx, cfg, logger)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close(context.Background()) })
	return r
}
