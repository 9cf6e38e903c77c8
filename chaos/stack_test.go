//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natsproc"
)

// domain is the home domain of the stacks.
const domain = "kez.test"

// binDir is where `make build tools` put the binaries.
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CHAOS_BIN")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"nats-server", "kez-chat-server", "kez-sig-server"} {
		if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
			t.Fatalf("%v: run `make build tools` (or set CHAOS_BIN)", err)
		}
	}
	return abs
}

// proc is one child process (natsproc.Proc), failing the test when it
// does not start.
type proc struct {
	t *testing.T
	*natsproc.Proc
}

func (p *proc) start() {
	p.t.Helper()
	if err := p.Start(); err != nil {
		p.t.Fatal(err)
	}
}

// kill9 kills the process as kill -9 would and reaps it.
func (p *proc) kill9() { p.Kill() }

func (p *proc) signal(sig syscall.Signal) { p.Signal(sig) }

// stack is a 3-node nats-server cluster (or one node) of processes from
// nats/nats.conf, joined as deploy/cluster/docker-compose.yml joins
// them (flags), kez-chat-server replicas, replica i connected to node
// i, and kez-sig-server replicas, connected the same way.
type stack struct {
	t        *testing.T
	dir      string
	keys     string
	nodes    []*proc
	natsURLs []string
	monitors []string
	chats    []*proc
	chatURLs []string
	sigs     []*proc
	sigURLs  []string
	admin    *nats.Conn
	js       jetstream.JetStream
}

