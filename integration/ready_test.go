//go:build integration

package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/health"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestReadiness: each fault turns readiness red, naming the failing check
// (in the JSON and in kez_ready{check}), and readiness turns green again
// once the fault is gone, with nothing restarted but the broker in the
// broker fault; liveness stays green throughout.
func TestReadiness(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.JetStreamMaxStore = 32 << 20 })
	h := startHome(t, ns, ns.ClientURL(), 1)
	h.adjust = func(c *chatserver.Config) {
		c.Streams.InboxMaxBytes = 1 << 20
		c.ProjectionStall = time.Second
	}
	chat := h.startChat()
	chatURL, sigURL := chat.URL()+"/v1/readyz", h.sigURL+"/v1/readyz"
	waitReadiness(t, chatURL, "", 30*time.Second)
	waitReadiness(t, sigURL, "", 30*time.Second)

	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("stream missing", func(t *testing.T) {
		for _, c := range []struct{ url, stream string }{
			{chatURL, streams.RateLimitStream},
			{chatURL, streams.NetRateLimitStream},
			{sigURL, streams.SigchainRateLimitStream},
		} {
			if err := js.DeleteStream(ctx, c.stream); err != nil {
				t.Fatal(err)
			}
			rep := waitReadiness(t, c.url, "stream:"+c.stream, 5*time.Second)
			if !strings.Contains(rep.Checks["stream:"+c.stream], "missing") {
				t.Errorf("%s: check says %q, want it missing", c.url, rep.Checks["stream:"+c.stream])
			}
			if c.url == chatURL {
				assertMetric(t, chat.URL()+"/metrics", `kez_ready{check="stream:`+c.stream+`"} 0`)
			}
			// Readiness itself has the stream made again.
			waitReadiness(t, c.url, "", 15*time.Second)
			if _, err := js.Stream(ctx, c.stream); err != nil {
				t.Errorf("%s not made again: %v", c.stream, err)
			}
		}
		assertMetric(t, chat.URL()+"/metrics", `kez_ready{check="stream:`+streams.RateLimitStream+`"} 1`)
	})

	t.Run("store full", func(t *testing.T) {
		fillStore(t, js)
		for _, u := range []string{chatURL, sigURL} {
			rep := waitReadiness(t, u, "store", 5*time.Second)
			if !strings.Contains(rep.Checks["store"], "full") {
				t.Errorf("%s: store check says %q, want full", u, rep.Checks["store"])
			}
		}
		if err := js.DeleteStream(ctx, "FILLER"); err != nil {
			t.Fatal(err)
		}
		waitReadiness(t, chatURL, "", 10*time.Second)
		waitReadiness(t, sigURL, "", 10*time.Second)
	})

	t.Run("projection lagging", func(t *testing.T) {
		// The handles bucket refuses new keys: the registration is
		// logged, the projection cannot apply it.
		if status, code, _ := postRegistration(t, chat.URL(), "first"); status != http.StatusCreated {
			t.Fatalf("register: %d %s", status, code)
		}
		// A registration is answered before its bucket writes: the
		// bucket's size is read once they are done.
		handles, err := js.KeyValue(ctx, streams.HandlesBucket)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; {
			if _, err := handles.Get(ctx, "first"); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("first not projected: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		kv, err := js.Stream(ctx, "KV_"+streams.HandlesBucket)
		if err != nil {
			t.Fatal(err)
		}
		orig := kv.CachedInfo().Config
		full := orig
		full.MaxMsgs, full.Discard = int64(kv.CachedInfo().State.Msgs), jetstream.DiscardNew
		if _, err := js.UpdateStream(ctx, full); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); postQuietly(chat.URL(), "lagging") }()
		rep := waitReadiness(t, chatURL, "projection", 10*time.Second)
		if !strings.Contains(rep.Checks["projection"], "behind") {
			t.Errorf("projection check says %q", rep.Checks["projection"])
		}
		if _, err := js.UpdateStream(ctx, orig); err != nil {
			t.Fatal(err)
		}
		waitReadiness(t, chatURL, "", 15*time.Second)
		<-done
	})

	t.Run("callout not subscribed", func(t *testing.T) {
		// The broker drops the callout's connection, again each time it
		// comes back, until readiness names the callout. (A reload that
		// stops admitting its user would be the operator's fault, but
		// nats-server's reload races with connecting clients.)
		stop := make(chan struct{})
		kicked := make(chan struct{})
		go func() {
			defer close(kicked)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				cz, err := ns.Server.Connz(&server.ConnzOptions{})
				if err != nil {
					continue
				}
				for _, c := range cz.Conns {
					if c.Name == "kez-chat-server callout" {
						_ = ns.Server.DisconnectClientByID(c.Cid)
					}
				}
			}
		}()
		rep := waitReadiness(t, chatURL, "callout", 10*time.Second)
		close(stop)
		<-kicked
		if !strings.Contains(rep.Checks["callout"], "down") {
			t.Errorf("callout check says %q", rep.Checks["callout"])
		}
		waitReadiness(t, chatURL, "", 15*time.Second)
	})

	t.Run("broker down", func(t *testing.T) {
		ns.Stop()
		for _, u := range []string{chatURL, sigURL} {
			rep := waitReadiness(t, u, "nats", 10*time.Second)
			if rep.Checks["nats"] != streams.ErrNotConnected.Error() {
				t.Errorf("%s: nats check says %q", u, rep.Checks["nats"])
			}
		}
		// Liveness is not readiness: the process still serves.
		for _, u := range []string{chat.URL(), h.sigURL} {
			if resp, err := http.Get(u + "/v1/livez"); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("%s/v1/livez with the broker down: %v %v", u, resp, err)
			} else {
				resp.Body.Close()
			}
		}
		ns.Restart()
		waitReadiness(t, chatURL, "", 30*time.Second)
		waitReadiness(t, sigURL, "", 30*time.Second)
	})
}

