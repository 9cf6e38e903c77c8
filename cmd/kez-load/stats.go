package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/client"
)

// The operations whose latency is measured, in table order.
const (
	opRegister = "register"
	opAppend   = "sigchain append"
	opSignIn   = "sign-in"
	opReauth   = "re-auth (expiry)"
	opLookup   = "look-up"
	opSend     = "send (publish ack)"
	opDeliver  = "send→receive"
)

var opOrder = []string{opRegister, opAppend, opSignIn, opReauth, opLookup, opSend, opDeliver}

// Recorder collects latency samples and error counts per operation. It is
// safe for concurrent use; Take returns what was recorded and starts over.
type Recorder struct {
	mu   sync.Mutex
	lat  map[string][]time.Duration
	errs map[string]int64
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{lat: map[string][]time.Duration{}, errs: map[string]int64{}}
}

// Observe records one successful op that took d.
func (r *Recorder) Observe(op string, d time.Duration) {
	r.mu.Lock()
	r.lat[op] = append(r.lat[op], d)
	r.mu.Unlock()
}

// Error records one failed op, by kind.
func (r *Recorder) Error(op, kind string) {
	r.mu.Lock()
	r.errs[op+": "+kind]++
	r.mu.Unlock()
}

// ErrorN records n failed ops of one kind.
func (r *Recorder) ErrorN(op, kind string, n int64) {
	r.mu.Lock()
	r.errs[op+": "+kind] += n
	r.mu.Unlock()
}

// Take returns the samples and errors recorded since the last Take.
func (r *Recorder) Take() (map[string][]time.Duration, map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat, errs := r.lat, r.errs
	r.lat, r.errs = map[string][]time.Duration{}, map[string]int64{}
	return lat, errs
}

