//go:build chaos

package chaos_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
)

// figures collects every scenario's row; TestMain-less: printed by each
// test at its end and kept for the summary.
var (
	figMu   sync.Mutex
	figures []row
)

func report(t *testing.T, r row) {
	t.Helper()
	figMu.Lock()
	figures = append(figures, r)
	figMu.Unlock()
	fmt.Println("CHAOS " + r.String())
	for _, c := range r.tallies {
		if c.lost > 0 || c.dup > 0 {
			t.Errorf("%s: acknowledged writes lost or duplicated", r.scenario)
		}
	}
}

// scenario runs the probes (one registration and one message prober per
// replica, plus loaders registration clients and loaders message senders
// without pause, spread over the replicas) for total, calling fault once
// the probes have run for warm; it returns the figures of the window.
func scenario(t *testing.T, st *stack, name string, loaders int, warm, total time.Duration, fault func()) row {
	t.Helper()
	for i := range st.chats {
		if !st.waitReady(t, i, 60*time.Second) {
			t.FailNow()
		}
	}
	recipient := newUser(t, st.chatURLs[0], st.natsURLs[0])
	var senders []*user
	for i := range len(st.chats) + loaders {
		senders = append(senders, newUser(t, st.chatURLs[i%len(st.chats)], st.natsURLs[i%len(st.natsURLs)]))
	}
	regLogs := make([]*log, len(st.chats))
	msgLogs := make([]*log, len(st.chats))
	var loadLogs, msgLoadLogs []*log
	var probes []func(context.Context)
	for i := range st.chats {
		regLogs[i], msgLogs[i] = &log{}, &log{}
		probes = append(probes, func(ctx context.Context) { regProbe(ctx, st.chatURLs[i], 200*time.Millisecond, regLogs[i]) },
			func(ctx context.Context) {
				msgProbe(ctx, senders[i], recipient.key.Public(), fmt.Sprintf("r%d", i), 200*time.Millisecond, msgLogs[i])
			})
	}
	for j := range loaders {
		l, m := &log{}, &log{}
		loadLogs = append(loadLogs, l)
		msgLoadLogs = append(msgLoadLogs, m)
		probes = append(probes, func(ctx context.Context) { regProbe(ctx, st.chatURLs[j%len(st.chatURLs)], 0, l) },
			func(ctx context.Context) {
				msgProbe(ctx, senders[len(st.chats)+j], recipient.key.Public(), fmt.Sprintf("l%d", j), 0, m)
			})
	}
	start, end := during(warm, total, fault, probes...)
	for i := range st.chats {
		st.waitReady(t, i, 60*time.Second)
	}
	reg, msg := tally{what: "reg"}, tally{what: "msg", dups: true}
	reg.acked, reg.present, reg.lost = presentRegs(t, st.chatURLs[0], append(append([]*log{}, regLogs...), loadLogs...)...)
	got := drain(t, recipient)
	msg.acked, msg.present, msg.lost, msg.dup = presentMsgs(got, append(append([]*log{}, msgLogs...), msgLoadLogs...)...)
	reg.gaps, msg.gaps = gaps(regLogs, start, end), gaps(msgLogs, start, end)
	r := row{scenario: name, tallies: []tally{reg, msg}, note: errSummary(slices.Concat(regLogs, msgLogs, loadLogs, msgLoadLogs)...)}
	report(t, r)
	return r
}

// during runs probes, each in its own goroutine, for total, calling
// fault once they have run for warm, and returns the window they ran in.
func during(warm, total time.Duration, fault func(), probes ...func(context.Context)) (start, end time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start = time.Now()
	for _, p := range probes {
		wg.Go(func() { p(ctx) })
	}
	time.Sleep(warm)
	fault()
	time.Sleep(time.Until(start.Add(total)))
	cancel()
	wg.Wait()
	return start, time.Now()
}

