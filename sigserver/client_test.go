package sigserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigchain"
)

// since returns the events with seqno >= since, as an honest server does.
func since(events []sigchain.Event, n uint64) []sigchain.Event {
	out := []sigchain.Event{}
	for _, e := range events {
		if e.Seqno() >= n {
			out = append(out, e)
		}
	}
	return out
}

// chainServer answers every chain GET with serve(since).
func chainServer(t *testing.T, serve func(since uint64) any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		w.Header().Set("Content-Type", "application/json")
		switch v := serve(n).(type) {
		case string:
			w.Write([]byte(v))
		case int:
			w.WriteHeader(v)
			w.Write([]byte(`{"error":"oops","code":"internal"}`))
		default:
			json.NewEncoder(w).Encode(v)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientDetectsTampering(t *testing.T) {
	k := keztest.NewKey(t)
	events := grow(t, k, nil, 4, "honest")
	fork := grow(t, k, events[:3], 1, "fork")[3] // validly signed, another seqno 4

	// The client saw the honest chain and pinned its tail.
	honest := chainServer(t, func(n uint64) any { return since(events, n) })
	c := &client.Sigchains{BaseURL: honest.URL}
	ctx := context.Background()
	st, err := c.Fetch(ctx, k.Public(), sigchain.Pin{})
	if err != nil || st.Tail != events[3].Pin() {
		t.Fatalf("Fetch of the honest chain = %v, %v", st.Tail, err)
	}
	if again, err := c.Fetch(ctx, k.Public(), st.Tail); err != nil || again.Tail != st.Tail {
		t.Fatalf("Fetch pinned = %v, %v", again.Tail, err)
	}
	if again, err := c.Update(ctx, st); err != nil || again.Tail != st.Tail {
		t.Fatalf("Update of an unchanged chain = %v, %v", again.Tail, err)
	}

	forged := func() sigchain.Event {
		// The pinned event with one payload byte changed and its
		// signature kept.
		b := wireOf(t, events[3])
		var w struct{ Payload, Sig []byte }
		json.Unmarshal(b, &w)
		w.Payload = []byte(strings.Replace(string(w.Payload), "honest", "h0nest", 1))
		var e sigchain.Event
		if err := json.Unmarshal(wireForm(w.Payload, w.Sig), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}()
	tampered := []struct {
		name  string
		serve func(since uint64) any
		want  error
	}{
		{"drops the last event", func(n uint64) any { return since(events[:3], n) }, sigchain.ErrRollback},
		{"drops everything", func(uint64) any { return []sigchain.Event{} }, sigchain.ErrRollback},
		{"rewrites the pinned event", func(n uint64) any { return since(append(events[:3:3], fork), n) }, sigchain.ErrRewritten},
		{"forges an event", func(n uint64) any {
			return since(append(events[:3:3], forged), n)
		}, sigchain.ErrBadSignature},
		{"serves another chain", func(n uint64) any { return since(grow(t, keztest.NewKey(t), nil, 4, "other"), n) }, sigchain.ErrWrongChain},
		{"serves garbage", func(uint64) any { return "<html>hello</html>" }, sigchain.ErrMalformed},
		{"serves a broken event", func(uint64) any {
			return `[{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"v":1}`)) + `","sig":""}]`
		}, sigchain.ErrMalformed},
	}
	for _, tt := range tampered {
		t.Run(tt.name, func(t *testing.T) {
			c := &client.Sigchains{BaseURL: chainServer(t, tt.serve).URL}
			_, err := c.Fetch(ctx, k.Public(), st.Tail)
			if !errors.Is(err, tt.want) || errors.Is(err, client.ErrSigchainUnreachable) {
				t.Errorf("Fetch = %v, want %v (a verdict, not unreachable)", err, tt.want)
			}
			_, err = c.Update(ctx, st)
			if !errors.Is(err, tt.want) || errors.Is(err, client.ErrSigchainUnreachable) {
				t.Errorf("Update = %v, want %v", err, tt.want)
			}
		})
	}

	// A server that hides the pinned event behind an exclusive since
	// cannot show it: the update is refused.
	exclusive := &client.Sigchains{BaseURL: chainServer(t, func(n uint64) any { return since(events, n+1) }).URL}
	if _, err := exclusive.Update(ctx, sigchain.State{Key: k.Public(), Tail: events[2].Pin()}); !errors.Is(err, sigchain.ErrWrongSeqno) {
		t.Errorf("Update through an exclusive since = %v, want ErrWrongSeqno", err)
	}

	// Failing to ask is not a verdict.
	failing := &client.Sigchains{BaseURL: chainServer(t, func(uint64) any { return http.StatusServiceUnavailable }).URL}
	_, err = failing.Fetch(ctx, k.Public(), st.Tail)
	var se *client.APIError
	if !errors.As(err, &se) || se.Status != 503 || !errors.Is(err, client.ErrSigchainUnreachable) || errors.Is(err, sigchain.ErrRollback) {
		t.Errorf("Fetch from a failing server = %v, want a 503 APIError matching ErrSigchainUnreachable", err)
	}
	missing := &client.Sigchains{BaseURL: chainServer(t, func(uint64) any { return http.StatusNotFound }).URL}
	if _, err := missing.Fetch(ctx, k.Public(), st.Tail); !errors.As(err, &se) || se.Status != 404 || errors.Is(err, client.ErrSigchainUnreachable) {
		t.Errorf("Fetch answered 404 = %v, want a 404 APIError", err)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	down := &client.Sigchains{BaseURL: gone.URL}
	if _, err := down.Fetch(ctx, k.Public(), st.Tail); !errors.Is(err, client.ErrSigchainUnreachable) || errors.Is(err, sigchain.ErrRollback) {
		t.Errorf("Fetch from a closed server = %v, want ErrUnreachable", err)
	}
}

func TestClientAgainstServer(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	c := &client.Sigchains{BaseURL: srv.URL() + "/"}
	ctx := context.Background()
	k := keztest.NewKey(t)
	events := grow(t, k, nil, 3, "c")

	st, err := c.Fetch(ctx, k.Public(), sigchain.Pin{})
	if err != nil || !st.Tail.IsZero() {
		t.Fatalf("Fetch of an empty chain = %+v, %v", st, err)
	}
	for _, e := range events[:2] {
		stored, err := c.Append(ctx, e)
		if err != nil || stored.Hash() != e.Hash() {
			t.Fatalf("Append seqno %d = %v", e.Seqno(), err)
		}
	}
	if st, err = c.Update(ctx, st); err != nil || st.Tail != events[1].Pin() {
		t.Fatalf("Update = %v, %v", st.Tail, err)
	}
	_, err = c.Append(ctx, grow(t, k, events[:1], 1, "late")[1])
	var se *client.APIError
	if !errors.As(err, &se) || se.Status != http.StatusConflict || se.Code != "wrong_seqno" {
		t.Fatalf("Append on a stale tail = %v, want 409 wrong_seqno", err)
	}
	if _, err := c.Append(ctx, events[2]); err != nil {
		t.Fatal(err)
	}
	if st, err = c.Update(ctx, st); err != nil || st.Tail != events[2].Pin() || len(st.Claims) != 3 {
		t.Fatalf("Update = %+v, %v", st, err)
	}
	if full, err := c.Fetch(ctx, k.Public(), events[1].Pin()); err != nil || full.Tail != st.Tail {
		t.Fatalf("Fetch pinned at 2 = %v, %v", full.Tail, err)
	}
}
