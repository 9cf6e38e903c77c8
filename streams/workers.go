package streams

import (
	"encoding/json"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Workers serves micro requests concurrently, at most n at once: micro
// calls an endpoint's handler for one request at a time, so a service
// whose requests wait on JetStream would otherwise queue every caller
// behind the slowest one. A request is copied out of micro's hands before
// the handler returns (micro reads its own request afterwards, so
// answering it from another goroutine would race with micro), and
// answered on the service's connection.
type Workers struct {
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	stopped bool
}

// NewWorkers returns Workers that run at most n requests at once (64 if
// n is not positive).
func NewWorkers(n int) *Workers {
	if n <= 0 {
		n = 64
	}
	return &Workers{sem: make(chan struct{}, n)}
}

// Request is one request, held by a worker.
type Request struct {
	nc      *nats.Conn
	subject string
	reply   string
	data    []byte
	headers nats.Header
}

// Subject is the subject the request was sent to.
func (r *Request) Subject() string { return r.subject }

// Data is the request's body.
func (r *Request) Data() []byte { return r.data }

// Header returns a request header.
func (r *Request) Header(name string) string { return r.headers.Get(name) }

// Respond answers with b.
func (r *Request) Respond(b []byte) error {
	if r.reply == "" {
		return nil // nobody asked for an answer
	}
	return r.nc.Publish(r.reply, b)
}

// RespondJSON answers with v as JSON.
func (r *Request) RespondJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.Respond(b)
}

// Error answers with a micro service error: code and description in the
// Nats-Service-Error-Code and Nats-Service-Error headers.
func (r *Request) Error(code, description string) error {
	if r.reply == "" {
		return nil
	}
	m := nats.NewMsg(r.reply)
	m.Header.Set(micro.ErrorCodeHeader, code)
	m.Header.Set(micro.ErrorHeader, description)
	return r.nc.PublishMsg(m)
}

// Handler returns a micro handler that runs fn for each request on a
// worker, answering on nc (the service's connection). A request that
// arrives after Stop is left unanswered (its caller times out and retries
// elsewhere).
func (w *Workers) Handler(nc *nats.Conn, fn func(*Request)) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		req := &Request{nc: nc, subject: r.Subject(), reply: r.Reply(), data: r.Data(), headers: nats.Header(r.Headers())}
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
			fn(req)
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