// sigScenario appends to sigchains through the sig-server replicas (one
// prober per replica every 200 ms, plus loaders appenders without pause,
// spread over the replicas), each on the chain of its own key registered
// through the first chat-server, for total, calling fault once the
// probes have run for warm; then it reads every chain back and returns
// the figures of the window.
func sigScenario(t *testing.T, st *stack, name string, loaders int, warm, total time.Duration, fault func()) row {
	t.Helper()
	for _, u := range st.sigURLs {
		if !readyWithin(t, u, 60*time.Second) {
			t.FailNow()
		}
	}
	logs := make([]*log, len(st.sigs)+loaders)
	var probes []func(context.Context)
	for i := range logs {
		k, err := kez.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if h, _, code, kind := registerKey(context.Background(), st.chatURLs[0], k, 0, true); kind != "" {
			t.Fatalf("register %s: %d %s", h, code, kind)
		}
		sc := &client.Sigchains{BaseURL: st.sigURLs[i%len(st.sigs)], HTTP: &http.Client{Timeout: 20 * time.Second}}
		interval := time.Duration(0)
		if i < len(st.sigs) {
			interval = 200 * time.Millisecond
		}
		logs[i] = &log{}
		probes = append(probes, func(ctx context.Context) { sigProbe(ctx, sc, k, fmt.Sprintf("p%d", i), interval, logs[i]) })
	}
	start, end := during(warm, total, fault, probes...)
	for _, u := range st.sigURLs {
		readyWithin(t, u, 60*time.Second)
	}
	sig := tally{what: "sig", dups: true, gaps: gaps(logs[:len(st.sigs)], start, end)}
	sig.acked, sig.present, sig.lost, sig.dup = presentSigs(t, &client.Sigchains{BaseURL: st.sigURLs[len(st.sigs)-1]}, st.js, logs...)
	r := row{scenario: name, tallies: []tally{sig}, note: errSummary(logs...)}
	report(t, r)
	for _, l := range logs {
		for kind := range l.errs {
			if strings.HasPrefix(kind, "refused:") {
				t.Errorf("%s: an append was refused (%s): a chain is not what its prober appended", name, kind)
			}
		}
	}
	return r
}

// TestChaosCluster: a 3-node cluster of nats-server processes with two
// kez-chat-server replicas and two kez-sig-server replicas (replica i
// connected to node i): the node leading the registry (moved to node 1
// first, replica 1's) frozen for 30 s, then the registry's leader
// killed; kill -9 of a chat-server replica under 16-way registrations
// and messages; kill -9 of a sig-server replica, three times, under
// 16-way sigchain appends.
func TestChaosCluster(t *testing.T) {
	st := startStack(t, stackOptions{nodes: 3, chats: 2, sigs: 2})

	t.Run("node frozen 30s", func(t *testing.T) {
		// The worst case: the registry's leader is the node replica 1
		// is connected to.
		n := st.leadOn("KEZ_REGISTRY", 0)
		r := scenario(t, st, fmt.Sprintf("3 nodes, n%d (registry leader; replica %d's node) frozen 30s", n+1, n+1), 0, 5*time.Second, 50*time.Second, func() {
			st.nodes[n].signal(syscall.SIGSTOP)
			time.Sleep(30 * time.Second)
			st.nodes[n].signal(syscall.SIGCONT)
		})
		checkGaps(t, r, 10*time.Second)
	})

	t.Run("node killed", func(t *testing.T) {
		n := st.leader("KEZ_REGISTRY")
		r := scenario(t, st, fmt.Sprintf("3 nodes, n%d (registry leader) kill -9", n+1), 0, 5*time.Second, 45*time.Second, func() {
			st.nodes[n].kill9()
			time.Sleep(25 * time.Second)
			st.nodes[n].start()
		})
		checkGaps(t, r, 10*time.Second)
	})

	t.Run("replica kill -9 under 16-way load", func(t *testing.T) {
		scenario(t, st, "chat-server replica 1 kill -9, 16-way", 16, 5*time.Second, 25*time.Second, func() {
			st.chats[0].kill9()
			time.Sleep(2 * time.Second)
			st.chats[0].start()
		})
	})

	t.Run("sig-server replica kill -9 x3 under 16-way load", func(t *testing.T) {
		sigScenario(t, st, "sig-server replica 1 kill -9 x3, 16-way", 16, 5*time.Second, 45*time.Second, func() {
			for range 3 {
				st.sigs[0].kill9()
				time.Sleep(2 * time.Second)
				st.sigs[0].start()
				readyWithin(t, st.sigURLs[0], 30*time.Second)
				time.Sleep(5 * time.Second)
			}
		})
	})

	t.Run("clock skew", func(t *testing.T) {
		ctx := context.Background()
		var out []string
		for _, c := range []struct {
			skew time.Duration
			want string
		}{
			{4*time.Minute + 50*time.Second, ""}, {-4*time.Minute - 50*time.Second, ""},
			{5*time.Minute + 10*time.Second, "stale_timestamp"}, {-5*time.Minute - 10*time.Second, "stale_timestamp"},
		} {
			_, _, code, kind := register(ctx, st.chatURLs[1], c.skew, true)
			out = append(out, fmt.Sprintf("%+v: %d %s", c.skew, code, kind))
			if kind != c.want {
				t.Errorf("registration with the clock off by %v: %d %q, want %q", c.skew, code, kind, c.want)
			}
		}
		fmt.Println("CHAOS clock skew: " + strings.Join(out, "; "))
	})
}

