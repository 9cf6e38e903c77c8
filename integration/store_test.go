//go:build integration

package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestStoreFull: while JetStream cannot store (its store full), a
// registration answers within 2 s with 503 store_unavailable and
// Retry-After, a send is refused within 2 s with the door's store_full and
// the CLI says that the home server cannot store and nothing was stored;
// once there is room again both work, with nothing restarted.
func TestStoreFull(t *testing.T) {
	ns := natstest.StartWith(t, func(o *server.Options) { o.JetStreamMaxStore = 32 << 20 })
	h := startHome(t, ns, ns.ClientURL(), 1)
	h.adjust = func(c *chatserver.Config) { c.Streams.InboxMaxBytes = 1 << 20 }
	chat := h.startChat()
	cli := func(name string) *user {
		return &user{t: t, profile: filepath.Join(t.TempDir(), name), server: chat.URL(), keyStore: "file"}
	}
	alice, bob := cli("alice"), cli("bob")
	alice.ok("", "register", "alice", "--i-have-written-it-down")
	bob.ok("", "register", "bob", "--i-have-written-it-down")
	alice.ok("", "send", "@bob", "before")

	// Fill the store: a stream of the operator's, written until
	// JetStream refuses for want of room.
	js, err := jetstream.New(ns.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fillStore(t, js)

	start := time.Now()
	status, code, retry := postRegistration(t, chat.URL(), "full")
	t.Logf("registration with the store full answered %d %s in %v", status, code, time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); status != http.StatusServiceUnavailable || code != "store_unavailable" || retry == "" || took > 2*time.Second {
		t.Errorf("register with the store full: %d %s Retry-After %q in %v; want 503 store_unavailable with Retry-After within 2s", status, code, retry, took)
	}
	start = time.Now()
	_, errw, exit := alice.run("", "send", "@bob", "while full")
	t.Logf("kez-chat send with the store full exited %d in %v", exit, time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); exit == 0 || !strings.Contains(errw, kez.DoorStoreFull) ||
		!strings.Contains(errw, "cannot store messages right now; nothing was stored") || took > 3*time.Second {
		t.Errorf("send with the store full: exit %d in %v:\n%s", exit, took, errw)
	}

	if err := js.DeleteStream(ctx, "FILLER"); err != nil {
		t.Fatal(err)
	}
	if status, code, _ := postRegistration(t, chat.URL(), "roomy"); status != http.StatusCreated {
		t.Errorf("register with room again: %d %s", status, code)
	}
	alice.ok("", "send", "@bob", "after")
	msgs, _, _ := bob.listenOnce()
	if len(msgs) != 2 || msgs[0].Body != "before" || msgs[1].Body != "after" {
		t.Errorf("bob received %+v, want before and after", msgs)
	}
}

// postRegistration posts a fresh registration of name and returns the
// status, the error code (if any) and the Retry-After header.
func postRegistration(t *testing.T, base, name string) (int, string, string) {
	t.Helper()
	_, resp, b := postFreshRegistration(t, base, name)
	var eb struct{ Code string }
	if resp.StatusCode != http.StatusCreated {
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("register %s: %d %s", name, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, eb.Code, resp.Header.Get("Retry-After")
}

// fillStore fills the JetStream store: a stream FILLER of the operator's,
// written until JetStream refuses for want of room. Deleting FILLER
// makes room again.
func fillStore(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	for i := 0; ; i++ {
		_, err := js.Publish(ctx, "filler", chunk)
		if streams.IsStoreFull(err) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("filling the store, message %d: %v", i, err)
		}
	}
}
