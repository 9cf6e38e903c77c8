// Command kez-load simulates N kez-chat users against a running stack (or
// one it starts itself with --spawn) and measures what they cost: every
// user registers, appends its nats endpoint to its sigchain, signs in to
// the broker through the auth callout with its own key, looks its
// contacts up and exchanges kez-msg-v1 messages through the JetStream
// inboxes, reconnecting whenever its user JWT expires. It prints a table
// (and JSON with --json) and stops by itself. See docs/capacity.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"kez.lat/kez/cmd/cli"
)

func main() { cli.Main("kez-load", run) }

type stackFlags struct {
	Spawn        bool          `help:"Start nats-server, kez-chat-server replicas and kez-sig-server from --bin as child processes in a temp folder, and stop them at the end."`
	Bin          string        `default:"bin" type:"path" help:"Folder of the binaries for --spawn (make build tools)."`
	Conf         string        `default:"nats/nats.conf" type:"path" help:"nats-server configuration for --spawn (its store and keys are moved into the temp folder)."`
	Nodes        int           `default:"1" help:"nats-server processes with --spawn: 1, or 3 for a cluster with every stream replicated 3 times (R3); the chat-server replicas are spread over the nodes."`
	KeysDir      string        `name:"keys-dir" type:"path" help:"Keys for --spawn (kez-chat-server keys --dir); fresh ones by default."`
	ChatReplicas int           `name:"chat-replicas" default:"2" help:"kez-chat-server replicas with --spawn; each is a callout responder."`
	UserJWTTTL   time.Duration `name:"user-jwt-ttl" default:"2m" help:"USER_JWT_TTL with --spawn: users reconnect and re-authorise this often."`
	NoFile       int           `name:"nofile" help:"Soft fd limit of the spawned processes (default: inherited)."`
	NatsProfile  bool          `name:"nats-profile" help:"With --spawn, open each nats-server's Go profiling port on 127.0.0.1 (--profile); step --register-first then also reports the nodes' goroutine stacks and heap in use per connection."`
	MaxConsumers int           `name:"max-consumers" help:"With --spawn, set nats-server's jetstream.limits.default_max_consumers (-1: unlimited; default: the config's). Users have no consumers since the inbox door; kept for experiments."`
	Keep         bool          `help:"Keep the --spawn temp folder (logs, store)."`
	Server       []string      `default:"http://127.0.0.1:8080" help:"Home server base URLs of a running stack (replicas, used round-robin; their /metrics are read)."`
	Monitor      string        `default:"http://127.0.0.1:8222" help:"nats-server monitoring URL of a running stack (JetStream storage)."`
	StoreDir     string        `name:"store-dir" type:"path" help:"JetStream store folder of a running stack, to measure its size on disk."`
}

type loadFlags struct {
	Users     int           `default:"1000" help:"Simulated users."`
	Offline   float64       `default:"0.1" help:"Share of users that register but never sign in (their inboxes fill: storage per message)."`
	Rate      float64       `default:"1" help:"Messages each online user sends per minute."`
	Size      int           `default:"160" help:"Plaintext bytes per message."`
	Contacts  int           `default:"5" help:"Peers each user writes to."`
	Refresh   float64       `default:"0.05" help:"Share of sends that look the peer up again first."`
	SetupConc int           `name:"setup-concurrency" default:"32" help:"Users set up at once."`
	Ramp      time.Duration `help:"Spread the set-up of the users over at least this long."`
	Workers   int           `default:"256" help:"Concurrent senders: sends in flight at most. Each waits for its answer (and its first look-up), so this must exceed the send rate times the mean send time, or sends are skipped (\"generator behind\")."`
	OpTimeout time.Duration `name:"op-timeout" default:"10s" help:"Timeout of each operation."`
	Domain    string        `default:"kez.lat" help:"Home domain of the stack."`
	Prefix    string        `help:"Handle prefix (default: lt plus random letters, so runs against one stack do not collide)."`
	Drain     time.Duration `default:"45s" help:"How long to wait for messages in flight after the load."`
	MaxTime   time.Duration `name:"max-time" default:"40m" help:"Hard bound on the whole run."`
	JSON      string        `name:"json" help:"Also write the report as JSON to this file (- for stdout)."`
	// CPUProfile profiles the generator itself: is it the limit of a run?
	CPUProfile string `name:"cpu-profile" type:"path" help:"Write the generator's own CPU profile (the whole run) to this file (go tool pprof)."`
}

