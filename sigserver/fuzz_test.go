package sigserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/sigserver"
	"kez.lat/kez/streams"
)

// memStore is an in-memory sigserver.Store with the same contract as
// streams.Sigchains: the expected sequence is the chain's length.
type memStore struct {
	mu     sync.Mutex
	chains map[kez.PublicKey][]sigchain.Event
}

func newMemStore() *memStore { return &memStore{chains: map[kez.PublicKey][]sigchain.Event{}} }

func (m *memStore) Tail(_ context.Context, key kez.PublicKey) (sigchain.Event, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chains[key]
	if len(c) == 0 {
		return sigchain.Event{}, 0, nil
	}
	return c[len(c)-1], uint64(len(c)), nil
}

func (m *memStore) Append(_ context.Context, ev sigchain.Event, expect uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chains[ev.Chain()]
	if uint64(len(c)) != expect {
		return 0, streams.ErrSigchainConflict
	}
	m.chains[ev.Chain()] = append(c, ev)
	return expect + 1, nil
}

func (m *memStore) Read(_ context.Context, key kez.PublicKey, since, limit uint64) ([]json.RawMessage, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []json.RawMessage{}
	for _, e := range m.chains[key] {
		if e.Seqno() >= since {
			if limit > 0 && uint64(len(out)) == limit {
				return out, true, nil
			}
			b, _ := e.MarshalJSON()
			out = append(out, b)
		}
	}
	return out, false, nil
}

func (m *memStore) events(key kez.PublicKey) []sigchain.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.chains[key])
}

// fuzzT0 is the fixed clock of the fuzzed handler.
var fuzzT0 = time.Unix(1767225600, 0)

