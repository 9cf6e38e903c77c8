package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natsproc"
)

// selfName is the generator's own row in the process table.
const selfName = "kez-load"

// Stack is the kez stack under load: URLs, and the processes to watch.
type Stack struct {
	ChatURLs   []string // home server replicas (HTTP API and /metrics)
	MonitorURL string   // nats-server monitoring (the first node's)
	StoreDir   string   // JetStream store (the first node's), when known (spawned)
	Procs      []Proc
	// ProfileURLs are the nodes' Go profiling ports (spawned with
	// SpawnOptions.Profile): their runtime statistics split nats-server's
	// memory into goroutine stacks and heap.
	ProfileURLs []string

	dir   string
	keep  bool
	nodes *natsproc.Cluster
	kez   []*natsproc.Proc // the kez servers, in start order
}

// Proc is a process of the stack.
type Proc struct {
	Name string
	PID  int
}

// SpawnOptions configure a stack started as child processes.
type SpawnOptions struct {
	Bin string // folder with nats-server, kez-chat-server, kez-sig-server
	// Conf is nats/nats.conf.
	Conf string
	// Nodes is the number of nats-server processes (default 1); more than
	// one form a cluster and every stream is replicated 3 times (R3).
	Nodes        int
	KeysDir      string        // reuse these keys (default: fresh ones in the temp folder)
	ChatReplicas int           // kez-chat-server replicas (each one a callout responder), spread over the nodes
	UserJWTTTL   time.Duration // USER_JWT_TTL
	Domain       string
	NoFile       int // soft fd limit of the children (0: inherited)
	// MaxConsumers, if not 0, sets jetstream.limits.default_max_consumers
	// (-1: unlimited). nats-server 2.15 caps every stream that sets no
	// limit at 1,000 consumers (users held one each before the inbox door).
	MaxConsumers int
	// Profile opens each node's profiling port (nats-server --profile).
	Profile bool
	Keep    bool
	Log     io.Writer
}

// Spawn starts nats-server (the reference config, one node or a cluster
// of Nodes, stores in a temp folder), the chat-server replicas (replica i
// on node i, handing its users that node's URL, so users are spread over
// the nodes too) and the sig-server, with the registration and append
// rate limits lifted.
func Spawn(ctx context.Context, o SpawnOptions) (_ *Stack, err error) {
	dir, err := os.MkdirTemp("", "kez-load-")
	if err != nil {
		return nil, err
	}
	st := &Stack{dir: dir, keep: o.Keep}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	// nats.conf includes keys/kez-keys.conf relative to itself: the public
	// keys go there, the seeds stay where they are.
	keys := filepath.Join(dir, "keys")
	if o.KeysDir != "" {
		keys = o.KeysDir
	}
	pub, err := natskeys.EnsureKeys(keys)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", natskeys.KeysConfFile), pub, 0o600); err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(o.Conf)
	if err != nil {
		return nil, err
	}
	no := natsproc.Options{Bin: filepath.Join(o.Bin, "nats-server"), Conf: conf, Dir: dir, Nodes: max(o.Nodes, 1), NoFile: o.NoFile, Profile: o.Profile}
	if o.MaxConsumers != 0 {
		no.Adjust = func(c string) string {
			return strings.Replace(c, "jetstream {", fmt.Sprintf("jetstream {\n  limits { default_max_consumers: %d }", o.MaxConsumers), 1)
		}
	}
	if _, err := os.Stat(no.Bin); err != nil {
		return nil, fmt.Errorf("%w (run `make build tools`, or pass --bin)", err)
	}
	st.nodes, err = natsproc.Start(ctx, no)
	if err != nil {
		return nil, err
	}
	for _, n := range st.nodes.Nodes {
		st.Procs = append(st.Procs, Proc{Name: n.Name, PID: n.PID()})
		if n.ProfileURL != "" {
			st.ProfileURLs = append(st.ProfileURLs, n.ProfileURL)
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "kez-load: started %s (pid %d, %s, log %s)\n", n.Name, n.PID(), n.ClientURL, n.Log)
		}
	}
	first := st.nodes.Nodes[0]
	st.MonitorURL, st.StoreDir = first.MonitorURL, first.StoreDir
	replicas := "1"
	if len(st.nodes.Nodes) > 1 {
		replicas = "3"
	}
	ports, err := natsproc.FreePorts(1 + o.ChatReplicas)
	if err != nil {
		return nil, err
	}
	sigAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	common := func(node int) []string {
		url := st.nodes.Nodes[node%len(st.nodes.Nodes)].ClientURL
		return []string{"NATS_URL=" + url, "PUBLIC_NATS_URL=" + url, "DOMAIN=" + o.Domain, "REPLICAS=" + replicas,
			"SIGCHAIN_URL=http://" + sigAddr, "LOG_LEVEL=warn", "LOG_FORMAT=text"}
	}
	// The sig-server first: it creates its stream; then the first chat-server
	// alone (it creates the registry streams), then the other replicas.
	if err := st.start(o, "kez-sig-server", append(common(0), "NATS_NKEY_FILE="+filepath.Join(keys, natskeys.KeySigServer+".nk"),
		"HTTP_ADDR="+sigAddr, "APPEND_LIMIT=1000000")); err != nil {
		return nil, err
	}
	for i := range o.ChatReplicas {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[1+i])
		if err := st.start(o, "kez-chat-server", append(common(i), "KEYS_DIR="+keys, "HTTP_ADDR="+addr,
			"PUBLIC_URL=http://"+addr, "REGISTER_LIMIT=100000000", "USER_JWT_TTL="+o.UserJWTTTL.String())); err != nil {
			return nil, err
		}
		st.ChatURLs = append(st.ChatURLs, "http://"+addr)
		if err := natsproc.WaitHTTP(ctx, "http://"+addr+"/v1/healthz", 90*time.Second); err != nil {
			return nil, fmt.Errorf("kez-chat-server %d: %w", i+1, err)
		}
	}
	if err := natsproc.WaitHTTP(ctx, "http://"+sigAddr+"/v1/healthz", 60*time.Second); err != nil {
		return nil, fmt.Errorf("kez-sig-server: %w", err)
	}
	return st, nil
}