func (l loadFlags) config() LoadConfig {
	prefix := l.Prefix
	if prefix == "" {
		const letters = "abcdefghkmnpqrtuvwxyz"
		b := []byte("lt")
		for range 5 {
			b = append(b, letters[mrand.IntN(len(letters))])
		}
		prefix = string(b)
	}
	return LoadConfig{Domain: l.Domain, Prefix: prefix, Offline: l.Offline, Rate: l.Rate, Size: l.Size,
		Contacts: l.Contacts, Refresh: l.Refresh, SetupConc: l.SetupConc, Ramp: l.Ramp, Workers: max(l.Workers, 1),
		OpTimeout: l.OpTimeout, DrainLimit: l.Drain}
}

func (l loadFlags) validate(users int) error {
	switch {
	case users < 2 || users > 200000:
		return errors.New("--users must be 2 to 200000")
	case l.Rate < 0 || l.Rate > 600:
		return errors.New("--rate must be 0 to 600 messages per user per minute")
	case l.Offline < 0 || l.Offline >= 1:
		return errors.New("--offline must be in [0, 1)")
	case l.MaxTime <= 0 || l.MaxTime > 3*time.Hour:
		return errors.New("--max-time must be at most 3h")
	}
	return nil
}

// session is a stack under load and its generator.
type session struct {
	st      *Stack
	gen     *Gen
	hc      *http.Client
	spawned bool
	stderr  io.Writer
	prof    *os.File // --cpu-profile, while profiling
}

func open(ctx context.Context, sf stackFlags, lf loadFlags, stderr io.Writer) (*session, error) {
	s := &session{hc: &http.Client{Timeout: 30 * time.Second}, stderr: stderr}
	if sf.NatsProfile && !sf.Spawn {
		return nil, errors.New("--nats-profile needs --spawn: it opens the profiling port of the nats-server processes kez-load starts")
	}
	if sf.Spawn {
		if sf.Nodes < 1 || sf.Nodes > 9 {
			return nil, errors.New("--nodes must be 1 to 9")
		}
		st, err := Spawn(ctx, SpawnOptions{Bin: sf.Bin, Conf: sf.Conf, Nodes: sf.Nodes, KeysDir: sf.KeysDir, ChatReplicas: max(sf.ChatReplicas, 1),
			UserJWTTTL: sf.UserJWTTTL, Domain: lf.Domain, NoFile: sf.NoFile, MaxConsumers: sf.MaxConsumers, Profile: sf.NatsProfile, Keep: sf.Keep, Log: stderr})
		if err != nil {
			return nil, err
		}
		s.st, s.spawned = st, true
	} else {
		s.st = &Stack{ChatURLs: sf.Server, MonitorURL: sf.Monitor, StoreDir: sf.StoreDir, Procs: FindProcs()}
	}
	s.st.Procs = append(s.st.Procs, Proc{Name: selfName, PID: os.Getpid()})
	s.gen = NewGen(lf.config(), s.st.ChatURLs, stderr)
	if lf.CPUProfile != "" {
		f, err := os.Create(lf.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			s.close()
			return nil, fmt.Errorf("--cpu-profile: %w", err)
		}
		s.prof = f
	}
	return s, nil
}

func (s *session) close() {
	if s.prof != nil {
		pprof.StopCPUProfile()
		if err := s.prof.Close(); err != nil {
			fmt.Fprintf(s.stderr, "kez-load: --cpu-profile: %v\n", err)
		}
		s.prof = nil
	}
	s.gen.Close()
	if s.spawned {
		s.st.Close()
	}
}

func (s *session) storage(ctx context.Context) Storage {
	st, err := fetchJSZ(ctx, s.hc, s.st.MonitorURL)
	if err != nil {
		fmt.Fprintf(s.stderr, "kez-load: jsz: %v\n", err)
	}
	if s.st.StoreDir != "" {
		st.DiskBytes = diskUsage(s.st.StoreDir)
	}
	return st
}

func (s *session) callout(ctx context.Context) []map[string]float64 {
	out := make([]map[string]float64, len(s.st.ChatURLs))
	for i, u := range s.st.ChatURLs {
		m, err := calloutMetrics(ctx, s.hc, u)
		if err != nil {
			fmt.Fprintf(s.stderr, "kez-load: metrics of %s: %v\n", u, err)
		}
		out[i] = m
	}
	return out
}

