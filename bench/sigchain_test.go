//go:build bench

package bench_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
)

// TestBenchSigchainReads: the resident memory of a kez-sig-server
// process (its own binary, against the reference nats-server) while 1
// and then 32 clients read, in parallel and page by page, the longest
// chain allowed: 10,000 events (the default MAX_EVENTS) of about 6 KB
// each (a claim with a 4 KiB proof), ~60 MB. Reads are paged
// (sigserver.MaxPage events) and written streamed, so the peak should
// not grow with the chain: the figure is the peak over the idle RSS,
// against the chain's size.
func TestBenchSigchainReads(t *testing.T) {
	const events, readers = 10_000, 32
	ns := natstest.Start(t)
	bin := buildCmd(t, "kez-sig-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NATS_URL="+ns.ClientURL(), "NATS_NKEY_FILE="+ns.KeyFile(natskeys.KeySigServer),
		"HTTP_ADDR="+addr, "REQUIRE_REGISTERED=false", "LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := get(http.DefaultClient, base+"/v1/healthz"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kez-sig-server not healthy within 30s")
		}
	}

	// The chain, appended straight to the stream (the HTTP API would
	// take its rate limit's hour): the same events, signed and linked.
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := streams.OpenSigchains(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := kez.GenerateKey(nil)
	proof := strings.Repeat("p", 4096)
	var prev *sigchain.Event
	var seq uint64
	var chainBytes int64
	start := time.Now()
	for i := range events {
		e, err := sigchain.Next(k, prev, sigchain.TypeAddClaim,
			sigchain.Claim{Kind: "dns", Value: fmt.Sprintf("claim-%d.example", i), Proof: proof}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if seq, err = store.Append(ctx, e, seq); err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
		wire, _ := e.MarshalJSON()
		chainBytes += int64(len(wire))
		prev = &e
	}
	t.Logf("chain of %d events, %.1f MB, stored in %v", events, float64(chainBytes)/1e6, time.Since(start).Round(time.Second))

	pid := cmd.Process.Pid
	status := fmt.Sprintf("/proc/%d/status", pid)
	path := base + "/v1/sigchains/ed25519/" + k.Public().Hex()
	// readAll reads the whole chain a page at a time, keeping nothing.
	readAll := func(c *http.Client) (int64, error) {
		var n int64
		since := uint64(0)
		for {
			resp, err := c.Get(path + "?since=" + strconv.FormatUint(since, 10))
			if err != nil {
				return n, err
			}
			m, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			n += m
			if err != nil || resp.StatusCode != http.StatusOK {
				return n, fmt.Errorf("page from %d: %s %v", since, resp.Status, err)
			}
			next := resp.Header.Get(kez.NextPageHeader)
			if next == "" {
				return n, nil
			}
			if since, err = strconv.ParseUint(next, 10, 64); err != nil {
				return n, err
			}
		}
	}
	c := httpClient()
	if _, err := readAll(c); err != nil { // warm: the store's caches
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	idle := statusKiB(status, "VmRSS:")
	for _, conc := range []int{1, readers} {
		var peak atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				peak.Store(max(peak.Load(), statusKiB(status, "VmRSS:")))
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		var wg sync.WaitGroup
		var read atomic.Int64
		errs := make(chan error, conc)
		start := time.Now()
		for range conc {
			wg.Go(func() {
				n, err := readAll(c)
				read.Add(n)
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(stop)
		<-sampled
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		p := peak.Load()
		name := fmt.Sprintf("kez-sig-server RSS, %d parallel reads of a %d-event chain (%.0f MB)", conc, events, float64(chainBytes)/1e6)
		t.Logf("%s: idle %.1f MiB, peak %.1f MiB (+%.1f MiB), %.0f MB read in %v",
			name, float64(idle)/1024, float64(p)/1024, float64(p-idle)/1024, float64(read.Load())/1e6, time.Since(start).Round(time.Millisecond))
		fmt.Printf("BENCH %s: peak %.1f MiB, idle %.1f MiB, growth %.1f MiB = %.2f of the chain's size, %.3f of %d unpaged copies\n",
			name, float64(p)/1024, float64(idle)/1024, float64(p-idle)/1024,
			float64(p-idle)*1024/float64(chainBytes), float64(p-idle)*1024/float64(chainBytes*int64(conc)), conc)
	}
	fmt.Printf("BENCH kez-sig-server VmHWM over the run: %.1f MiB\n", float64(statusKiB(status, "VmHWM:"))/1024)
}
