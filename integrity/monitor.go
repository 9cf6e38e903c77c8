package integrity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
)

// State is what a stream's leader reports about a stream, as far as
// damage to an append-only stream shows in it.
type State struct {
	Stream   string `json:"stream"`
	Leader   string `json:"leader,omitempty"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Msgs     uint64 `json:"messages"`
	Deleted  int    `json:"num_deleted"`
	// LostMsgs counts the messages the store found it could not read
	// when it rebuilt a block (nats-server's "lost" stream data).
	LostMsgs int `json:"lost_messages,omitempty"`
}

// Problems returns what is wrong with s for a stream that never deletes
// a message (deny_delete, deny_purge, no limits that remove messages):
// such a stream holds every sequence from 1 to its last, so a gap, a
// first sequence other than 1 or lost data can only be damage.
func (s State) Problems() []string {
	var out []string
	if s.LostMsgs > 0 {
		out = append(out, fmt.Sprintf("the store lost %d messages it could not read", s.LostMsgs))
	}
	if s.LastSeq > 0 && s.FirstSeq != 1 {
		out = append(out, fmt.Sprintf("first sequence is %d, not 1: the messages before it are gone", s.FirstSeq))
	}
	if s.LastSeq >= s.FirstSeq && s.LastSeq > 0 {
		if span := s.LastSeq - s.FirstSeq + 1; s.Msgs < span {
			out = append(out, fmt.Sprintf("%d of the %d messages from sequence %d to %d are missing", span-s.Msgs, span, s.FirstSeq, s.LastSeq))
		}
	}
	if s.Deleted > 0 {
		out = append(out, fmt.Sprintf("%d deleted messages in a stream that denies deletes", s.Deleted))
	}
	return out
}

// Inspector returns the state of a stream, read from its leader.
type Inspector func(ctx context.Context, stream string) (State, error)

// Verifier checks a stream beyond its state (a service's checkpoint
// against the log, say). It returns an error wrapping kez.ErrLogDamaged for
// damage; any other error means it could not tell, which is not damage.
type Verifier func(ctx context.Context, st State) error

// Config configures a Monitor.
type Config struct {
	// Streams are the append-only streams to watch.
	Streams []string
	// Inspect reads a stream's state from its leader.
	Inspect Inspector
	// Interval is how often every stream is checked, and how often damage
	// still present is logged again (1 minute if zero).
	Interval time.Duration
	// Logger receives damage found and repaired.
	Logger *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Monitor tracks whether the append-only streams a server writes are
// intact. Check runs every check; Run runs them periodically and on every
// leader change. While a stream is damaged, Err returns an error wrapping
// kez.ErrLogDamaged: servers refuse writes with it and turn readiness red.
// Looking at Err costs nothing, so writes pay no round trip for it.
type Monitor struct {
	cfg      Config
	damaged  *prometheus.GaugeVec
	detected *prometheus.CounterVec

	mu        sync.Mutex
	streams   map[string]*watched
	verifiers map[string][]Verifier
	newLeader []func(stream string)
	checked   bool   // every stream was inspected at least once
	reports   uint64 // damage reports so far: the mark of the last one
}

type watched struct {
	state     State
	inspected bool
	err       error    // the last inspection failed (unknown, not damage)
	highest   uint64   // the highest last sequence seen
	problems  []string // from the state and the verifiers, last check
	// reported is damage a service found itself (a claim the log forgot,
	// a checkpoint the log no longer matches). It stays until the stream's
	// leader changes: the same leader keeps serving the same damaged copy.
	reported       []string
	reportedLeader string
	// held is damage reported while no leader of the stream was known
	// (its last check saw it between leaders, or failed): the copy that
	// served it is unknown, so no election drops it. It stays until a
	// check of the whole stream begun after it passes (Cleared), or the
	// service withdraws it (Resolve).
	held []Held
	// heldNew: damage was held since the last check that knew the
	// leader; the next one calls the new-leader hooks, so that the
	// service checks the stream again.
	heldNew    bool
	lastLeader string    // the last leader a check saw
	since      time.Time // damaged since
	logged     time.Time // last logged
}

// Held is damage reported while no leader of its stream was known.
type Held struct {
	Problem string `json:"problem"`
	// LastLeader is the stream's leader at the last check that saw one
	// before the report: the damaged copy is that one or one elected
	// since.
	LastLeader string `json:"last_leader,omitempty"`
	Reported   int64  `json:"reported"` // unix seconds
	mark       uint64
}

// text is the held problem as Err and Status say it.
func (h Held) text() string {
	last := ""
	if h.LastLeader != "" {
		last = ", the last being " + h.LastLeader
	}
	return fmt.Sprintf("%s (reported while the stream had no known leader%s: held until a scrub begun since finds it whole)", h.Problem, last)
}

func (w *watched) damage() []string {
	out := append(slices.Clone(w.problems), w.reported...)
	for _, h := range w.held {
		if !slices.Contains(w.reported, h.Problem) {
			out = append(out, h.text())
		}
	}
	return out
}

// leaderKnown reports whether the last check of w named its leader.
func (w *watched) leaderKnown() bool { return w.inspected && w.err == nil && w.state.Leader != "" }

// New returns a monitor of cfg.Streams; nothing is checked until Check or
// Run.
func New(cfg Config) *Monitor {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{
		cfg: cfg,
		damaged: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kez_log_damaged", Help: "1 while an append-only stream is found damaged (writes refused), else 0.",
		}, []string{"stream"}),
		detected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_log_damage_detected_total", Help: "Times an append-only stream was found damaged after being intact.",
		}, []string{"stream"}),
		streams:   map[string]*watched{},
		verifiers: map[string][]Verifier{},
	}
	for _, s := range cfg.Streams {
		m.streams[s] = &watched{}
		m.damaged.WithLabelValues(s).Set(0)
		m.detected.WithLabelValues(s)
	}
	return m
}

// Register adds the monitor's metrics to reg.
func (m *Monitor) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.damaged, m.detected} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// AddVerifier adds a check of stream run after its state is read.
func (m *Monitor) AddVerifier(stream string, v Verifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verifiers[stream] = append(m.verifiers[stream], v)
}

// OnNewLeader adds fn, called (outside any lock) when a check finds a
// stream led by another node than at the previous check, or finds its
// leader after damage was held against it (see Report): a service checks
// the stream again, as the new leader serves it.
func (m *Monitor) OnNewLeader(fn func(stream string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.newLeader = append(m.newLeader, fn)
}

// Check inspects and verifies every stream now. It returns an error only
// if a stream could not be inspected; damage is in Err.
func (m *Monitor) Check(ctx context.Context) error {
	var errs []error
	for _, s := range m.cfg.Streams {
		errs = append(errs, m.check(ctx, s))
	}
	err := errors.Join(errs...)
	if err == nil {
		m.mu.Lock()
		m.checked = true
		m.mu.Unlock()
	}
	return err
}

func (m *Monitor) check(ctx context.Context, stream string) error {
	st, err := m.cfg.Inspect(ctx, stream)
	if err != nil {
		m.mu.Lock()
		m.streams[stream].err = err
		m.mu.Unlock()
		return fmt.Errorf("inspect %s: %w", stream, err)
	}
	problems := st.Problems()
	m.mu.Lock()
	verifiers := slices.Clone(m.verifiers[stream])
	if w := m.streams[stream]; st.LastSeq < w.highest {
		// An append-only stream never shrinks: the leader serving this
		// state lost messages it (or another peer) had acknowledged.
		problems = append(problems, fmt.Sprintf("last sequence %d, but this server saw %d before: acknowledged messages are gone", st.LastSeq, w.highest))
	} else {
		w.highest = st.LastSeq
	}
	m.mu.Unlock()
	var verr error
	for _, v := range verifiers {
		if err := v(ctx, st); errors.Is(err, kez.ErrLogDamaged) {
			problems = append(problems, strings.TrimPrefix(err.Error(), kez.ErrLogDamaged.Error()+": "))
		} else if err != nil {
			verr = errors.Join(verr, err)
		}
	}
	m.mu.Lock()
	w := m.streams[stream]
	// Damage held since the last check is checked again by the service
	// that found it once a leader is known: as for a leader change.
	moved := w.inspected && st.Leader != w.state.Leader || w.heldNew && st.Leader != ""
	w.state, w.inspected, w.err, w.problems = st, true, nil, problems
	if st.Leader != "" {
		w.lastLeader, w.heldNew = st.Leader, false
	}
	if len(w.reported) > 0 && st.Leader != w.reportedLeader {
		w.reported = nil
	}
	m.update(stream, w)
	hooks := slices.Clone(m.newLeader)
	m.mu.Unlock()
	if moved {
		for _, fn := range hooks {
			fn(stream)
		}
	}
	if verr != nil {
		return fmt.Errorf("verify %s: %w", stream, verr)
	}
	return nil
}

// LeaderChanged tells the monitor that stream elected a leader (a
// JetStream leader-elected advisory): the stream is checked again at
// once, and damage reported against another node than the one leading
// now is dropped. (An election may keep the same leader, damaged copy
// and all.) Damage reported while no leader was known stays (see Report).
func (m *Monitor) LeaderChanged(ctx context.Context, stream string) error {
	m.mu.Lock()
	_, ok := m.streams[stream]
	m.mu.Unlock()
	if !ok {
		return nil
	}
	return m.check(ctx, stream)
}

// Report records damage to stream that a service found itself, against
// the stream's current leader; it lasts until the leader changes, or
// until the service withdraws it (Resolve).
//
// While no leader of stream is known (the last check saw it between
// leaders, mid-election, or failed), the copy that served the damage
// cannot be named: dropping the report when the election ends would
// accept writes on a copy known damaged until the service checks again.
// Such damage is held instead, through any election, until a check of
// the whole stream begun after it passes (Cleared) or the service
// withdraws it (Resolve); the next check that finds a leader calls the
// new-leader hooks, for the service to check again.
func (m *Monitor) Report(stream, problem string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.streams[stream]
	if !ok {
		return
	}
	m.reports++
	if !w.leaderKnown() {
		h := Held{Problem: problem, LastLeader: w.lastLeader, Reported: m.cfg.Now().Unix(), mark: m.reports}
		if i := slices.IndexFunc(w.held, func(h Held) bool { return h.Problem == problem }); i >= 0 {
			w.held[i] = h // found again: a check begun before now does not clear it
		} else {
			w.held = append(w.held, h)
		}
		w.heldNew = true
		m.update(stream, w)
		return
	}
	if !slices.Contains(w.reported, problem) {
		w.reported = append(w.reported, problem)
	}
	w.reportedLeader = w.state.Leader
	m.update(stream, w)
}

// Resolve withdraws a problem Report recorded against stream, once the
// service that found it has seen it mended (a projection write that
// conflicted has passed since); other problems stand.
func (m *Monitor) Resolve(stream, problem string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.streams[stream]
	if !ok {
		return
	}
	// Report keeps each problem once in each list.
	w.reported = slices.DeleteFunc(w.reported, func(p string) bool { return p == problem })
	w.held = slices.DeleteFunc(w.held, func(h Held) bool { return h.Problem == problem })
	m.update(stream, w)
}

// Mark returns a mark of the damage reported so far, for Cleared: take
// it before a check of a whole stream begins.
func (m *Monitor) Mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reports
}

// Cleared tells the monitor that a check of the whole of stream, begun
// at mark (see Mark), found it intact as its leader serves it (a scrub
// of the log passed): the damage held against stream since before mark
// (reported while no leader was known, see Report) is withdrawn. Damage
// reported against a known leader is not: it stays until that leader
// goes or the service withdraws it (Resolve).
func (m *Monitor) Cleared(stream string, mark uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.streams[stream]
	if !ok {
		return
	}
	n := len(w.held)
	w.held = slices.DeleteFunc(w.held, func(h Held) bool { return h.mark <= mark })
	if len(w.held) < n {
		m.cfg.Logger.Info("damage held since an election withdrawn: a scrub found the stream whole", "stream", stream, "leader", w.state.Leader)
	}
	m.update(stream, w)
}

// Holds reports whether damage is held against any stream (reported
// while no leader of it was known, see Report): only Cleared or Resolve
// withdraws it, so a service whose check failed for another reason
// tries again soon rather than at its usual interval.
func (m *Monitor) Holds() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.streams {
		if len(w.held) > 0 {
			return true
		}
	}
	return false
}

// update logs and counts a change of stream's condition; m.mu is held.
func (m *Monitor) update(stream string, w *watched) {
	now := m.cfg.Now()
	damage := w.damage()
	switch {
	case len(damage) > 0 && w.since.IsZero():
		w.since, w.logged = now, now
		m.damaged.WithLabelValues(stream).Set(1)
		m.detected.WithLabelValues(stream).Inc()
		m.logDamage(stream, w, damage)
	case len(damage) == 0 && !w.since.IsZero():
		w.since = time.Time{}
		m.damaged.WithLabelValues(stream).Set(0)
		m.cfg.Logger.Info("append-only stream intact again; writes accepted", "stream", stream, "leader", w.state.Leader)
	}
}

func (m *Monitor) logDamage(stream string, w *watched, damage []string) {
	m.cfg.Logger.Error("append-only stream damaged; writes refused", "stream", stream, "leader", w.state.Leader,
		"problems", damage, "damaged_since", w.since.UTC().Format(time.RFC3339),
		"hint", "take the damaged peer out and let it catch up: docs/operations.md, \"A damaged log\"")
}

// logStill logs every stream still damaged, at most once per interval.
func (m *Monitor) logStill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	for _, s := range m.cfg.Streams {
		w := m.streams[s]
		if damage := w.damage(); len(damage) > 0 && now.Sub(w.logged) >= m.cfg.Interval {
			w.logged = now
			m.logDamage(s, w, damage)
		}
	}
}

// Run checks every stream each interval, and a stream again whenever a
// name arrives on leaders (see streams.WatchLeaders), until ctx ends.
func (m *Monitor) Run(ctx context.Context, leaders <-chan string) {
	// Until one complete check has passed, writes are refused: try every
	// second.
	for !m.isChecked() {
		if err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("integrity check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	// A check that ran while a stream was between leaders (during an
	// election its info names none) is repeated shortly, so that damage is
	// reported against the leader that serves it.
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-leaders:
			if err := m.LeaderChanged(ctx, s); err != nil && ctx.Err() == nil {
				m.cfg.Logger.Warn("integrity check after a leader change", "stream", s, "err", err)
			}
		case <-again.C:
			if err := m.Check(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Logger.Warn("integrity check", "err", err)
			}
		case <-t.C:
			if err := m.Check(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Logger.Warn("integrity check", "err", err)
			}
			m.logStill()
		}
		if m.leaderless() {
			again.Reset(500 * time.Millisecond)
		}
	}
}

// leaderless reports whether a stream was last seen without a leader.
func (m *Monitor) leaderless() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.streams {
		if w.inspected && w.state.Leader == "" {
			return true
		}
	}
	return false
}

// Err returns nil while every stream is intact, an error wrapping
// kez.ErrLogDamaged naming each damaged stream, its leader and what is
// wrong, or, before the first complete check, one wrapping
// kez.ErrUnavailable.
func (m *Monitor) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	for _, s := range m.cfg.Streams {
		w := m.streams[s]
		if damage := w.damage(); len(damage) > 0 {
			parts = append(parts, fmt.Sprintf("%s (leader %s): %s", s, leaderName(w.state.Leader), strings.Join(damage, "; ")))
		}
	}
	if len(parts) > 0 {
		return fmt.Errorf("%w: %s", kez.ErrLogDamaged, strings.Join(parts, "; "))
	}
	if !m.checked {
		return fmt.Errorf("%w: the logs have not been checked yet", kez.ErrUnavailable)
	}
	return nil
}

func (m *Monitor) isChecked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checked
}

func leaderName(l string) string {
	if l == "" {
		return "unknown"
	}
	return l
}

// StreamStatus is one stream in Status.
type StreamStatus struct {
	State
	Status   string   `json:"status"` // ok, damaged or unknown
	Problems []string `json:"problems,omitempty"`
	Since    int64    `json:"damaged_since,omitempty"` // unix seconds
	// Held is the damage reported while the stream had no known leader
	// (also in Problems), kept until a scrub begun since passes.
	Held []Held `json:"held,omitempty"`
}

// Status is the readiness view of the monitor.
type Status struct {
	OK      bool           `json:"ok"`
	Streams []StreamStatus `json:"streams"`
}

// Status returns every stream's last known condition.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := Status{OK: m.checked}
	for _, s := range m.cfg.Streams {
		w := m.streams[s]
		ss := StreamStatus{State: w.state, Status: "ok", Problems: w.damage(), Held: slices.Clone(w.held)}
		ss.Stream = s
		switch {
		case len(ss.Problems) > 0:
			ss.Status, ss.Since, out.OK = "damaged", w.since.Unix(), false
		case !w.inspected || w.err != nil:
			ss.Status = "unknown"
		}
		out.Streams = append(out.Streams, ss)
	}
	return out
}

// Scope is a Monitor as a service that writes one stream sees it: Err
// covers every stream watched, Report files damage against that stream
// unless it names another.
type Scope struct {
	m      *Monitor
	stream string
}

// Scope returns the monitor scoped to stream.
func (m *Monitor) Scope(stream string) Scope { return Scope{m, stream} }

// Err is Monitor.Err.
func (s Scope) Err() error { return s.m.Err() }

// Report is Monitor.Report against stream, or the scope's stream if
// stream is empty.
func (s Scope) Report(stream, problem string) {
	if stream == "" {
		stream = s.stream
	}
	s.m.Report(stream, problem)
}

// Resolve is Monitor.Resolve against stream, or the scope's stream if
// stream is empty.
func (s Scope) Resolve(stream, problem string) {
	if stream == "" {
		stream = s.stream
	}
	s.m.Resolve(stream, problem)
}

// Mark is Monitor.Mark.
func (s Scope) Mark() uint64 { return s.m.Mark() }

// Holds is Monitor.Holds.
func (s Scope) Holds() bool { return s.m.Holds() }

// Cleared is Monitor.Cleared of stream, or of the scope's stream if
// stream is empty.
func (s Scope) Cleared(stream string, mark uint64) {
	if stream == "" {
		stream = s.stream
	}
	s.m.Cleared(stream, mark)
}

// StreamError is damage found in a particular stream (a projection
// bucket, say) by a service that knows the stream only by this error.
type StreamError struct {
	Stream string
	Err    error
}

func (e *StreamError) Error() string { return e.Stream + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *StreamError) Unwrap() error { return e.Err }
