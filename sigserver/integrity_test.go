package sigserver_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/web/webtest"
)

// TestDamagedSigchainStream: the sigchain stream's message block cut to
// half while the broker is stopped (a crash mid-write, a bad sector) is
// found by the periodic check: appends are refused with 503 log_damaged
// and readiness is red naming the stream and its leader.
func TestDamagedSigchainStream(t *testing.T) {
	ns := natstest.Start(t)
	cfg := testConfig(ns)
	cfg.IntegrityInterval = 100 * time.Millisecond
	srv := startServer(t, cfg)
	alice, bob := keztest.NewKey(t), keztest.NewKey(t)
	appendAll(t, srv.URL(), grow(t, alice, nil, 20, "a")...)
	if a := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil); a.Status != http.StatusOK {
		t.Fatalf("healthz before the damage: %d %s", a.Status, a.Body)
	}

	ns.Stop()
	for _, b := range ns.MessageBlocks("KEZ_SIGCHAINS") {
		st, _ := os.Stat(b)
		if err := os.Truncate(b, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	ns.Restart()

	var last webtest.Answer
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = webtest.Do(t, http.MethodGet, srv.URL()+"/v1/healthz", nil)
		if last.Status == http.StatusServiceUnavailable && strings.Contains(string(last.Body), `"damaged"`) {
			break
		}
	}
	var h struct {
		Integrity struct {
			OK      bool `json:"ok"`
			Streams []struct {
				Stream, Leader, Status string
				Problems               []string
			} `json:"streams"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal(last.Body, &h); err != nil || h.Integrity.OK || len(h.Integrity.Streams) != 1 {
		t.Fatalf("healthz after the damage: %d %s", last.Status, last.Body)
	}
	if s := h.Integrity.Streams[0]; s.Stream != "KEZ_SIGCHAINS" || s.Status != "damaged" || s.Leader != ns.Name() || len(s.Problems) == 0 {
		t.Fatalf("healthz after the damage names %+v", s)
	}
	a := post(t, srv.URL(), bob.Public(), wireOf(t, grow(t, bob, nil, 1, "b")[0]))
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(string(a.Body), `"log_damaged"`) {
		t.Fatalf("append on a damaged stream: %d %s, want 503 log_damaged", a.Status, a.Body)
	}
	if !strings.Contains(string(webtest.Do(t, http.MethodGet, srv.URL()+"/metrics", nil).Body), `kez_log_damaged{stream="KEZ_SIGCHAINS"} 1`) {
		t.Fatal("kez_log_damaged not 1 for KEZ_SIGCHAINS")
	}
}