// TestChaosSingleNode: the single-node deployment (one nats-server,
// deploy/nats.conf's settings) killed with kill -9 under 16-way
// registrations and messages, back 2 s later.
func TestChaosSingleNode(t *testing.T) {
	st := startStack(t, stackOptions{nodes: 1, chats: 1})
	scenario(t, st, "1 node, nats-server kill -9, 16-way", 16, 5*time.Second, 30*time.Second, func() {
		st.nodes[0].kill9()
		time.Sleep(2 * time.Second)
		st.nodes[0].start()
	})
}

// checkGaps fails r when a replica went longer than limit without an
// acknowledged registration or message.
func checkGaps(t *testing.T, r row, limit time.Duration) {
	t.Helper()
	for _, c := range r.tallies {
		for i, g := range c.gaps {
			if g > limit {
				t.Errorf("%s: replica %d: longest gap %s %v; want at most %v", r.scenario, i+1, c.what, g.Round(100*time.Millisecond), limit)
			}
		}
	}
}

// gaps is the longest gap of each replica's prober within [from, to].
func gaps(probes []*log, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, l := range probes {
		out = append(out, l.gap(from, to))
	}
	return out
}

// TestChaosStoreFull: the JetStream store on a small tmpfs (64 MiB) that
// something else fills, below nats-server's max_file_store: registrations
// must be answered within 2 s (503 store_unavailable), readiness red
// naming the registry, sends answered within 2 s (stored, or refused),
// and nothing acknowledged lost once space is freed and nats-server
// restarted: the registrations and the messages stored before the disk
// filled are all there, and a message sends again.
func TestChaosStoreFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs: skipped")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s): skipped", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	st := startStack(t, stackOptions{nodes: 1, chats: 1, storeDir: mnt,
		chatEnv: []string{"INBOX_MAX_BYTES=16777216"},
		adjustConf: func(c string) string {
			return strings.Replace(c, "sync_interval: always", "sync_interval: always\n  max_file_store: 1GB", 1)
		}})
	ctx := context.Background()
	before := &log{}
	for range 20 {
		if h, key, _, kind := register(ctx, st.chatURLs[0], 0, true); kind == "" {
			before.add(ack{at: time.Now(), key: h, val: key.String()})
		}
	}
	recipient := newUser(t, st.chatURLs[0], st.natsURLs[0])
	sender := newUser(t, st.chatURLs[0], st.natsURLs[0])
	sent := &log{}
	// send sends body and says how it went ("stored", or why not).
	send := func(body string) (string, time.Duration) {
		_, wire, err := message.Seal(sender.id, recipient.key.Public(), message.Text(body), time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		start := time.Now()
		if _, err = sender.in.Send(sctx, wire); err != nil {
			return errKind(err), time.Since(start)
		}
		sent.add(ack{at: time.Now(), key: body})
		return "stored", time.Since(start)
	}
	// Messages stored before the disk fills must all be there after.
	for n := range 5 {
		if kind, _ := send(fmt.Sprintf("before-%d", n)); kind != "stored" {
			t.Fatalf("a send before the disk filled: %s", kind)
		}
	}
	// Something else fills the disk.
	filler := filepath.Join(mnt, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count=64").Run()

	var worst time.Duration
	var codes []string
	for range 5 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		_, _, code, kind := registerOnce(cctx, st.chatURLs[0])
		cancel()
		took := time.Since(start)
		worst = max(worst, took)
		codes = append(codes, fmt.Sprintf("%d %s in %v", code, kind, took.Round(10*time.Millisecond)))
	}
	var worstSend time.Duration
	var sends []string
	for n := range 5 {
		kind, took := send(fmt.Sprintf("full-%d", n))
		worstSend = max(worstSend, took)
		sends = append(sends, fmt.Sprintf("%s in %v", kind, took.Round(10*time.Millisecond)))
	}
	fmt.Printf("CHAOS store full (tmpfs, below max_file_store): sends %s\n", strings.Join(sends, "; "))
	if worstSend > 2*time.Second {
		t.Errorf("a send with the disk full took %v, want at most 2s", worstSend)
	}
	resp, err := http.Get(st.chatURLs[0] + "/v1/readyz")
	ready, body := "?", []byte(nil)
	if err == nil {
		ready = resp.Status
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	fmt.Printf("CHAOS store full (tmpfs, below max_file_store): registrations %s; readiness %s\n", strings.Join(codes, "; "), ready)
	if worst > 2*time.Second || slices.ContainsFunc(codes, func(c string) bool { return !strings.HasPrefix(c, "503 store_unavailable") }) {
		t.Errorf("registrations with the disk full: %s; want 503 store_unavailable within 2s", strings.Join(codes, "; "))
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "KEZ_REGISTRY") {
		t.Errorf("readiness with the disk full: %s %s; want 503 naming KEZ_REGISTRY", ready, body)
	}
	os.Remove(filler)
	st.nodes[0].kill9()
	st.nodes[0].start()
	waitHTTP(t, st.monitors[0]+"/healthz", 60*time.Second)
	st.waitReady(t, 0, 60*time.Second)
	acked, present, lost := presentRegs(t, st.chatURLs[0], before)
	h, _, code, kind := register(ctx, st.chatURLs[0], 0, true)
	if skind, _ := send("after"); skind != "stored" {
		t.Errorf("a send after the store was freed: %s", skind)
	}
	macked, mpresent, mlost, dup := presentMsgs(drain(t, recipient), sent)
	fmt.Printf("CHAOS store full, after space freed and nats-server restarted: registrations acked %d present %d lost %d; messages acked %d present %d lost %d dup %d; a new registration %s: %d %s\n",
		acked, present, lost, macked, mpresent, mlost, dup, h, code, kind)
	if lost > 0 || mlost > 0 || dup > 0 || kind != "" || mpresent < 6 {
		t.Errorf("after the store was freed: lost %d registrations, %d messages (%d duplicated), new registration %d %s", lost, mlost, dup, code, kind)
	}
}

// registerOnce posts one fresh registration and does not retry.
func registerOnce(ctx context.Context, base string) (string, kez.PublicKey, int, string) {
	return register(ctx, base, 0, false)
}
