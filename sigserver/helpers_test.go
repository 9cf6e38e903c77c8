package sigserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/web/webtest"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/sigserver"
	"kez.lat/kez/streams"
)

func testConfig(ns *natstest.Server) sigserver.Config {
	cfg := clienttest.SigConfig(ns)
	cfg.RequireRegistered = false
	return cfg
}

func startServer(t testing.TB, cfg sigserver.Config) *sigserver.Server {
	t.Helper()
	srv, err := sigserver.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return srv
}

// grow signs n more events onto events (which it never modifies), each an
// add_claim whose value carries tag, so that two calls with different
// tags make competing events.
func grow(t testing.TB, k *kez.PrivateKey, events []sigchain.Event, n int, tag string) []sigchain.Event {
	t.Helper()
	out := append([]sigchain.Event(nil), events...)
	for range n {
		var prev *sigchain.Event
		if len(out) > 0 {
			prev = &out[len(out)-1]
		}
		e, err := sigchain.Next(k, prev, sigchain.TypeAddClaim,
			sigchain.Claim{Kind: "dns", Value: fmt.Sprintf("%s-%d.example", tag, len(out)+1), Proof: "TXT record"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func wireOf(t testing.TB, e sigchain.Event) []byte {
	t.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wireForm builds a wire event from raw payload and signature bytes.
func wireForm(payload, sig []byte) []byte {
	enc := base64.StdEncoding
	return fmt.Appendf(nil, `{"payload":"%s","sig":"%s"}`, enc.EncodeToString(payload), enc.EncodeToString(sig))
}

func chainURL(base string, key kez.PublicKey) string {
	return base + "/v1/sigchains/ed25519/" + key.Hex()
}

func post(t testing.TB, base string, key kez.PublicKey, body []byte) webtest.Answer {
	t.Helper()
	return webtest.Do(t, http.MethodPost, chainURL(base, key)+"/events", body)
}

// appendAll posts events in order, each expected to be created.
func appendAll(t testing.TB, base string, events ...sigchain.Event) {
	t.Helper()
	for _, e := range events {
		if a := post(t, base, e.Chain(), wireOf(t, e)); a.Status != http.StatusCreated {
			t.Fatalf("append seqno %d: %d %s", e.Seqno(), a.Status, a.Body)
		}
	}
}

// fetch GETs a chain (with ?since= if since is not "") and parses it.
func fetch(t testing.TB, base string, key kez.PublicKey, since string) []sigchain.Event {
	t.Helper()
	url := chainURL(base, key)
	if since != "" {
		url += "?since=" + since
	}
	a := webtest.Do(t, http.MethodGet, url, nil)
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s = %d %s", url, a.Status, a.Body)
	}
	var events []sigchain.Event
	if err := json.Unmarshal(a.Body, &events); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, a.Body)
	}
	return events
}

// storedMsgs returns how many messages the sigchain stream holds.
func storedMsgs(t testing.TB, ns *natstest.Server) uint64 {
	t.Helper()
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), streams.SigchainStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
