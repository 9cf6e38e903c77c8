//go:build bench

package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
)

// rounds: baseline and target are measured alternately this many times and
// the median of each is compared, so a burst of noise hits both.
const rounds = 3

func startChatServer(t testing.TB, ns *natstest.Server) *chatserver.Server {
	t.Helper()
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = "kez.test"
	cfg.Streams.RegisterLimit = 1 << 30
	return startChatServerCfg(t, cfg)
}

// calloutConfig is a home server on ns that answers the auth callout.
func calloutConfig(ns *natstest.Server) chatserver.Config {
	cfg := clienttest.ChatConfig(ns)
	cfg.Streams.RegisterLimit = 1 << 30
	return cfg
}

// registerUsers registers user0..user<n-1> with new keys at the home
// server base and returns the keys, once every replica can know them.
func registerUsers(t testing.TB, base string, n int) []*kez.PrivateKey {
	t.Helper()
	var keys []*kez.PrivateKey
	for i := range n {
		k, _ := kez.GenerateKey(nil)
		h, _ := kez.ParseHandle(fmt.Sprintf("user%d", i), "kez.test")
		body, _ := json.Marshal(kez.NewRegistrationRequest(k, h, time.Now()))
		resp, err := http.Post(base+"/v1/register", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("register: %v", err)
		}
		resp.Body.Close()
		keys = append(keys, k)
	}
	time.Sleep(200 * time.Millisecond) // every replica's cache
	return keys
}

func startChatServerCfg(t testing.TB, cfg chatserver.Config) *chatserver.Server {
	t.Helper()
	return startChatServerLog(t, cfg, slog.New(slog.DiscardHandler))
}

func startChatServerLog(t testing.TB, cfg chatserver.Config, logger *slog.Logger) *chatserver.Server {
	t.Helper()
	srv, err := chatserver.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return srv
}

// rate runs op n times over conc goroutines and returns operations per
// second; op gets the operation's index.
func rate(t testing.TB, n, conc int, op func(i int) error) float64 {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatalf("operation failed: %v", err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// compare measures baseline and target alternately and reports the
// medians and their ratio.
func compare(t testing.TB, name string, baseline, target func() float64) float64 {
	t.Helper()
	return compareRounds(t, name, rounds, baseline, target)
}

// compareRounds is compare over n rounds: more, shorter rounds for a
// figure that the machine's noise (other work starting and stopping for
// seconds at a time) would otherwise decide.
func compareRounds(t testing.TB, name string, n int, baseline, target func() float64) float64 {
	t.Helper()
	var b, g []float64
	for range n {
		b = append(b, baseline())
		g = append(g, target())
	}
	slices.Sort(b)
	slices.Sort(g)
	mb, mg := b[len(b)/2], g[len(g)/2]
	ratio := mg / mb
	t.Logf("%-52s %10.0f/s  baseline %10.0f/s  ratio %.2f", name, mg, mb, ratio)
	fmt.Printf("BENCH %s: %.0f/s, baseline %.0f/s, ratio %.2f\n", name, mg, mb, ratio)
	return ratio
}

func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return err
}

// buildCmd builds the command ./cmd/name of this module into a temporary
// directory and returns the binary's path.
func buildCmd(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}
