//go:build bench

package bench_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/nats/natstest"
)

// floodEnv carries a flood process's configuration (floodConfig as JSON)
// from TestBenchSignInFlood to TestFloodProcess in a child process.
const floodEnv = "KEZ_BENCH_FLOOD"

// floodConfig is what one flood process does: rate bogus sign-ins per
// second at url, cycling through the kinds (unregistered: a fresh key
// signing the nonce correctly; badsig: a key with a signature that does
// not verify; nocreds: a CONNECT with no credentials at all), from
// source addresses srcBase.x.y (srcs of them, one after another), until
// its stdin closes.
type floodConfig struct {
	URL     string `json:"url"`
	Rate    int    `json:"rate"`
	SrcBase string `json:"src_base"` // "127.1": 127.1.<i/250>.<i%250+1>
	Srcs    int    `json:"srcs"`
}

// maxInFlight bounds one flood process's open sign-ins: 500/s held for
// the broker's 2 s authorization timeout each, with room to spare.
const maxInFlight = 3000

// floodResult is what a flood process reports when it stops.
type floodResult struct {
	Attempts int     `json:"attempts"`
	Denied   int     `json:"denied"`  // -ERR 'Authorization Violation'
	Failed   int     `json:"failed"`  // anything else (dial, timeout)
	Skipped  int     `json:"skipped"` // maxInFlight reached
	Seconds  float64 `json:"seconds"`
}

// TestFloodProcess is the body of a flood process; it does nothing in a
// normal run (it is started by TestBenchSignInFlood with floodEnv set).
func TestFloodProcess(t *testing.T) {
	conf := os.Getenv(floodEnv)
	if conf == "" {
		t.Skip("run by TestBenchSignInFlood")
	}
	var cfg floodConfig
	if err := json.Unmarshal([]byte(conf), &cfg); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	var res floodResult
	var denied, failed atomic.Int64
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	next := start
loop:
	for i := 0; ; i++ {
		select {
		case <-stop:
			break loop
		default:
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		res.Attempts++
		select {
		case sem <- struct{}{}:
		default:
			res.Skipped++
			continue
		}
		src := net.ParseIP(fmt.Sprintf("%s.%d.%d", cfg.SrcBase, (i%cfg.Srcs)/250, (i%cfg.Srcs)%250+1))
		wg.Go(func() {
			defer func() { <-sem }()
			if bogusSignIn(cfg.URL, src, i%3) {
				denied.Add(1)
			} else {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Denied, res.Failed = int(denied.Load()), int(failed.Load())
	out, _ := json.Marshal(res)
	fmt.Printf("FLOOD %s\n", out)
}

// bogusSignIn makes one sign-in of kind 0 (unregistered key), 1 (bad
// signature) or 2 (no credentials) from src, speaking the NATS protocol
// itself, and reports whether the broker refused it with an
// authorization violation.
func bogusSignIn(url string, src net.IP, kind int) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return false
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info) != nil {
		return false
	}
	opts := map[string]any{"verbose": false, "pedantic": false, "protocol": 1, "headers": true}
	switch kind {
	case 0, 1:
		k, _ := kez.GenerateKey(rand.Reader)
		sig := k.Sign(kez.PurposeNATSAuth, []byte(info.Nonce))
		if kind == 1 {
			sig[0] ^= 0xff
		}
		opts["nkey"] = k.Public().NKey()
		opts["sig"] = base64.RawURLEncoding.EncodeToString(sig)
	}
	connect, _ := json.Marshal(opts)
	fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(line, "-ERR") {
			return strings.Contains(line, "Authorization Violation")
		}
		if strings.HasPrefix(line, "PONG") {
			return false // let in: not what a flood should get
		}
	}
}

// flood is a running flood process.
type flood struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

func startFlood(t *testing.T, cfg floodConfig) *flood {
	t.Helper()
	conf, _ := json.Marshal(cfg)
	f := &flood{cmd: exec.Command(os.Args[0], "-test.run=^TestFloodProcess$", "-test.count=1")}
	f.cmd.Env = append(os.Environ(), floodEnv+"="+string(conf))
	f.cmd.Stdout = &f.out
	f.cmd.Stderr = os.Stderr
	var err error
	if f.stdin, err = f.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f.cmd.ProcessState == nil {
			f.cmd.Process.Kill()
			f.cmd.Wait()
		}
	})
	return f
}

// stop ends the flood and returns what it did.
func (f *flood) stop(t *testing.T) floodResult {
	t.Helper()
	f.stdin.Close()
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("flood process: %v\n%s", err, f.out.String())
	}
	for _, line := range strings.Split(f.out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "FLOOD "); ok {
			var res floodResult
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				t.Fatal(err)
			}
			return res
		}
	}
	t.Fatalf("flood process reported nothing:\n%s", f.out.String())
	return floodResult{}
}

