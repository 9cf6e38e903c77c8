package relay_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/web/webtest"
)

// TestACLAgainstHomeServer asks a real kez-chat-server (in-process, on
// nats-server with nats/nats.conf) rather than a fake: the look-up path
// and key form the ACL uses are the ones the home server answers.
func TestACLAgainstHomeServer(t *testing.T) {
	ns := natstest.Start(t)
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = "kez.test"
	srv, err := chatserver.Start(context.Background(), cfg, webtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})

	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	h, _ := kez.ParseHandle("alice", "kez.test")
	body, _ := json.Marshal(kez.NewRegistrationRequest(alice, h, time.Now()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := webtest.Do(t, http.MethodPost, srv.URL()+"/v1/register", body)
		if a.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("register: %d %s", a.Status, a.Body)
		}
		time.Sleep(50 * time.Millisecond) // the projection is catching up
	}

	a, _, _ := newACL(t, srv.URL(), nil)
	if !a.AllowReserve(peerID(t, alice), nil) {
		t.Error("registered key denied")
	}
	if a.AllowReserve(peerID(t, bob), nil) {
		t.Error("unregistered key allowed")
	}
}