// OpStats summarises the samples of one operation.
type OpStats struct {
	Op     string  `json:"op"`
	Count  int     `json:"count"`
	Errors int64   `json:"errors"`
	PerSec float64 `json:"per_sec"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted samples, 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest sample with at least p% of the samples at
	// or below it.
	rank := int(float64(len(sorted))*p/100 + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summarize sorts ds and summarises it; window is the time the samples
// were taken over (for PerSec), errs the failures of the op.
func Summarize(op string, ds []time.Duration, errs int64, window time.Duration) OpStats {
	slices.Sort(ds)
	s := OpStats{Op: op, Count: len(ds), Errors: errs}
	if window > 0 {
		s.PerSec = float64(len(ds)) / window.Seconds()
	}
	s.P50ms = ms(Percentile(ds, 50))
	s.P99ms = ms(Percentile(ds, 99))
	if len(ds) > 0 {
		s.MaxMs = ms(ds[len(ds)-1])
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summarizeOps summarises every op of lat (known ops in table order, then
// the rest by name); windows gives each op's window, default for the
// others.
func summarizeOps(lat map[string][]time.Duration, errs map[string]int64, windows map[string]time.Duration, def time.Duration) []OpStats {
	perOp := map[string]int64{}
	for k, n := range errs {
		op, _, _ := strings.Cut(k, ": ")
		perOp[op] += n
	}
	names := slices.Collect(maps.Keys(lat))
	for op := range perOp {
		if _, ok := lat[op]; !ok {
			names = append(names, op)
		}
	}
	rank := func(op string) int {
		if i := slices.Index(opOrder, op); i >= 0 {
			return i
		}
		return len(opOrder)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	var out []OpStats
	for _, op := range names {
		w, ok := windows[op]
		if !ok {
			w = def
		}
		out = append(out, Summarize(op, lat[op], perOp[op], w))
	}
	return out
}

// ErrKind names the kind of a failed operation's error for the error
// table: an API error code, or a transport condition.
func ErrKind(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s", ae.Status, ae.Code)
	}
	var de *client.DoorError
	if errors.As(err, &de) {
		return "door " + de.Code
	}
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, syscall.EMFILE) || strings.Contains(msg, "too many open files"):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL) || strings.Contains(msg, "assign requested address"):
		return "out of ephemeral ports"
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(msg, "connection reset"):
		return "connection reset"
	case errors.Is(err, client.ErrSignInUnanswered):
		return "sign-in unanswered"
	case strings.Contains(msg, "authorization violation"):
		return "authorization violation"
	case strings.Contains(msg, "authentication expired"):
		return "authentication expired"
	case strings.Contains(msg, "maximum consumers limit"):
		return "maximum consumers limit"
	case errors.Is(err, nats.ErrNoResponders):
		return "no responders"
	case errors.Is(err, nats.ErrConnectionClosed):
		return "connection closed"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || strings.Contains(msg, "timeout"):
		return "timeout"
	case errors.Is(err, kez.ErrNotFound):
		return "not found"
	case errors.Is(err, client.ErrUnreachable):
		return "unreachable"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return "file"
	}
	return "other"
}

// ProcStats is one process of the stack (or the generator itself).
type ProcStats struct {
	Name     string  `json:"name"`
	PID      int     `json:"pid"`
	CPUCores float64 `json:"cpu_cores"` // average cores busy over the window
	CPUSecs  float64 `json:"cpu_seconds"`
	RSSMiB   float64 `json:"rss_mib"`
	PeakMiB  float64 `json:"peak_rss_mib"`
	FDs      int     `json:"fds"`
	FDLimit  int     `json:"fd_limit"`
}

// StreamStats is one JetStream stream's state.
type StreamStats struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	Consumers int    `json:"consumers"`
}

// Storage is what the broker stores after a phase.
type Storage struct {
	JetStreamBytes uint64        `json:"jetstream_bytes"`
	DiskBytes      int64         `json:"disk_bytes,omitempty"` // the store folder on disk (spawned stack only)
	Streams        []StreamStats `json:"streams"`
	// Derived per user (from the users registered so far) and per stored
	// inbox message (the backlog of offline users).
	PerUserBytes     float64 `json:"per_user_bytes"`
	PerUserDiskBytes float64 `json:"per_user_disk_bytes,omitempty"`
	PerMessageBytes  float64 `json:"per_message_bytes"`
}

// Responder is one chat-server replica's auth callout counters.
type Responder struct {
	URL      string           `json:"url"`
	Requests map[string]int64 `json:"requests"` // by result, during the phase
	MeanMs   float64          `json:"mean_ms"`
}

// Report is the result of one run or one step.
type Report struct {
	Label       string  `json:"label"`
	Users       int     `json:"users"`
	Online      int     `json:"online"`
	RatePerMin  float64 `json:"rate_per_user_per_min"`
	SetupSecs   float64 `json:"setup_seconds"`
	SetupUsers  int     `json:"setup_users"`
	RegsPerSec  float64 `json:"registrations_per_sec"`
	SteadySecs  float64 `json:"steady_seconds"`
	SentPerSec  float64 `json:"sent_per_sec"`
	MsgsPerSec  float64 `json:"received_per_sec"`
	Sent        int64   `json:"sent"`
	Received    int64   `json:"received"`
	Redelivered int64   `json:"redelivered"` // received again (its ack was lost)
	Lost        int64   `json:"lost"`
	ToOffline   int64   `json:"sent_to_offline"`
	Reconnects  int64   `json:"reconnects"`
	AuthExpired int64   `json:"auth_expired"`

	Ops        []OpStats        `json:"ops"`
	SetupProcs []ProcStats      `json:"setup_procs"`
	Errors     map[string]int64 `json:"errors"`
	Procs      []ProcStats      `json:"procs"`
	Storage    Storage          `json:"storage"`
	Responders []Responder      `json:"callout_responders"`
	// Limit names the limit this step hit (stepped runs), empty if none.
	Limit string `json:"limit,omitempty"`
	// Connect is what this step's sign-ins cost nats-server
	// (--register-first).
	Connect *ConnectMem `json:"connect,omitempty"`
}

// CPUPer1k returns the cores the stack processes (not the generator) used
// per 1,000 online users during the steady phase.
func (r *Report) CPUPer1k() float64 {
	if r.Online == 0 {
		return 0
	}
	var c float64
	for _, p := range r.Procs {
		if p.Name != selfName {
			c += p.CPUCores
		}
	}
	return c / float64(r.Online) * 1000
}

// WriteTable prints r as the human-readable tables.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "== %s: %d users (%d online), %.2g msg/user/min\n", r.Label, r.Users, r.Online, r.RatePerMin)
	fmt.Fprintf(w, "setup     %d users in %.1fs: %.1f registrations/s (register + sigchain + sign-in + inbox)\n",
		r.SetupUsers, r.SetupSecs, r.RegsPerSec)
	fmt.Fprintf(w, "steady    %.0fs: sent %d (%.1f/s), received %d (%.1f/s, %d received again), lost %d, to offline inboxes %d, reconnects %d (auth expired %d)\n",
		r.SteadySecs, r.Sent, r.SentPerSec, r.Received, r.MsgsPerSec, r.Redelivered, r.Lost, r.ToOffline, r.Reconnects, r.AuthExpired)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tcount\t/s\tp50 ms\tp99 ms\tmax ms\terrors\t")
	for _, o := range r.Ops {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.1f\t%d\t\n", o.Op, o.Count, o.PerSec, o.P50ms, o.P99ms, o.MaxMs, o.Errors)
	}
	tw.Flush()
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "errors by kind:")
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(w, "  %-50s %d\n", k, r.Errors[k])
		}
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tpid\tCPU cores\tCPU s\tRSS MiB\tpeak MiB\tfds\tfd limit\t")
	for _, p := range r.Procs {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.1f\t%.0f\t%.0f\t%d\t%d\t\n", p.Name, p.PID, p.CPUCores, p.CPUSecs, p.RSSMiB, p.PeakMiB, p.FDs, p.FDLimit)
	}
	tw.Flush()
	fmt.Fprintf(w, "stack CPU per 1k online users: %.3f cores\n", r.CPUPer1k())
	s := r.Storage
	fmt.Fprintf(w, "storage   JetStream %s", mib(float64(s.JetStreamBytes)))
	if s.DiskBytes > 0 {
		fmt.Fprintf(w, ", on disk %s", mib(float64(s.DiskBytes)))
	}
	fmt.Fprintf(w, "; per user %.0f B", s.PerUserBytes)
	if s.PerUserDiskBytes > 0 {
		fmt.Fprintf(w, " (%.0f B on disk)", s.PerUserDiskBytes)
	}
	fmt.Fprintf(w, "; per stored message %.0f B\n", s.PerMessageBytes)
	for _, st := range s.Streams {
		fmt.Fprintf(w, "  %-22s %9d msgs %12d B %7d consumers\n", st.Name, st.Messages, st.Bytes, st.Consumers)
	}
	for _, rs := range r.Responders {
		var total int64
		for _, n := range rs.Requests {
			total += n
		}
		fmt.Fprintf(w, "callout   %s: %d requests %v, mean %.2f ms\n", rs.URL, total, rs.Requests, rs.MeanMs)
	}
	if r.Limit != "" {
		fmt.Fprintf(w, "LIMIT     %s\n", r.Limit)
	}
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// WriteStepTable prints one line per step of a stepped run.
func WriteStepTable(w io.Writer, steps []*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "users\tonline\trecv/s\tsign-in p99\tsend p99\tdeliver p99\terrors\tstack CPU\tstack RSS MiB\tnats RSS MiB\tnats fds\tlimit\t")
	for _, r := range steps {
		var errs int64
		for _, n := range r.Errors {
			errs += n
		}
		// The nats-server columns are the largest node's (a cluster's
		// nodes are "nats-server n1", ...).
		var cpu, rss, natsRSS float64
		fds := 0
		for _, p := range r.Procs {
			if p.Name == selfName {
				continue
			}
			cpu += p.CPUCores
			rss += p.RSSMiB
			if strings.HasPrefix(p.Name, "nats-server") {
				fds, natsRSS = max(fds, p.FDs), max(natsRSS, p.RSSMiB)
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f ms\t%.1f ms\t%.1f ms\t%d\t%.2f\t%.0f\t%.0f\t%d\t%s\t\n",
			r.Users, r.Online, r.MsgsPerSec, r.opP99(opSignIn), r.opP99(opSend), r.opP99(opDeliver), errs, cpu, rss, natsRSS, fds, r.Limit)
	}
	tw.Flush()
}

func (r *Report) op(name string) OpStats {
	for _, o := range r.Ops {
		if o.Op == name {
			return o
		}
	}
	return OpStats{Op: name}
}

func (r *Report) opP99(name string) float64 { return r.op(name).P99ms }

// Limits are the thresholds of a stepped run.
type Limits struct {
	MaxP99       time.Duration // send→receive and sign-in
	MaxErrorRate float64       // failed ops / all ops
	MaxRSSMiB    float64       // stack plus generator
	FDShare      float64       // of any process's fd limit
}

// Check returns the limits r exceeds, most fundamental first, or nil.
func (l Limits) Check(r *Report) []string {
	var hit []string
	for _, p := range r.Procs {
		if p.FDLimit > 0 && float64(p.FDs) >= l.FDShare*float64(p.FDLimit) {
			hit = append(hit, fmt.Sprintf("file descriptors: %s holds %d of %d", p.Name, p.FDs, p.FDLimit))
		}
	}
	for k, n := range r.Errors {
		if strings.Contains(k, "too many open files") {
			hit = append(hit, fmt.Sprintf("file descriptors: %d × %q", n, k))
		}
	}
	var rss float64
	for _, p := range r.Procs {
		rss += p.RSSMiB
	}
	if l.MaxRSSMiB > 0 && rss > l.MaxRSSMiB {
		hit = append(hit, fmt.Sprintf("memory: %.0f MiB resident > %.0f MiB", rss, l.MaxRSSMiB))
	}
	var timeouts int64
	for k, n := range r.Errors {
		if strings.HasPrefix(k, opSignIn) || strings.HasPrefix(k, opReauth) {
			timeouts += n
		}
	}
	if timeouts > 0 {
		hit = append(hit, fmt.Sprintf("callout: %d sign-ins failed (2 s authorization timeout)", timeouts))
	}
	maxMs := ms(l.MaxP99)
	for _, op := range []string{opSignIn, opDeliver, opSend} {
		if p := r.opP99(op); l.MaxP99 > 0 && p > maxMs {
			hit = append(hit, fmt.Sprintf("latency: %s p99 %.0f ms > %.0f ms", op, p, maxMs))
		}
	}
	var ops, errs int64
	for _, o := range r.Ops {
		ops += int64(o.Count) + o.Errors
		errs += o.Errors
	}
	if r.Lost > 0 {
		errs += r.Lost
	}
	if ops > 0 && l.MaxErrorRate > 0 && float64(errs)/float64(ops) > l.MaxErrorRate {
		hit = append(hit, fmt.Sprintf("errors: %d of %d operations failed", errs, ops))
	}
	return hit
}
