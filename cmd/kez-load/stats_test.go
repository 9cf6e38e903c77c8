package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez/client"
)

func durations(ms ...int) []time.Duration {
	var ds []time.Duration
	for _, m := range ms {
		ds = append(ds, time.Duration(m)*time.Millisecond)
	}
	return ds
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tt := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", durations(7), 99, 7 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p100", hundred, 100, 100 * time.Millisecond},
		{"p99 of 10 is the max", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p50 of 4", durations(1, 2, 3, 4), 50, 2 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.ds, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize("x", durations(5, 1, 4, 2, 3), 2, 2*time.Second)
	want := OpStats{Op: "x", Count: 5, Errors: 2, PerSec: 2.5, P50ms: 3, P99ms: 5, MaxMs: 5}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if z := Summarize("none", nil, 0, 0); z.Count != 0 || z.PerSec != 0 || z.MaxMs != 0 {
		t.Errorf("Summarize(nil) = %+v", z)
	}
}

func TestRecorderTake(t *testing.T) {
	r := NewRecorder()
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 100 {
				r.Observe(opSend, time.Millisecond)
				r.Error(opSend, "timeout")
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	r.ErrorN("custom", "kind", 5)
	lat, errs := r.Take()
	if len(lat[opSend]) != 400 || errs[opSend+": timeout"] != 400 || errs["custom: kind"] != 5 {
		t.Fatalf("Take = %d samples, %v", len(lat[opSend]), errs)
	}
	if lat, errs := r.Take(); len(lat) != 0 || len(errs) != 0 {
		t.Fatalf("second Take = %v, %v; want empty", lat, errs)
	}
}

func TestSummarizeOpsOrder(t *testing.T) {
	lat := map[string][]time.Duration{opDeliver: durations(1), "zzz": durations(1), opRegister: durations(1, 2)}
	errs := map[string]int64{opSignIn + ": timeout": 3, opRegister + ": 429 rate_limited": 1}
	ops := summarizeOps(lat, errs, map[string]time.Duration{opRegister: time.Second}, 10*time.Second)
	var names []string
	for _, o := range ops {
		names = append(names, o.Op)
	}
	if got, want := strings.Join(names, ","), strings.Join([]string{opRegister, opSignIn, opDeliver, "zzz"}, ","); got != want {
		t.Errorf("order = %s, want %s", got, want)
	}
	if ops[0].PerSec != 2 || ops[0].Errors != 1 || ops[1].Errors != 3 || ops[2].PerSec != 0.1 {
		t.Errorf("ops = %+v", ops)
	}
}

func TestErrKind(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&client.APIError{Status: 429, Code: "rate_limited"}, "429 rate_limited"},
		{fmt.Errorf("register: %w", &client.APIError{Status: 503, Code: "unavailable"}), "503 unavailable"},
		{&client.APIError{Status: 429, Code: "rate_limited", Sigchain: true}, "429 rate_limited"},
		{fmt.Errorf("dial: %w", syscall.EMFILE), "too many open files"},
		{fmt.Errorf("dial: %w", syscall.EADDRNOTAVAIL), "out of ephemeral ports"},
		{errors.New("nats: authorization violation"), "authorization violation"},
		{fmt.Errorf("publish: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("send: %w", &client.DoorError{Code: "inbox_share_full"}), "door inbox_share_full"},
		{errors.New("something else"), "other"},
	} {
		if got := ErrKind(tt.err); got != tt.want {
			t.Errorf("ErrKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func sampleReport() *Report {
	return &Report{
		Label: "run 1000 users", Users: 1000, Online: 900, RatePerMin: 1, SetupUsers: 1000, SetupSecs: 10, RegsPerSec: 100,
		SteadySecs: 60, Sent: 900, Received: 800, SentPerSec: 15, MsgsPerSec: 13.3, ToOffline: 100,
		Ops:    []OpStats{{Op: opDeliver, Count: 800, PerSec: 13.3, P50ms: 2, P99ms: 20, MaxMs: 40}, {Op: opSignIn, Count: 900, P99ms: 30}},
		Errors: map[string]int64{opSend + ": timeout": 1},
		Procs: []ProcStats{{Name: "nats-server", PID: 1, CPUCores: 0.3, RSSMiB: 300, FDs: 950, FDLimit: 1000},
			{Name: "kez-chat-server", PID: 2, CPUCores: 0.15, RSSMiB: 50}, {Name: selfName, PID: 3, CPUCores: 1, RSSMiB: 500}},
		Storage:    Storage{JetStreamBytes: 3 << 20, PerUserBytes: 2300, PerMessageBytes: 876, Streams: []StreamStats{{Name: "KEZ_INBOX", Messages: 100, Bytes: 87600}}},
		Responders: []Responder{{URL: "http://a", Requests: map[string]int64{"allowed": 450}, MeanMs: 2}},
	}
}

func TestWriteTable(t *testing.T) {
	r := sampleReport()
	if got := r.CPUPer1k(); got < 0.4999 || got > 0.5001 {
		t.Errorf("CPUPer1k = %v, want 0.5 (generator excluded)", got)
	}
	var b bytes.Buffer
	r.WriteTable(&b)
	out := b.String()
	for _, want := range []string{"run 1000 users", "100.0 registrations/s", opDeliver, "20.00", "nats-server", "KEZ_INBOX",
		"per stored message 876 B", "http://a: 450 requests", opSend + ": timeout", "CPU per 1k online users: 0.500"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	r.Limit = "memory"
	WriteStepTable(&b, []*Report{r})
	if !strings.Contains(b.String(), "memory") || !strings.Contains(b.String(), "950") {
		t.Errorf("step table:\n%s", b.String())
	}
	// A cluster: the largest node's fds and RSS.
	b.Reset()
	r.Procs = append(r.Procs, ProcStats{Name: "nats-server n2", PID: 7, RSSMiB: 4321, FDs: 1234, FDLimit: 20000},
		ProcStats{Name: "nats-server n3", PID: 8, RSSMiB: 42, FDs: 12, FDLimit: 20000})
	WriteStepTable(&b, []*Report{r})
	if !strings.Contains(b.String(), "4321") || !strings.Contains(b.String(), "1234") {
		t.Errorf("step table of a cluster:\n%s", b.String())
	}
}

func TestLimitsCheck(t *testing.T) {
	lim := Limits{MaxP99: time.Second, MaxErrorRate: 0.01, MaxRSSMiB: 10000, FDShare: 0.95}
	r := sampleReport()
	hit := lim.Check(r)
	if len(hit) != 1 || !strings.Contains(hit[0], "file descriptors: nats-server holds 950 of 1000") {
		t.Errorf("Check = %q, want the fd limit only", hit)
	}
	r.Procs[0].FDs = 10
	if hit := lim.Check(r); len(hit) != 0 {
		t.Errorf("Check = %q, want none", hit)
	}
	r.Ops[0].P99ms = 1500
	r.Errors[opSignIn+": authorization violation"] = 2
	hit = lim.Check(r)
	if got := strings.Join(hit, "; "); !strings.Contains(got, "callout: 2 sign-ins failed") || !strings.Contains(got, "latency: "+opDeliver) {
		t.Errorf("Check = %q", hit)
	}
	r = sampleReport()
	r.Procs[0].FDs = 10
	r.Lost = 100
	if hit := lim.Check(r); len(hit) != 1 || !strings.HasPrefix(hit[0], "errors:") {
		t.Errorf("Check with lost messages = %q", hit)
	}
}

func TestCalloutMetrics(t *testing.T) {
	text := `# HELP kez_callout_requests_total Auth callout requests by result.
# TYPE kez_callout_requests_total counter
kez_callout_requests_total{result="allowed"} 120
kez_callout_requests_total{result="denied"} 3
kez_callout_duration_seconds_bucket{le="0.0001"} 0
kez_callout_duration_seconds_sum 0.6
kez_callout_duration_seconds_count 123
go_goroutines 12
`
	m, err := parseCalloutMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["result=allowed"] != 120 || m["result=denied"] != 3 || m["count"] != 123 || m["sum"] != 0.6 {
		t.Fatalf("parse = %v", m)
	}
	before := map[string]float64{"result=allowed": 20, "count": 23, "sum": 0.1}
	rs := responders([]string{"http://a"}, []map[string]float64{before}, []map[string]float64{m})
	if len(rs) != 1 || rs[0].Requests["allowed"] != 100 || rs[0].Requests["denied"] != 3 || rs[0].MeanMs != 5 {
		t.Fatalf("responders = %+v", rs)
	}
}

func TestPerUserAndMessage(t *testing.T) {
	before := Storage{DiskBytes: 1000, Streams: []StreamStats{{Name: "KEZ_REGISTRY", Bytes: 100}, {Name: "KEZ_INBOX", Bytes: 500, Messages: 1}}}
	after := Storage{DiskBytes: 21000, Streams: []StreamStats{{Name: "KEZ_REGISTRY", Bytes: 2100}, {Name: "KEZ_INBOX", Bytes: 9000, Messages: 10}}}
	u, d := perUser(before, after, 10)
	if u != 200 || d != 2000 {
		t.Errorf("perUser = %v, %v; want 200, 2000 (inboxes excluded)", u, d)
	}
	if m := perMessage(after); m != 900 {
		t.Errorf("perMessage = %v, want 900", m)
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"step", "--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--spawn", "--users", "--rate", "--steps", "--max-p99", "--json"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("step --help lacks %s", flag)
		}
	}
	if err := run(context.Background(), []string{"--users", "1"}, &out, &out); err == nil {
		t.Error("--users 1 accepted")
	}
}