// readiness asks url (a /v1/readyz) once.
func readiness(t *testing.T, url string) (int, health.Report) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var rep health.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("GET %s: %d, body not a readiness report: %v", url, resp.StatusCode, err)
	}
	if (resp.StatusCode == http.StatusOK) != rep.OK() || (rep.OK() != (rep.Status == "ok")) {
		t.Fatalf("GET %s: %d with %+v", url, resp.StatusCode, rep)
	}
	if resp.StatusCode != http.StatusOK && resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET %s: %d without Retry-After", url, resp.StatusCode)
	}
	return resp.StatusCode, rep
}

// waitReadiness polls url until it is ready (failing == "") or until it
// is not ready with failing among the failing checks, for up to d, and
// returns that report.
func waitReadiness(t *testing.T, url, failing string, d time.Duration) health.Report {
	t.Helper()
	end := time.Now().Add(d)
	for {
		_, rep := readiness(t, url)
		if failing == "" && rep.OK() || failing != "" && slices.Contains(rep.Failing, failing) {
			return rep
		}
		if time.Now().After(end) {
			if failing == "" {
				t.Fatalf("%s not ready after %v: %+v", url, d, rep)
			}
			t.Fatalf("%s: check %q not failing after %v: %+v", url, failing, d, rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertMetric checks that the metrics at url have the line want.
func assertMetric(t *testing.T, url, want string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), want+"\n") {
		t.Errorf("metrics lack %q", want)
	}
}

// postQuietly posts a fresh registration of name and ignores the answer
// (for a registration that waits on a stalled projection).
func postQuietly(base, name string) {
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		return
	}
	hd, err := kez.ParseHandle(name, clienttest.Domain)
	if err != nil {
		return
	}
	body, _ := json.Marshal(kez.NewRegistrationRequest(k, hd, time.Now()))
	c := &http.Client{Timeout: 20 * time.Second}
	if resp, err := c.Post(base+"/v1/register", "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
	}
}