type stackOptions struct {
	nodes, chats int
	sigs         int                 // kez-sig-server replicas (started after the chat-servers, whose projection they read)
	storeDir     string              // parent of the nodes' stores (default: the stack's folder)
	chatEnv      []string            // extra environment of the chat-servers
	adjustConf   func(string) string // edits nats.conf (the store's limits)
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	bin := binDir(t)
	// Kept when the run fails, with the processes' logs.
	dir, err := os.MkdirTemp("", "kez-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CHAOS_KEEP") != "" {
			t.Logf("logs and stores kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	st := &stack{t: t, dir: dir, keys: filepath.Join(dir, "keys")}
	pub, err := natskeys.EnsureKeys(st.keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.keys, natskeys.KeysConfFile), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(filepath.Join("..", "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if o.storeDir == "" {
		o.storeDir = dir
	}
	c, err := natsproc.Start(context.Background(), natsproc.Options{Bin: filepath.Join(bin, "nats-server"), Conf: ref,
		Dir: dir, StoreDir: o.storeDir, Nodes: o.nodes, Adjust: o.adjustConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	for _, n := range c.Nodes {
		st.nodes = append(st.nodes, &proc{t: t, Proc: n.Proc})
		st.natsURLs = append(st.natsURLs, n.ClientURL)
		st.monitors = append(st.monitors, n.MonitorURL)
	}
	ports, err := natsproc.FreePorts(o.chats + o.sigs)
	if err != nil {
		t.Fatal(err)
	}
	replicas := "1"
	if o.nodes > 1 {
		replicas = "3"
	}
	for i := range o.sigs {
		st.sigURLs = append(st.sigURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[o.chats+i]))
	}
	sigchainURL := "http://127.0.0.1:7878"
	if o.sigs > 0 {
		sigchainURL = st.sigURLs[0]
	}
	for i := range o.chats {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		env := append([]string{"NATS_URL=" + st.natsURLs[i%o.nodes], "PUBLIC_NATS_URL=" + st.natsURLs[0], "DOMAIN=" + domain,
			"KEYS_DIR=" + st.keys, "HTTP_ADDR=" + addr, "PUBLIC_URL=http://" + addr, "REGISTER_LIMIT=100000000",
			"INBOX_MAX_MSGS=1000000", "SENDER_MAX_MSGS=1000000",
			"SIGCHAIN_URL=" + sigchainURL, "REPLICAS=" + replicas, "LOG_LEVEL=info", "LOG_FORMAT=text"}, o.chatEnv...)
		p := &proc{t: t, Proc: &natsproc.Proc{Name: fmt.Sprintf("chat%d", i+1), Path: filepath.Join(bin, "kez-chat-server"), Env: env,
			Log: filepath.Join(dir, fmt.Sprintf("chat%d.log", i+1))}}
		p.start()
		t.Cleanup(p.kill9)
		st.chats = append(st.chats, p)
		st.chatURLs = append(st.chatURLs, "http://"+addr)
		// The first replica alone: it creates the streams.
		if !st.waitReady(t, i, 90*time.Second) {
			t.FailNow()
		}
	}
	for i := range o.sigs {
		// The append limit and a chain's length raised far above what
		// the load appends: the runs measure faults, not the limits.
		env := []string{"NATS_URL=" + st.natsURLs[i%o.nodes], "NATS_NKEY_FILE=" + filepath.Join(st.keys, natskeys.KeySigServer+".nk"),
			"HTTP_ADDR=" + strings.TrimPrefix(st.sigURLs[i], "http://"), "APPEND_LIMIT=100000000", "MAX_EVENTS=100000",
			"REPLICAS=" + replicas, "LOG_LEVEL=info", "LOG_FORMAT=text"}
		p := &proc{t: t, Proc: &natsproc.Proc{Name: fmt.Sprintf("sig%d", i+1), Path: filepath.Join(bin, "kez-sig-server"), Env: env,
			Log: filepath.Join(dir, fmt.Sprintf("sig%d.log", i+1))}}
		p.start()
		t.Cleanup(p.kill9)
		st.sigs = append(st.sigs, p)
		if !readyWithin(t, st.sigURLs[i], 90*time.Second) {
			t.FailNow()
		}
	}
	nc, err := nats.Connect(strings.Join(st.natsURLs, ","), nkey(t, filepath.Join(st.keys, natskeys.KeyAdmin+".nk")),
		nats.MaxReconnects(-1), nats.PingInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st.admin = nc
	st.js, _ = jetstream.New(nc)
	return st
}

func nkey(t *testing.T, seed string) nats.Option {
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// waitReady waits until chat replica i answers /v1/readyz 200, and
// logs (t.Error) what is not ready if it does not within d.
func (st *stack) waitReady(t *testing.T, i int, d time.Duration) bool {
	t.Helper()
	return readyWithin(t, st.chatURLs[i], d)
}

// readyWithin waits until the service at base answers /v1/readyz 200,
// and logs (t.Error) what is not ready if it does not within d.
func readyWithin(t *testing.T, base string, d time.Duration) bool {
	t.Helper()
	if err := natsproc.WaitHTTP(context.Background(), base+"/v1/readyz", d); err != nil {
		t.Error(err)
		return false
	}
	return true
}

// leadOn makes node n (0-based) the leader of stream, asking the
// leader to step down in its favour, and returns the node leading after
// (it stays where it was if the cluster does not follow within 20 s).
func (st *stack) leadOn(stream string, n int) int {
	st.t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": fmt.Sprintf("n%d", n+1)}})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if st.leader(stream) == n {
			return n
		}
		_, _ = st.admin.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 5*time.Second)
		time.Sleep(2 * time.Second)
	}
	return st.leader(stream)
}

// leader returns the index of the node leading stream.
func (st *stack) leader(stream string) int {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := st.js.Stream(ctx, stream)
	if err != nil {
		st.t.Fatalf("stream %s: %v", stream, err)
	}
	if c := s.CachedInfo().Cluster; c != nil {
		for i := range st.nodes {
			if c.Leader == fmt.Sprintf("n%d", i+1) {
				return i
			}
		}
	}
	return 0
}

func waitHTTP(t *testing.T, url string, d time.Duration) {
	t.Helper()
	if err := natsproc.WaitHTTP(context.Background(), url, d); err != nil {
		t.Fatal(err)
	}
}
