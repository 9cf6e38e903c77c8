//go:build chaos

package chaos_test

import (
	"context"
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
	if r.regLost > 0 || r.msgLost > 0 || r.dup > 0 {
		t.Errorf("%s: acknowledged writes lost or duplicated", r.scenario)
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	regLogs := make([]*log, len(st.chats))
	msgLogs := make([]*log, len(st.chats))
	var loadLogs, msgLoadLogs []*log
	start := time.Now()
	for i := range st.chats {
		regLogs[i], msgLogs[i] = &log{}, &log{}
		wg.Go(func() { regProbe(ctx, st.chatURLs[i], 200*time.Millisecond, regLogs[i]) })
		wg.Go(func() {
			msgProbe(ctx, senders[i], recipient.key.Public(), fmt.Sprintf("r%d", i), 200*time.Millisecond, msgLogs[i])
		})
	}
	for j := range loaders {
		l, m := &log{}, &log{}
		loadLogs = append(loadLogs, l)
		msgLoadLogs = append(msgLoadLogs, m)
		wg.Go(func() { regProbe(ctx, st.chatURLs[j%len(st.chatURLs)], 0, l) })
		wg.Go(func() {
			msgProbe(ctx, senders[len(st.chats)+j], recipient.key.Public(), fmt.Sprintf("l%d", j), 0, m)
		})
	}
	time.Sleep(warm)
	fault()
	time.Sleep(time.Until(start.Add(total)))
	cancel()
	wg.Wait()
	end := time.Now()
	for i := range st.chats {
		st.waitReady(t, i, 60*time.Second)
	}
	r := row{scenario: name}
	r.regAcked, r.regPresent, r.regLost = presentRegs(t, st.chatURLs[0], append(append([]*log{}, regLogs...), loadLogs...)...)
	got := drain(t, recipient)
	r.msgAcked, r.msgPresent, r.msgLost, r.dup = presentMsgs(got, append(append([]*log{}, msgLogs...), msgLoadLogs...)...)
	for i := range st.chats {
		r.regGaps = append(r.regGaps, regLogs[i].gap(start, end))
		r.msgGaps = append(r.msgGaps, msgLogs[i].gap(start, end))
	}
	r.note = errSummary(slices.Concat(regLogs, msgLogs, loadLogs, msgLoadLogs)...)
	report(t, r)
	return r
}

// TestChaosCluster: a 3-node cluster of nats-server processes with two
// kez-chat-server replicas (replica i connected to node i): the node
// leading the registry (moved to node 1 first, replica 1's) frozen for
// 30 s, then the registry's leader killed; kill -9 of a
// replica under 16-way registrations.
func TestChaosCluster(t *testing.T) {
	st := startStack(t, stackOptions{nodes: 3, chats: 2})

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
	for i := range r.regGaps {
		if r.regGaps[i] > limit || r.msgGaps[i] > limit {
			t.Errorf("%s: replica %d: longest gap registrations %v, messages %v; want at most %v",
				r.scenario, i+1, r.regGaps[i].Round(100*time.Millisecond), r.msgGaps[i].Round(100*time.Millisecond), limit)
		}
	}
}

// TestChaosStoreFull: the JetStream store on a small tmpfs (64 MiB) that
// something else fills, below nats-server's max_file_store: registrations
// must be answered within 2 s (503 store_unavailable), readiness red
// naming the registry, sends answered within 2 s (stored, or refused),
// and nothing acknowledged lost once space is freed and nats-server
// restarted.
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
		body := fmt.Sprintf("full-%d", n)
		_, wire, err := message.Seal(sender.id, recipient.key.Public(), message.Text(body), time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		_, err = sender.in.Send(sctx, wire)
		cancel()
		took := time.Since(start)
		worstSend = max(worstSend, took)
		kind := "stored"
		if err != nil {
			kind = errKind(err)
		} else {
			sent.add(ack{at: time.Now(), key: body})
		}
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
	macked, mpresent, mlost, dup := presentMsgs(drain(t, recipient), sent)
	fmt.Printf("CHAOS store full, after space freed and nats-server restarted: registrations acked %d present %d lost %d; messages acked %d present %d lost %d dup %d; a new registration %s: %d %s\n",
		acked, present, lost, macked, mpresent, mlost, dup, h, code, kind)
	if lost > 0 || mlost > 0 || dup > 0 || kind != "" {
		t.Errorf("after the store was freed: lost %d registrations, %d messages (%d duplicated), new registration %d %s", lost, mlost, dup, code, kind)
	}
}

// registerOnce posts one fresh registration and does not retry.
func registerOnce(ctx context.Context, base string) (string, kez.PublicKey, int, string) {
	return register(ctx, base, 0, false)
}