// start runs bin/name with env, its output in <dir>/<name>-<n>.log.
func (st *Stack) start(o SpawnOptions, name string, env []string) error {
	path := filepath.Join(o.Bin, name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w (run `make build tools`, or pass --bin)", err)
	}
	p := &natsproc.Proc{Name: name, Path: path, Env: env, NoFile: o.NoFile,
		Log: filepath.Join(st.dir, fmt.Sprintf("%s-%d.log", name, len(st.kez)+1))}
	if err := p.Start(); err != nil {
		return err
	}
	st.kez = append(st.kez, p)
	st.Procs = append(st.Procs, Proc{Name: name, PID: p.PID()})
	if o.Log != nil {
		fmt.Fprintf(o.Log, "kez-load: started %s (pid %d, log %s)\n", name, p.PID(), p.Log)
	}
	return nil
}

// Close stops the spawned processes, the kez servers first (SIGTERM, then
// SIGKILL after 20 s), and removes the temp folder unless kept.
func (st *Stack) Close() {
	for i := len(st.kez) - 1; i >= 0; i-- {
		st.kez[i].Stop(20 * time.Second)
	}
	if st.nodes != nil {
		for _, n := range st.nodes.Nodes {
			n.Stop(20 * time.Second)
		}
	}
	if st.dir != "" && !st.keep {
		_ = os.RemoveAll(st.dir)
	}
}

// FindProcs finds the stack's processes on this machine by name (for a
// stack the generator did not start).
func FindProcs() []Proc {
	var out []Proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		switch name := strings.TrimSpace(string(b)); name {
		case "nats-server", "kez-chat-server", "kez-sig-server":
			out = append(out, Proc{Name: name, PID: pid})
		}
	}
	return out
}

// procSample is one reading of a process.
type procSample struct {
	ticks          uint64 // utime + stime
	rssKiB, hwmKiB uint64
	fds, fdLimit   int
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

func sampleProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised command name (which may hold spaces).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	s.ticks = ut + stime
	sf, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(sf)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rssKiB = n
		case "VmHWM":
			s.hwmKiB = n
		}
	}
	sf.Close()
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	if lb, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
		for _, line := range strings.Split(string(lb), "\n") {
			if strings.HasPrefix(line, "Max open files") {
				if f := strings.Fields(line); len(f) >= 4 {
					s.fdLimit, _ = strconv.Atoi(f[3])
				}
			}
		}
	}
	return s, nil
}

