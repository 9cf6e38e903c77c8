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
//
// The goroutines that run requests are started as requests need them, at
// most n, and kept until Stop: a goroutine per request would start each
// one on a small stack and grow it again for every request (a door send
// runs deep in signature checks and nats.go).
type Workers struct {
	n    int
	jobs chan job // unbuffered: a send is a worker taking the job
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup // requests in hand
	gwg  sync.WaitGroup // goroutines

	mu      sync.Mutex
	stopped bool
	running int // goroutines started
}

// job is a request and what to do with it.
type job struct {
	fn  func(*Request)
	req *Request
}

// NewWorkers returns Workers that run at most n requests at once (64 if
// n is not positive).
func NewWorkers(n int) *Workers {
	if n <= 0 {
		n = 64
	}
	return &Workers{n: n, jobs: make(chan job), quit: make(chan struct{})}
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
// elsewhere). With n requests in hand, the handler waits for one to end.
func (w *Workers) Handler(nc *nats.Conn, fn func(*Request)) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		j := job{fn, &Request{nc: nc, subject: r.Subject(), reply: r.Reply(), data: r.Data(), headers: nats.Header(r.Headers())}}
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return
		}
		w.wg.Add(1)
		w.mu.Unlock()
		select {
		case w.jobs <- j: // an idle worker took it
			return
		default:
		}
		w.mu.Lock()
		if w.running < w.n {
			w.running++
			w.gwg.Add(1)
			w.mu.Unlock()
			go w.work(j)
			return
		}
		w.mu.Unlock()
		// n workers run, and keep running until Stop, which waits for
		// this request: one of them takes it.
		w.jobs <- j
	})
}

// work runs first, then every job it takes until Stop.
func (w *Workers) work(first job) {
	defer w.gwg.Done()
	w.run(first)
	for {
		select {
		case j := <-w.jobs:
			w.run(j)
		case <-w.quit:
			return
		}
	}
}

func (w *Workers) run(j job) {
	defer w.wg.Done()
	j.fn(j.req)
}

// Stop refuses new requests, waits for those in hand and ends the
// workers.
func (w *Workers) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wg.Wait()
	w.once.Do(func() { close(w.quit) })
	w.gwg.Wait()
}
