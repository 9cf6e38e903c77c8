package streams_test

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"kez.lat/kez/streams"
)

// fakeRequest is a micro.Request that only carries a subject.
type fakeRequest struct{ subject string }

func (r fakeRequest) Respond([]byte, ...micro.RespondOpt) error               { return nil }
func (r fakeRequest) RespondJSON(any, ...micro.RespondOpt) error              { return nil }
func (r fakeRequest) Error(string, string, []byte, ...micro.RespondOpt) error { return nil }
func (r fakeRequest) Data() []byte                                            { return nil }
func (r fakeRequest) Headers() micro.Headers                                  { return nil }
func (r fakeRequest) Subject() string                                         { return r.subject }
func (r fakeRequest) Reply() string                                           { return "" }

// TestWorkersBound: every request runs once, at most n at once, on at
// most n goroutines that are reused, and Stop waits for those in hand.
func TestWorkersBound(t *testing.T) {
	const n, total = 4, 200
	w := streams.NewWorkers(n)
	var (
		inHand, most, done atomic.Int64
		mu                 sync.Mutex
		seen               = map[string]int{}
	)
	before := runtime.NumGoroutine()
	h := w.Handler(nil, func(r *streams.Request) {
		k := inHand.Add(1)
		for {
			m := most.Load()
			if k <= m || most.CompareAndSwap(m, k) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		seen[r.Subject()]++
		mu.Unlock()
		inHand.Add(-1)
		done.Add(1)
	})
	for i := range total {
		h.Handle(fakeRequest{strconv.Itoa(i)})
	}
	if g := runtime.NumGoroutine() - before; g > n {
		t.Errorf("%d goroutines for %d workers", g, n)
	}
	w.Stop()
	if done.Load() != total {
		t.Fatalf("Stop returned with %d of %d requests done", done.Load(), total)
	}
	if m := most.Load(); m > n || m < 2 {
		t.Errorf("at most %d requests at once, want 2..%d", m, n)
	}
	for i := range total {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Errorf("request %d ran %d times", i, c)
		}
	}
	// After Stop: not run, and nothing waits.
	h.Handle(fakeRequest{"late"})
	if done.Load() != total {
		t.Error("a request after Stop ran")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine() - before; g > 0 {
		t.Errorf("%d goroutines left after Stop", g)
	}
	w.Stop() // a second Stop is harmless
}

// TestWorkersStopWaits: Stop returns only after a request in hand ends.
func TestWorkersStopWaits(t *testing.T) {
	w := streams.NewWorkers(2)
	release := make(chan struct{})
	var ended atomic.Bool
	started := make(chan struct{})
	h := w.Handler(nil, func(*streams.Request) {
		close(started)
		<-release
		ended.Store(true)
	})
	h.Handle(fakeRequest{"a"})
	<-started
	stopped := make(chan struct{})
	go func() { w.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned with a request in hand")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
	if !ended.Load() {
		t.Fatal("the request did not end")
	}
}