// phase grows the population to users, runs the steady load for d and
// reports both.
func (s *session) phase(ctx context.Context, label string, users int, rate float64, d time.Duration) *Report {
	r := &Report{Label: label, RatePerMin: rate}
	s0, m0 := s.storage(ctx), s.callout(ctx)
	before, _ := s.gen.Population()
	w := startWindow(s.st.Procs)
	t0 := time.Now()
	r.SetupUsers = s.gen.Grow(ctx, users)
	setup := time.Since(t0)
	setupProcs := w.stop()
	r.SetupSecs = setup.Seconds()
	if setup > 0 {
		r.RegsPerSec = float64(r.SetupUsers) / setup.Seconds()
	}
	s1 := s.storage(ctx)
	r.Users, r.Online = s.gen.Population()
	fmt.Fprintf(s.stderr, "kez-load: %d users set up in %.1fs; steady load for %s\n", r.SetupUsers, r.SetupSecs, d)

	w = startWindow(s.st.Procs)
	steady := s.gen.Steady(ctx, d)
	r.Procs = w.stop()
	s.gen.Drain(ctx)
	r.SteadySecs = steady.Seconds()
	r.Sent, r.ToOffline, r.Received, r.Redelivered, r.Lost, r.Reconnects, r.AuthExpired = s.gen.counters()
	if steady > 0 {
		r.SentPerSec = float64(r.Sent) / steady.Seconds()
		r.MsgsPerSec = float64(r.Received) / steady.Seconds()
	}
	if r.Lost > 0 {
		s.gen.rec.ErrorN(opDeliver, fmt.Sprintf("not received within %s of the end", s.gen.cfg.DrainLimit), r.Lost)
	}
	lat, errs := s.gen.rec.Take()
	// Set-up operations per second of set-up, the rest per second of load.
	windows := map[string]time.Duration{opRegister: setup, opAppend: setup, opSignIn: setup, "inbox bind": setup}
	r.Ops = summarizeOps(lat, errs, windows, steady)
	r.Errors = errs
	r.Storage = s.storage(ctx)
	r.Storage.PerUserBytes, r.Storage.PerUserDiskBytes = perUser(s0, s1, r.Users-before)
	r.Storage.PerMessageBytes = perMessage(r.Storage)
	r.Responders = responders(s.st.ChatURLs, m0, s.callout(ctx))
	// The set-up phase's CPU goes into the process rows as extra columns
	// would crowd the table: it is in the JSON.
	r.SetupProcs = setupProcs
	return r
}

// perUser derives the storage of one user from the growth of every stream
// but the inboxes (and of the disk) during a set-up.
func perUser(before, after Storage, users int) (perUser, perUserDisk float64) {
	sum := func(s Storage) (other uint64) {
		for _, st := range s.Streams {
			if st.Name != "KEZ_INBOX" {
				other += st.Bytes
			}
		}
		return other
	}
	if users > 0 {
		perUser = float64(sum(after)-sum(before)) / float64(users)
		if after.DiskBytes > 0 {
			perUserDisk = float64(after.DiskBytes-before.DiskBytes) / float64(users)
		}
	}
	return perUser, perUserDisk
}

// perMessage is the storage of one inbox message (from the offline
// users' backlog).
func perMessage(s Storage) float64 {
	for _, st := range s.Streams {
		if st.Name == "KEZ_INBOX" && st.Messages > 0 {
			return float64(st.Bytes) / float64(st.Messages)
		}
	}
	return 0
}

type runCmd struct {
	stackFlags
	loadFlags
	Duration time.Duration `default:"2m" help:"How long the steady load lasts after the set-up."`
}

func (c *runCmd) Run(ctx context.Context, e *cli.Env) error {
	if err := c.validate(c.Users); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.MaxTime)
	defer cancel()
	s, err := open(ctx, c.stackFlags, c.loadFlags, e.Stderr)
	if err != nil {
		return err
	}
	defer s.close()
	r := s.phase(ctx, fmt.Sprintf("run %d users", c.Users), c.Users, c.Rate, c.Duration)
	r.WriteTable(e.Stdout)
	return writeJSON(c.JSON, e.Stdout, r)
}

