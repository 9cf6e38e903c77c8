package integrity_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
)

func TestStateProblems(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   integrity.State
		want []string // substrings, one per problem
	}{
		{"empty", integrity.State{}, nil},
		{"whole", integrity.State{FirstSeq: 1, LastSeq: 1275, Msgs: 1275}, nil},
		{"holes", integrity.State{FirstSeq: 1, LastSeq: 1275, Msgs: 638, Deleted: 637}, []string{"637 of the 1275 messages", "637 deleted"}},
		{"holes without deleted count", integrity.State{FirstSeq: 1, LastSeq: 10, Msgs: 9}, []string{"1 of the 10"}},
		{"first moved", integrity.State{FirstSeq: 5, LastSeq: 10, Msgs: 6}, []string{"first sequence is 5"}},
		{"all gone", integrity.State{FirstSeq: 11, LastSeq: 10, Msgs: 0}, []string{"first sequence is 11"}},
		{"lost", integrity.State{FirstSeq: 1, LastSeq: 3, Msgs: 3, LostMsgs: 2}, []string{"lost 2 messages"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.st.Problems()
			if len(got) != len(tt.want) {
				t.Fatalf("Problems(%+v) = %q, want %d problems", tt.st, got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

// fakeStreams serves states the test sets.
type fakeStreams struct {
	mu     sync.Mutex
	states map[string]integrity.State
	err    error
}

func (f *fakeStreams) set(st integrity.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[st.Stream] = st
}

func (f *fakeStreams) inspect(_ context.Context, name string) (integrity.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[name], f.err
}

func newMonitor(f *fakeStreams, log *bytes.Buffer) *integrity.Monitor {
	now := time.Unix(1_800_000_000, 0)
	return integrity.New(integrity.Config{
		Streams: []string{"LOG", "KV"}, Inspect: f.inspect, Interval: time.Minute,
		Logger: slog.New(slog.NewTextHandler(log, nil)), Now: func() time.Time { return now },
	})
}

// checkedMonitor returns the streams LOG (led by n1) and KV (led by n2)
// and a monitor of them, checked once, whose new-leader hook appends the
// stream to moved.
func checkedMonitor(t *testing.T, moved *[]string) (*fakeStreams, *integrity.Monitor) {
	t.Helper()
	f := &fakeStreams{states: map[string]integrity.State{}}
	f.set(integrity.State{Stream: "LOG", Leader: "n1", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	f.set(integrity.State{Stream: "KV", Leader: "n2", FirstSeq: 1, LastSeq: 3, Msgs: 3})
	m := newMonitor(f, &bytes.Buffer{})
	m.OnNewLeader(func(s string) { *moved = append(*moved, s) })
	if err := m.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f, m
}

func TestMonitorFailsClosed(t *testing.T) {
	f := &fakeStreams{states: map[string]integrity.State{}, err: errors.New("no answer")}
	var log bytes.Buffer
	m := newMonitor(f, &log)
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Unchecked: refused as unavailable, not as damaged.
	if err := m.Check(ctx); err == nil {
		t.Fatal("Check with streams not answering succeeded")
	}
	if err := m.Err(); !errors.Is(err, kez.ErrUnavailable) || errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("Err before a check = %v, want ErrUnavailable", err)
	}
	if m.Status().OK {
		t.Fatal("Status OK before a check")
	}

	f.err = nil
	f.set(integrity.State{Stream: "LOG", Leader: "n1", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	f.set(integrity.State{Stream: "KV", Leader: "n2", FirstSeq: 1, LastSeq: 3, Msgs: 3})
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err != nil || !m.Status().OK {
		t.Fatalf("intact streams: Err = %v, Status = %+v", err, m.Status())
	}

	// Holes on a new leader: damaged, named with its leader, counted and
	// logged once.
	f.set(integrity.State{Stream: "LOG", Leader: "n3", FirstSeq: 1, LastSeq: 9, Msgs: 5, Deleted: 4})
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}
	err := m.Err()
	if !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "LOG (leader n3)") {
		t.Fatalf("Err = %v, want LOG (leader n3) damaged", err)
	}
	st := m.Status()
	if st.OK || st.Streams[0].Status != "damaged" || st.Streams[0].Leader != "n3" || st.Streams[1].Status != "ok" {
		t.Fatalf("Status = %+v", st)
	}
	if got := metric(t, reg, "kez_log_damaged", "LOG"); got != 1 {
		t.Fatalf("kez_log_damaged{LOG} = %v", got)
	}
	if got := metric(t, reg, "kez_log_damage_detected_total", "LOG"); got != 1 {
		t.Fatalf("kez_log_damage_detected_total{LOG} = %v", got)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "append-only stream damaged"); n != 1 {
		t.Fatalf("damage logged %d times for two checks in one interval:\n%s", n, log.String())
	}

	// Back to a whole copy: intact again.
	f.set(integrity.State{Stream: "LOG", Leader: "n1", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err != nil {
		t.Fatalf("Err after the repair = %v", err)
	}
	if !strings.Contains(log.String(), "intact again") {
		t.Fatalf("repair not logged:\n%s", log.String())
	}

	// A stream that shrinks lost acknowledged messages.
	f.set(integrity.State{Stream: "KV", Leader: "n2", FirstSeq: 1, LastSeq: 2, Msgs: 2})
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "saw 3 before") {
		t.Fatalf("Err after KV shrank = %v", err)
	}
}

// metric returns the value of the gauge or counter name{stream}.
func metric(t *testing.T, reg *prometheus.Registry, name, stream string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stream" && l.GetValue() == stream {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{stream=%q}", name, stream)
	return 0
}

// Damage a service reports stays until the stream's leader changes;
// verifiers' damage is part of every check, their other errors are not
// damage.
func TestMonitorReportsAndVerifiers(t *testing.T) {
	var moved []string
	f, m := checkedMonitor(t, &moved)
	ctx := context.Background()
	var verr error
	m.AddVerifier("LOG", func(context.Context, integrity.State) error { return verr })

	m.Scope("LOG").Report("", "a claim the log forgot")
	m.Scope("LOG").Report("KV", "a record gone")
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	err := m.Err()
	if !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "a claim the log forgot") || !strings.Contains(err.Error(), "KV (leader n2): a record gone") {
		t.Fatalf("Err after reports = %v", err)
	}
	f.set(integrity.State{Stream: "LOG", Leader: "n2", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err == nil || strings.Contains(err.Error(), "forgot") || !strings.Contains(err.Error(), "a record gone") {
		t.Fatalf("Err after LOG's leader changed = %v, want only KV's damage", err)
	}
	if fmt.Sprint(moved) != "[LOG]" {
		t.Fatalf("new-leader hook called for %v, want [LOG]", moved)
	}
	// A problem withdrawn by the service that reported it goes; another
	// reported against the same stream stays.
	m.Scope("LOG").Report("KV", "a record changed")
	m.Scope("LOG").Resolve("KV", "a record gone")
	m.Scope("LOG").Resolve("KV", "never reported")
	m.Scope("LOG").Resolve("NOT_WATCHED", "a record gone") // nothing to withdraw, no panic
	if err := m.Err(); err == nil || strings.Contains(err.Error(), "a record gone") || !strings.Contains(err.Error(), "a record changed") {
		t.Fatalf("Err after one of KV's problems was resolved = %v", err)
	}
	m.Scope("LOG").Resolve("KV", "a record changed")
	if err := m.Err(); errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("Err after KV's problems were resolved = %v", err)
	}
	// An election that keeps the damaged leader keeps its damage.
	m.Scope("LOG").Report("", "still forgetting")
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "still forgetting") {
		t.Fatalf("Err after the same leader was elected again = %v", err)
	}
	f.set(integrity.State{Stream: "LOG", Leader: "n3", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}

	verr = fmt.Errorf("%w: the event at 9 is not the one hashed", kez.ErrLogDamaged)
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "LOG (leader n3): the event at 9") {
		t.Fatalf("Err with a verifier finding damage = %v", err)
	}
	verr = errors.New("leader did not answer")
	if err := m.Check(ctx); err == nil {
		t.Fatal("Check hid a verifier's error")
	}
	if err := m.Err(); err != nil && strings.Contains(err.Error(), "LOG (") {
		t.Fatalf("a verifier that could not tell counted as damage: %v", err)
	}
}

// Damage reported while the monitor knows no leader of the stream (its
// last check saw it mid-election, or failed) cannot be pinned on a copy:
// no election drops it, only a scrub begun after it (Cleared) or the
// service (Resolve); the status says it is held, and why.
func TestMonitorHoldsDamageReportedWithNoLeader(t *testing.T) {
	var moved []string
	f, m := checkedMonitor(t, &moved)
	ctx := context.Background()

	// Mid-election: the check finds no leader, then a scrub reports.
	f.set(integrity.State{Stream: "LOG", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.LeaderChanged(ctx, "LOG"); err != nil {
		t.Fatal(err)
	}
	before := m.Mark()
	if m.Holds() {
		t.Fatal("Holds before any report = true")
	}
	m.Scope("LOG").Report("", "the event at 5 is not the one hashed")
	if !m.Scope("LOG").Holds() {
		t.Fatal("Holds after a report with no leader known = false")
	}
	// The election ends, on another node or on the same one: the damage
	// stands, and the service is called to check again.
	for _, leader := range []string{"n2", "n1"} {
		moved = nil
		f.set(integrity.State{Stream: "LOG", Leader: leader, FirstSeq: 1, LastSeq: 9, Msgs: 9})
		if err := m.LeaderChanged(ctx, "LOG"); err != nil {
			t.Fatal(err)
		}
		err := m.Err()
		if !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(err.Error(), "LOG (leader "+leader+"): the event at 5 is not the one hashed (reported while the stream had no known leader, the last being n1") {
			t.Fatalf("Err once %s leads = %v, want the damage held", leader, err)
		}
		if fmt.Sprint(moved) != "[LOG]" {
			t.Fatalf("new-leader hooks after the election = %v, want [LOG]", moved)
		}
	}
	st := m.Status().Streams[0]
	if st.Status != "damaged" || len(st.Held) != 1 || st.Held[0].Problem != "the event at 5 is not the one hashed" || st.Held[0].LastLeader != "n1" || st.Held[0].Reported != 1_800_000_000 {
		t.Fatalf("Status of LOG = %+v, want the damage held since n1 led", st)
	}
	// A scrub begun before the report does not clear it; another stream's
	// scrub does not either; one begun after it does.
	m.Scope("LOG").Cleared("", before)
	m.Cleared("KV", m.Mark())
	if err := m.Err(); !errors.Is(err, kez.ErrLogDamaged) {
		t.Fatalf("Err after a scrub begun before the report = %v", err)
	}
	m.Scope("LOG").Cleared("", m.Mark())
	if err := m.Err(); err != nil {
		t.Fatalf("Err after a scrub begun after the report passed = %v", err)
	}
	if len(m.Status().Streams[0].Held) != 0 || m.Holds() {
		t.Fatalf("Status after the scrub = %+v, Holds %v", m.Status(), m.Holds())
	}

	// Found again after a scrub began: that scrub does not clear it.
	f.set(integrity.State{Stream: "LOG", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	m.Report("LOG", "a claim the log forgot")
	mark := m.Mark()
	m.Report("LOG", "a claim the log forgot")
	m.Cleared("LOG", mark)
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "a claim the log forgot") {
		t.Fatalf("Err after a scrub begun before the damage was found again = %v", err)
	}
	m.Resolve("LOG", "a claim the log forgot")
	if err := m.Err(); err != nil {
		t.Fatalf("Err after Resolve of held damage = %v", err)
	}

	// A check that failed knows no leader either.
	f.set(integrity.State{Stream: "LOG", Leader: "n1", FirstSeq: 1, LastSeq: 9, Msgs: 9})
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	f.err = errors.New("no answer")
	if err := m.Check(ctx); err == nil {
		t.Fatal("Check with the streams not answering succeeded")
	}
	m.Report("LOG", "a record gone")
	f.err = nil
	moved = nil
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "a record gone") {
		t.Fatalf("Err after a failed check and the same leader again = %v, want the damage held", err)
	}
	if fmt.Sprint(moved) != "[LOG]" {
		t.Fatalf("new-leader hooks once the leader is known again = %v, want [LOG]", moved)
	}
	// Damage reported against a known leader is not a scrub's to clear.
	m.Report("KV", "a record changed")
	m.Cleared("KV", m.Mark())
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "KV (leader n2): a record changed") {
		t.Fatalf("Err after Cleared of damage reported against a known leader = %v", err)
	}
	// Holds is about held damage only.
	if !m.Holds() {
		t.Fatal("Holds with a record gone held = false")
	}
	m.Resolve("LOG", "a record gone")
	if m.Holds() || m.Err() == nil {
		t.Fatalf("Holds = %v, Err = %v with damage reported against a known leader only, want false and the damage", m.Holds(), m.Err())
	}
}