// procWindow measures the processes between Start and Stop.
type procWindow struct {
	procs []Proc
	start time.Time
	first map[int]procSample
}

func startWindow(procs []Proc) *procWindow {
	w := &procWindow{procs: procs, start: time.Now(), first: map[int]procSample{}}
	for _, p := range procs {
		if s, err := sampleProc(p.PID); err == nil {
			w.first[p.PID] = s
		}
	}
	return w
}

func (w *procWindow) stop() []ProcStats {
	el := time.Since(w.start).Seconds()
	var out []ProcStats
	for _, p := range w.procs {
		s, err := sampleProc(p.PID)
		if err != nil {
			out = append(out, ProcStats{Name: p.Name + " (gone)", PID: p.PID})
			continue
		}
		cpu := float64(s.ticks-w.first[p.PID].ticks) / clockTick
		out = append(out, ProcStats{Name: p.Name, PID: p.PID, CPUSecs: cpu, CPUCores: cpu / el,
			RSSMiB: float64(s.rssKiB) / 1024, PeakMiB: float64(s.hwmKiB) / 1024, FDs: s.fds, FDLimit: s.fdLimit})
	}
	return out
}

// jsz is the part of nats-server's /jsz?accounts=true&streams=true answer
// we read.
type jsz struct {
	Storage  uint64 `json:"storage"`
	Accounts []struct {
		Name    string `json:"name"`
		Streams []struct {
			Name  string `json:"name"`
			State struct {
				Messages  uint64 `json:"messages"`
				Bytes     uint64 `json:"bytes"`
				Consumers int    `json:"consumer_count"`
			} `json:"state"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

func fetchJSZ(ctx context.Context, hc *http.Client, monitor string) (Storage, error) {
	var st Storage
	if monitor == "" {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, monitor+"/jsz?accounts=true&streams=true", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	var j jsz
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return st, fmt.Errorf("jsz: %w", err)
	}
	st.JetStreamBytes = j.Storage
	for _, a := range j.Accounts {
		for _, s := range a.Streams {
			st.Streams = append(st.Streams, StreamStats{Name: s.Name, Messages: s.State.Messages, Bytes: s.State.Bytes, Consumers: s.State.Consumers})
		}
	}
	return st, nil
}

// diskUsage returns the bytes dir occupies on disk (allocated blocks).
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if sys, ok := info.Sys().(*syscall.Stat_t); ok {
				n += sys.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// calloutMetrics reads a chat-server's kez_callout_requests_total by
// result and the callout duration sum and count.
func calloutMetrics(ctx context.Context, hc *http.Client, base string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseCalloutMetrics(resp.Body)
}

// parseCalloutMetrics picks the callout series from Prometheus text:
// "result=<r>" for each request counter, "sum" and "count" of the
// duration histogram.
func parseCalloutMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, `kez_callout_requests_total{result="`):
			res := strings.TrimSuffix(strings.TrimPrefix(name, `kez_callout_requests_total{result="`), `"}`)
			out["result="+res] = v
		case name == "kez_callout_duration_seconds_sum":
			out["sum"] = v
		case name == "kez_callout_duration_seconds_count":
			out["count"] = v
		}
	}
	return out, sc.Err()
}

// responders turns two readings of every replica's callout metrics into
// per-replica figures for the window between them.
func responders(urls []string, before, after []map[string]float64) []Responder {
	var out []Responder
	for i, u := range urls {
		if i >= len(before) || i >= len(after) || after[i] == nil {
			continue
		}
		r := Responder{URL: u, Requests: map[string]int64{}}
		for k, v := range after[i] {
			if res, ok := strings.CutPrefix(k, "result="); ok {
				if d := int64(v - before[i][k]); d > 0 {
					r.Requests[res] = d
				}
			}
		}
		if n := after[i]["count"] - before[i]["count"]; n > 0 {
			r.MeanMs = (after[i]["sum"] - before[i]["sum"]) / n * 1000
		}
		out = append(out, r)
	}
	return out
}