type stepCmd struct {
	stackFlags
	loadFlags
	Steps         []int         `default:"1000,2500,5000,10000,15000,20000,30000,50000" help:"User counts to step through (cumulative: each step adds users)."`
	StepDuration  time.Duration `name:"step-duration" default:"60s" help:"Steady load per step."`
	MaxP99        time.Duration `name:"max-p99" default:"1s" help:"Limit: p99 of sign-in, publish or send→receive."`
	MaxErrorRate  float64       `name:"max-error-rate" default:"0.01" help:"Limit: share of failed operations."`
	MaxRSS        float64       `name:"max-rss-mib" help:"Limit: resident memory of the stack and generator (default 80% of MemTotal)."`
	FDShare       float64       `name:"fd-share" default:"0.95" help:"Limit: share of a process's fd limit in use."`
	RegisterFirst bool          `name:"register-first" help:"Register the last step's users first, all offline; then each step signs in its users and reports nats-server's resident memory before and after, apart from what registrations hold."`
	Settle        time.Duration `default:"10s" help:"With --register-first, the wait after a step's sign-ins before nats-server's memory is read again."`
}

func (c *stepCmd) Run(ctx context.Context, e *cli.Env) error {
	if len(c.Steps) == 0 {
		return errors.New("--steps is empty")
	}
	if err := c.validate(c.Steps[len(c.Steps)-1]); err != nil {
		return err
	}
	lim := Limits{MaxP99: c.MaxP99, MaxErrorRate: c.MaxErrorRate, MaxRSSMiB: c.MaxRSS, FDShare: c.FDShare}
	if lim.MaxRSSMiB == 0 {
		lim.MaxRSSMiB = 0.8 * memTotalMiB()
	}
	ctx, cancel := context.WithTimeout(ctx, c.MaxTime)
	defer cancel()
	s, err := open(ctx, c.stackFlags, c.loadFlags, e.Stderr)
	if err != nil {
		return err
	}
	defer s.close()
	if c.RegisterFirst {
		s.gen.cfg.SignInLater = true
		last := c.Steps[len(c.Steps)-1]
		t0 := time.Now()
		k := s.gen.Grow(ctx, last)
		fmt.Fprintf(e.Stdout, "registered %d users (offline) in %.1fs; nats-server RSS %.0f MiB\n\n", k, time.Since(t0).Seconds(), s.natsRSS())
	}
	var reports []*Report
	for _, n := range c.Steps {
		var conn *ConnectMem
		if c.RegisterFirst {
			conn = s.connect(ctx, n, c.Settle)
			fmt.Fprintf(e.Stdout, "connect   %d users signed in (%d online): nats-server RSS %.0f -> %.0f MiB, %.1f KB per connection\n",
				conn.Users, conn.Online, conn.BeforeMiB, conn.AfterMiB, conn.PerConnKB)
			if m := conn.Runtime; m != nil {
				fmt.Fprintf(e.Stdout, "          of which goroutine stacks %.0f -> %.0f MiB (%.1f KB per connection), heap in use %.0f -> %.0f MiB (%.1f KB)\n",
					m.StacksBeforeMiB, m.StacksAfterMiB, m.StackPerConnKB, m.HeapBeforeMiB, m.HeapAfterMiB, m.HeapPerConnKB)
			}
		}
		r := s.phase(ctx, fmt.Sprintf("step %d users", n), n, c.Rate, c.StepDuration)
		r.Connect = conn
		hit := lim.Check(r)
		if ctx.Err() != nil {
			hit = append(hit, "run time: --max-time reached")
		}
		r.Limit = strings.Join(hit, "; ")
		reports = append(reports, r)
		r.WriteTable(e.Stdout)
		fmt.Fprintln(e.Stdout)
		if len(hit) > 0 {
			break
		}
	}
	fmt.Fprintln(e.Stdout, "== stepped run")
	WriteStepTable(e.Stdout, reports)
	if last := reports[len(reports)-1]; last.Limit != "" {
		fmt.Fprintf(e.Stdout, "first limit at %d users: %s\n", last.Users, last.Limit)
	} else {
		fmt.Fprintln(e.Stdout, "no limit hit up to the last step")
	}
	return writeJSON(c.JSON, e.Stdout, reports)
}

