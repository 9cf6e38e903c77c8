package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/health"
)

// Turns reports the moments when a write in flight may never be
// answered: a leader elected for one of the watched streams (the old one
// froze or died with the write) or the connection back after a
// disconnect (the answer's subscription was away). A write waiting at such
// a turn is sent again instead of waiting out its deadline.
type Turns struct {
	mu   sync.Mutex
	next chan struct{}
}

// WatchTurns watches the leader elections of names and nc's reconnects
// until stop is called.
func WatchTurns(nc *nats.Conn, names []string) (*Turns, func(), error) {
	t := &Turns{next: make(chan struct{})}
	leaders, stopLeaders, err := WatchLeaders(nc, names)
	if err != nil {
		return nil, nil, err
	}
	status := nc.StatusChanged(nats.CONNECTED)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case _, ok := <-status:
				if !ok {
					return
				}
			case <-leaders:
			}
			t.turn()
		}
	}()
	var once sync.Once
	return t, func() {
		once.Do(func() {
			stopLeaders()
			nc.RemoveStatusListener(status)
			close(done)
		})
	}, nil
}

func (t *Turns) turn() {
	t.mu.Lock()
	close(t.next)
	t.next = make(chan struct{})
	t.mu.Unlock()
}

// Next returns a channel closed at the next turn; nil (never closed) on
// a nil Turns.
func (t *Turns) Next() <-chan struct{} {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next
}

// StoreProbe is a shared probe of the JetStream store (ProbeStore): one
// probe at a time, its result reused for a second, so that readiness and
// every write that waits too long ask the store once between them.
type StoreProbe struct {
	js       jetstream.JetStream
	replicas int
	writer   string
	shared   health.Shared[error]

	mu     sync.Mutex
	failed time.Time // when a probe last failed (zero: the last one passed)
}

// NewStoreProbe returns a probe writing for writer (a token naming the
// replica) to the probe stream of replicas replicas.
func NewStoreProbe(js jetstream.JetStream, replicas int, writer string) *StoreProbe {
	return &StoreProbe{js: js, replicas: replicas, writer: writer, shared: health.Shared[error]{MaxAge: probeReuse}}
}

// probeReuse is how long a probe's result stands.
const probeReuse = time.Second

// Check probes the store (or reuses a result younger than a second, or
// waits for the probe in flight) and returns nil when it takes a write.
func (p *StoreProbe) Check(ctx context.Context) error {
	err, waitErr := p.shared.Do(ctx, func(ctx context.Context) error {
		err := ProbeStore(ctx, p.js, p.replicas, p.writer)
		p.mu.Lock()
		defer p.mu.Unlock()
		if errors.Is(err, errStoreRefuses) || errors.Is(err, errStoreNoAnswer) {
			p.failed = time.Now()
		} else if err == nil {
			p.failed = time.Time{}
		}
		return err
	})
	if waitErr != nil {
		return fmt.Errorf("store probe: %w", waitErr)
	}
	return err
}

// Failing reports whether the last probe found the store refusing or not
// answering writes, at most failureStands ago.
func (p *StoreProbe) Failing() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.failed.IsZero() && time.Since(p.failed) < failureStands
}

// failureStands is how long a probe's finding of a failing store stands:
// readiness's gauge probes every health.DefaultInterval, so a failure
// that lasts is found again within it, and a store that recovered while
// nothing probed is not blamed for long.
const failureStands = health.DefaultInterval * 3 / 2

// errTurn cancels a write's attempt at a turn.
var errTurn = errors.New("a leader was elected or the connection came back")

// guarded runs one attempt of a write, fn, whose context ends at the next
// turn (t may be nil) and, when probe is set and the attempt has not
// ended after probeAfter (at once if the store is known failing), when a
// probe of the store fails: storeErr is then that probe's error.
func guarded(ctx context.Context, t *Turns, probe *StoreProbe, fn func(context.Context) error) (err, storeErr error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	turn := t.Next()
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		var probeAt <-chan time.Time
		if probe != nil {
			wait := probeAfter
			if probe.Failing() {
				wait = 0
			}
			tm := time.NewTimer(wait)
			defer tm.Stop()
			probeAt = tm.C
		}
		select {
		case <-stop:
			return
		case <-turn:
			cancel(errTurn)
			return
		case <-probeAt:
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*probeWrite)
		perr := probe.Check(pctx)
		pcancel()
		if errors.Is(perr, errStoreRefuses) || errors.Is(perr, errStoreNoAnswer) {
			storeErr = perr
			cancel(perr)
			return
		}
		select {
		case <-stop:
		case <-turn:
			cancel(errTurn)
		}
	}()
	err = fn(actx)
	close(stop)
	<-watched
	if err != nil && context.Cause(actx) == errTurn && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", errTurn, err)
	}
	return err, storeErr
}

// retried runs fn, guarded, again after every turn that cut it, until it
// ends otherwise (fn must be safe to repeat).
func retried(ctx context.Context, t *Turns, fn func(context.Context) error) error {
	for {
		err, _ := guarded(ctx, t, nil, fn)
		if !errors.Is(err, errTurn) {
			return err
		}
	}
}

// A write not answered after probeAfter has the store probed, the probe's
// write given probeWrite: a healthy store answers a probe in
// milliseconds, one that fails writes never, and a full one at once.
const (
	probeAfter = 500 * time.Millisecond
	probeWrite = time.Second
)
