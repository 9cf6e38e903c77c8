package relay_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/p2p"
	"kez.lat/kez/web"
)

// fakeHome answers GET /v1/k/ed25519:<hex> like the home server: 200 with
// the record for a registered key, 404 otherwise.
type fakeHome struct {
	*httptest.Server
	mu       sync.Mutex
	keys     map[kez.PublicKey]bool
	requests atomic.Int64
	status   int           // if set, every answer has this status
	delay    time.Duration // if set, every answer waits this long
}

func newFakeHome(t testing.TB) *fakeHome {
	t.Helper()
	f := &fakeHome{keys: map[kez.PublicKey]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/k/{primary}", func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		status, delay := f.status, f.delay
		f.mu.Unlock()
		time.Sleep(delay)
		if status != 0 {
			web.WriteJSON(w, status, kez.ErrorBody{Error: "broken", Code: "internal"})
			return
		}
		key, err := kez.ParsePublicKey(r.PathValue("primary"))
		if err != nil {
			web.WriteJSON(w, http.StatusBadRequest, kez.ErrorBody{Error: "bad key", Code: "invalid_key"})
			return
		}
		f.mu.Lock()
		ok := f.keys[key]
		f.mu.Unlock()
		if !ok {
			web.WriteJSON(w, http.StatusNotFound, kez.ErrorBody{Error: "not found", Code: "not_found"})
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"handle": "x@kez.test", "primary": key.String()})
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeHome) register(k kez.PublicKey) {
	f.mu.Lock()
	f.keys[k] = true
	f.mu.Unlock()
}

func (f *fakeHome) setStatus(s int) {
	f.mu.Lock()
	f.status = s
	f.mu.Unlock()
}

func peerID(t testing.TB, k *kez.PrivateKey) peer.ID {
	t.Helper()
	id, err := p2p.PeerID(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// metric returns the value of the series whose text form (name and
// labels, as in the exposition format) is series, or -1 if reg has none.
func metric(t testing.TB, reg prometheus.Gatherer, series string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			if name != series {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}