func fixedKey(tb testing.TB, b byte) *kez.PrivateKey {
	tb.Helper()
	k, err := kez.NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func fixedChain(tb testing.TB, k *kez.PrivateKey, n int, tag string) []sigchain.Event {
	tb.Helper()
	var out []sigchain.Event
	for i := range n {
		var prev *sigchain.Event
		if i > 0 {
			prev = &out[i-1]
		}
		e, err := sigchain.Next(k, prev, sigchain.TypeAddClaim, sigchain.Claim{Kind: "dns", Value: tag + ".example", Proof: "TXT"}, fuzzT0)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// FuzzAppendBody posts arbitrary bodies to a chain of two events through
// the whole handler: it never answers 500, answers every refusal with a
// JSON error and a 4xx, and stores an event only when it answers 201, the
// chain still verifying.
func FuzzAppendBody(f *testing.F) {
	key := fixedKey(f, 7)
	chain := fixedChain(f, key, 3, "a")
	for _, seed := range [][]byte{
		wireOf(f, chain[2]),                                 // 201
		wireOf(f, chain[1]),                                 // 200: the stored tail again
		wireOf(f, fixedChain(f, key, 3, "b")[2]),            // 409 wrong_prev
		wireOf(f, fixedChain(f, fixedKey(f, 8), 1, "c")[0]), // 400 wrong_chain
		[]byte(`{"payload":"e30=","sig":"` + string(bytes.Repeat([]byte("A"), 86)) + `=="}`),
		[]byte(`{"payload":`),
		[]byte(`[]`),
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		store := newMemStore()
		store.chains[key.Public()] = slices.Clone(chain[:2])
		h := sigserver.NewHandler(sigserver.HandlerConfig{
			Store: store, MaxEvents: 100, CtimeSkew: time.Minute,
			Now:    func() time.Time { return fuzzT0 },
			Logger: slog.New(slog.DiscardHandler),
		}, prometheus.NewRegistry())
		req := httptest.NewRequest(http.MethodPost, "/v1/sigchains/ed25519/"+key.Public().Hex()+"/events", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp, _ := io.ReadAll(rec.Result().Body)
		got := store.events(key.Public())
		switch rec.Code {
		case http.StatusCreated:
			if len(got) != 3 {
				t.Fatalf("201 but the chain holds %d events", len(got))
			}
			if _, err := sigchain.VerifyChain(key.Public(), got); err != nil {
				t.Fatalf("201 but the chain does not verify: %v", err)
			}
			if !bytes.Equal(bytes.TrimSpace(resp), wireOf(t, got[2])) {
				t.Fatalf("201 answered %s, stored %s", resp, wireOf(t, got[2]))
			}
			return
		case http.StatusOK:
			if !bytes.Equal(bytes.TrimSpace(resp), wireOf(t, chain[1])) {
				t.Fatalf("200 answered %s, not the stored tail", resp)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict, http.StatusRequestEntityTooLarge:
			var e struct{ Error, Code string }
			if err := json.Unmarshal(resp, &e); err != nil || e.Code == "" || e.Error == "" {
				t.Fatalf("%d with body %q", rec.Code, resp)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, resp)
		}
		if len(got) != 2 || got[1].Hash() != chain[1].Hash() {
			t.Fatalf("refused (%d) but the chain changed to %d events", rec.Code, len(got))
		}
	})
}

// The handler answers a store or key-index failure 503, and an unknown
// failure 500 with no detail.
func TestHandlerDependencyFailures(t *testing.T) {
	key := fixedKey(t, 9)
	ev := fixedChain(t, key, 1, "a")[0]
	for _, tt := range []struct {
		name   string
		idx    sigserver.KeyIndex
		status int
		body   string
	}{
		{"key index unavailable", keyIndexFunc(func() error { return kez.ErrUnavailable }), 503, `"code":"unavailable"`},
		{"key index fails", keyIndexFunc(func() error { return io.ErrUnexpectedEOF }), 503, `"code":"unavailable"`},
		{"unregistered", keyIndexFunc(func() error { return kez.ErrNotFound }), 403, `"code":"not_registered"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			h := sigserver.NewHandler(sigserver.HandlerConfig{
				Store: store, Registered: tt.idx, MaxEvents: 10, CtimeSkew: time.Minute,
				Now: func() time.Time { return fuzzT0 }, Logger: slog.New(slog.DiscardHandler),
			}, prometheus.NewRegistry())
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/sigchains/ed25519/"+key.Public().Hex()+"/events", bytes.NewReader(wireOf(t, ev))))
			if rec.Code != tt.status || !bytes.Contains(rec.Body.Bytes(), []byte(tt.body)) {
				t.Fatalf("= %d %s, want %d %s", rec.Code, rec.Body, tt.status, tt.body)
			}
			if len(store.events(key.Public())) != 0 {
				t.Fatal("stored despite the refusal")
			}
		})
	}
}

type keyIndexFunc func() error

func (f keyIndexFunc) GetByKey(context.Context, kez.PublicKey) (kez.HandleRecord, error) {
	return kez.HandleRecord{}, f()
}

// TestPagedChain: a chain longer than a page is answered MaxPage events
// at a time with the next page's since in NextPageHeader, and the client
// reads every page into the whole chain; a server whose pages do not
// follow each other is refused.
func TestPagedChain(t *testing.T) {
	key := fixedKey(t, 9)
	chain := fixedChain(t, key, 2*sigserver.MaxPage+10, "p")
	store := newMemStore()
	store.chains[key.Public()] = chain
	h := sigserver.NewHandler(sigserver.HandlerConfig{
		Store: store, MaxEvents: 10_000, CtimeSkew: time.Minute,
		Now: func() time.Time { return fuzzT0 }, Logger: slog.New(slog.DiscardHandler),
	}, prometheus.NewRegistry())
	var gets atomic.Int32
	var lie atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		if lie.Load() && r.URL.Query().Get("since") != "" {
			w.Header().Set(kez.NextPageHeader, "3")
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := &client.Sigchains{BaseURL: srv.URL}
	got, err := c.Events(context.Background(), key.Public(), 0)
	if err != nil || len(got) != len(chain) {
		t.Fatalf("Events = %d events, %v; want %d", len(got), err, len(chain))
	}
	if n := gets.Load(); n != 3 {
		t.Errorf("%d requests for %d events, want 3 pages", n, len(chain))
	}
	if _, err := sigchain.VerifyChain(key.Public(), got); err != nil {
		t.Fatalf("the paged chain does not verify: %v", err)
	}
	// A page size asked for is honoured up to MaxPage; a bad one refused.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sigchains/ed25519/"+key.Public().Hex()+"?since=5&limit=10", nil))
	var page []json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || len(page) != 10 || rec.Header().Get(kez.NextPageHeader) != "15" {
		t.Fatalf("limit=10 from 5: %d events, next %q, %v", len(page), rec.Header().Get(kez.NextPageHeader), err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sigchains/ed25519/"+key.Public().Hex()+"?limit=0", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", rec.Code)
	}
	lie.Store(true)
	if _, err := c.Events(context.Background(), key.Public(), 0); !errors.Is(err, sigchain.ErrMalformed) {
		t.Fatalf("pages that do not follow: %v, want ErrMalformed", err)
	}
}