// countingWriter counts the bytes written through it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// TestBenchSignInFlood: a legitimate user's sign-in latency (connect
// through the auth callout, serial) alone and while two other processes
// send 500 bogus sign-ins a second each (unregistered keys, bad nonce
// signatures, no credentials, in turn), as p50/p99 ratios; the flood
// comes once from 2,000 loopback addresses (each under the per-address
// failure limit: nothing is throttled, the worst case) and once from one
// address per process (throttled after 100 failures: its keys change;
// its sign-ins with no credentials, all of one "key", after 20). Two home-server
// replicas answer the callout, logging JSON as in production. Also the
// log bytes per 1,000 denials, ours and nats-server's (its log file,
// default options).
func TestBenchSignInFlood(t *testing.T) {
	natsLog := filepath.Join(t.TempDir(), "nats.log")
	ns := natstest.StartWith(t, func(o *server.Options) {
		o.NoLog, o.LogFile, o.Logtime = false, natsLog, true
	})
	ns.ConfigureLogger()

	var ourLog countingWriter
	cfg := calloutConfig(ns)
	var replicas []*chatserver.Server
	for range 2 {
		replicas = append(replicas, startChatServerLog(t, cfg, slog.New(slog.NewJSONHandler(&ourLog, nil))))
	}
	const users = 16
	keys := registerUsers(t, replicas[0].URL(), users)

	// metric sums a counter over both replicas (every label).
	metric := func(name string) float64 {
		var n float64
		for _, srv := range replicas {
			resp, err := http.Get(srv.URL() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, name+"{") {
					f := strings.Fields(line)
					v, _ := strconv.ParseFloat(f[len(f)-1], 64)
					n += v
				}
			}
		}
		return n
	}
	denials := func() float64 { return metric("kez_callout_denied_total") }
	natsLogSize := func() int64 {
		st, err := os.Stat(natsLog)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	// signIns signs in n times, one after another, and returns the
	// latency percentiles of those that succeeded and how many failed.
	signIns := func(n int) (p50, p99 time.Duration, failed int) {
		var lat latencies
		for i := range n {
			start := time.Now()
			nc, err := client.ConnectNATS(ns.ClientURL(), keys[i%users], nats.MaxReconnects(0))
			if err != nil {
				failed++
				continue
			}
			lat.d = append(lat.d, time.Since(start))
			nc.Close()
		}
		p50, p99 = lat.percentiles()
		return p50, p99, failed
	}
	// settle waits until the replicas have answered every callout
	// request they hold (their request count stays put for a second).
	settle := func() {
		for last := -1.0; ; time.Sleep(time.Second) {
			n := metric("kez_callout_requests_total")
			if n == last {
				return
			}
			last = n
		}
	}
	const n, perProcess = 300, 500
	signIns(50) // warm up
	// Log bytes per denial before this change (three lines per denial:
	// ours, nats-server's warning and its error) are in issue 19:
	// 26.8 MB a minute at ~1,100 denials/s, ~406 B per denial.
	for _, v := range []struct {
		name string
		srcs func(proc int) (string, int)
	}{
		{"2,000 addresses", func(proc int) (string, int) { return fmt.Sprintf("127.%d", 10+proc), 1000 }},
		{"one address per process", func(proc int) (string, int) { return fmt.Sprintf("127.%d", 20+proc), 1 }},
	} {
		settle()
		a50, a99, afailed := signIns(n)
		d0, ours0, theirs0 := denials(), ourLog.n.Load(), natsLogSize()
		var floods []*flood
		for proc := range 2 {
			base, srcs := v.srcs(proc)
			floods = append(floods, startFlood(t, floodConfig{URL: ns.ClientURL(), Rate: perProcess, SrcBase: base, Srcs: srcs}))
		}
		time.Sleep(2 * time.Second) // the flood at full rate
		f50, f99, ffailed := signIns(n)
		var attempts, denied, failed, skipped int
		var secs float64
		for _, f := range floods {
			r := f.stop(t)
			attempts, denied, failed, skipped = attempts+r.Attempts, denied+r.Denied, failed+r.Failed, skipped+r.Skipped
			secs = max(secs, r.Seconds)
		}
		time.Sleep(500 * time.Millisecond) // the last log lines
		dn := denials() - d0
		ours, theirs := ourLog.n.Load()-ours0, natsLogSize()-theirs0
		name := fmt.Sprintf("sign-in during a flood of %.0f bogus connects/s from %s", float64(attempts)/secs, v.name)
		t.Logf("%s: alone p50 %v p99 %v (%d of %d failed); flooded p50 %v p99 %v (%d of %d failed)", name, a50, a99, afailed, n, f50, f99, ffailed, n)
		fmt.Printf("BENCH %s: p50 %v (alone %v, ratio %.2f), p99 %v (alone %v, ratio %.2f); legitimate sign-ins failed: %d of %d flooded, %d of %d alone\n",
			name, f50, a50, float64(f50)/float64(a50), f99, a99, float64(f99)/float64(a99), ffailed, n, afailed, n)
		fmt.Printf("BENCH flood from %s: %d attempts, %d refused (Authorization Violation), %d failed otherwise, %d not sent (too many in flight); callout denials %.0f\n",
			v.name, attempts, denied, failed, skipped, dn)
		if b, err := os.ReadFile(natsLog); err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("nats-server's last log lines:\n%s", strings.Join(lines[max(0, len(lines)-4):], "\n"))
		}
		if dn > 0 {
			fmt.Printf("BENCH log bytes per 1,000 denials (flood from %s): ours %.0f B, nats-server %.0f B\n",
				v.name, float64(ours)*1000/dn, float64(theirs)*1000/dn)
		}
	}
}
