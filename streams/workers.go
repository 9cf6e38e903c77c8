package streams

import (
	"sync"

	"github.com/nats-io/nats.go/micro"
)

// Workers serves micro requests concurrently, at most n at once: micro
// calls an endpoint's handler for one request at a time, so a service
// whose requests wait on JetStream would otherwise queue every caller
// behind the slowest one.
type Workers struct {
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	stopped bool
}

// NewWorkers returns Workers that run at most n requests at once (64 if n
// is not positive).
func NewWorkers(n int) *Workers {
	if n <= 0 {
		n = 64
	}
	return &Workers{sem: make(chan struct{}, n)}
}

// Handler returns a micro handler that runs fn for each request on a
// worker. A request that arrives after Stop is left unanswered (its
// caller times out and retries elsewhere).
func (w *Workers) Handler(fn func(micro.Request)) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return
		}
		w.wg.Add(1)
		w.mu.Unlock()
		w.sem <- struct{}{}
		go func() {
			defer w.wg.Done()
			defer func() { <-w.sem }()
			fn(r)
		}()
	})
}

// Stop refuses new requests and waits for those in hand.
func (w *Workers) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wg.Wait()
}