// ConnectMem is what signing in a step's users (registered before) cost
// nats-server in resident memory.
type ConnectMem struct {
	Users     int     `json:"users"`  // signed in by this step
	Online    int     `json:"online"` // after it
	BeforeMiB float64 `json:"nats_rss_before_mib"`
	AfterMiB  float64 `json:"nats_rss_after_mib"`
	PerConnKB float64 `json:"per_connection_kb"`
	// Runtime splits the memory into stacks and heap (--nats-profile).
	Runtime *RuntimeMem `json:"runtime,omitempty"`
}

// RuntimeMem is the Go runtime's account of the same step, summed over
// the nodes: goroutine stacks (two per connection, its read and write
// loops) and heap in use (live objects and garbage not yet collected).
type RuntimeMem struct {
	StacksBeforeMiB float64 `json:"stacks_before_mib"`
	StacksAfterMiB  float64 `json:"stacks_after_mib"`
	StackPerConnKB  float64 `json:"stack_per_connection_kb"`
	HeapBeforeMiB   float64 `json:"heap_inuse_before_mib"`
	HeapAfterMiB    float64 `json:"heap_inuse_after_mib"`
	HeapPerConnKB   float64 `json:"heap_per_connection_kb"`
}

// connect signs in the users up to n and measures nats-server's resident
// memory before and, settle later, after.
func (s *session) connect(ctx context.Context, n int, settle time.Duration) *ConnectMem {
	c := &ConnectMem{BeforeMiB: s.natsRSS()}
	before, berr := s.natsRuntime(ctx)
	c.Users = s.gen.Connect(ctx, n)
	select {
	case <-ctx.Done():
	case <-time.After(settle):
	}
	_, c.Online = s.gen.Population()
	c.AfterMiB = s.natsRSS()
	after, aerr := s.natsRuntime(ctx)
	if err := errors.Join(berr, aerr); err != nil {
		fmt.Fprintf(s.stderr, "kez-load: nats-server runtime statistics: %v\n", err)
	} else if len(s.st.ProfileURLs) > 0 {
		c.Runtime = &RuntimeMem{StacksBeforeMiB: toMiB(before.StackInuse), StacksAfterMiB: toMiB(after.StackInuse),
			HeapBeforeMiB: toMiB(before.HeapInuse), HeapAfterMiB: toMiB(after.HeapInuse)}
	}
	if c.Users > 0 {
		c.PerConnKB = (c.AfterMiB - c.BeforeMiB) * 1024 / float64(c.Users)
		if m := c.Runtime; m != nil {
			m.StackPerConnKB = (m.StacksAfterMiB - m.StacksBeforeMiB) * 1024 / float64(c.Users)
			m.HeapPerConnKB = (m.HeapAfterMiB - m.HeapBeforeMiB) * 1024 / float64(c.Users)
		}
	}
	return c
}

func toMiB(b uint64) float64 { return float64(b) / (1 << 20) }

// natsRuntime sums the runtime statistics of the nodes with a profiling
// port (none: zero and no error).
func (s *session) natsRuntime(ctx context.Context) (MemStats, error) {
	var sum MemStats
	for _, u := range s.st.ProfileURLs {
		m, err := fetchMemStats(ctx, s.hc, u)
		if err != nil {
			return MemStats{}, err
		}
		sum.StackInuse += m.StackInuse
		sum.HeapInuse += m.HeapInuse
	}
	return sum, nil
}

// natsRSS returns the resident memory of the nats-server nodes, summed
// over the nodes of a cluster (0 if none is watched). The spawned nodes
// are named "nats-server n1", "nats-server n2", ...; a stack found on the
// machine by FindProcs names them "nats-server".
func (s *session) natsRSS() float64 {
	var kib uint64
	for _, p := range s.st.Procs {
		if p.Name == "nats-server" || strings.HasPrefix(p.Name, "nats-server ") {
			if ps, err := sampleProc(p.PID); err == nil {
				kib += ps.rssKiB
			}
		}
	}
	return float64(kib) / 1024
}

func memTotalMiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

func writeJSON(path string, stdout io.Writer, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

type command struct {
	Run  runCmd  `cmd:"" default:"withargs" help:"Simulate --users users for --duration and print the table (the default command)."`
	Step stepCmd `cmd:"" help:"Add users step by step (--steps) until a limit is hit: latency, memory, file descriptors, callout failures or errors."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, &command{}, "kez-load",
		"kez-chat load generator: simulated users against a running (or spawned) stack, with a capacity table.", args, stdout, stderr)
}
