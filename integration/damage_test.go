//go:build integration

package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestDamagedFollowerBecomesLeader is the fault of issue 23 against the
// whole stack: on a 3-node R3 cluster with two home-server replicas, one
// node's registry and handle-bucket blocks are damaged while it is
// stopped (cut to half, or one bit flipped), it is started again and the
// leadership of both streams moved onto it. No acknowledged handle may be
// registered again by a new key through either replica, readiness turns
// red naming the stream and its leader, and the scrub reports the damage.
// After the node is taken out of the cluster, wiped and added back, both
// replicas are ready again and every acknowledged handle resolves to its
// own key.
func TestDamagedFollowerBecomesLeader(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated", truncateHalf},
		{"flipped-bit", flipBitInData},
	} {
		t.Run(tt.name, func(t *testing.T) { checkDamagedLeader(t, tt.damage) })
	}
}

func truncateHalf(t *testing.T, path string) {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// flipBitInData flips one bit in the stored JSON of acked30's event (in
// the registry's block) or record (in the bucket's): the first letter of
// the handle, where a bad sector would turn "acked30" into "ecked30".
func flipBitInData(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"acked30@`))
	if i < 0 {
		t.Fatalf("no acked30 in %s", path)
	}
	b[i+1] ^= 0x04
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkDamagedLeader(t *testing.T, damage func(*testing.T, string)) {
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	c := natstest.StartCluster(t, 3)
	h := startHome(t, c.Servers[0], c.ClientURL(), 3)
	a, b := h.startChat(), h.startChat()
	step("cluster and servers started")
	var acked []registration
	for i := range 40 {
		base := a.URL()
		if i%2 == 1 {
			base = b.URL()
		}
		acked = append(acked, registerHTTP(t, base, fmt.Sprintf("acked%d", i)))
	}

	step("120 handles registered")
	admin := c.Servers[0].Connect(natskeys.KeyAdmin)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	damaged := []string{streams.RegistryStream, streams.RegistryAppendOnly[1]} // KEZ_REGISTRY, KV_kez_handles
	// The victim follows both streams.
	var victim *natstest.Server
	for _, s := range c.Servers {
		if leaderOf(t, js, damaged[0]) != s.Name() && leaderOf(t, js, damaged[1]) != s.Name() {
			victim = s
			break
		}
	}
	if victim == nil {
		for _, name := range damaged {
			stepDown(t, admin, name, "")
		}
		t.Fatal("no node follows both streams")
	}
	name := victim.Name()
	storeDir := filepath.Join(victim.Dir, "jetstream-"+name)
	victim.Stop()
	for _, stream := range damaged {
		for _, blk := range victim.MessageBlocks(stream) {
			damage(t, blk)
		}
	}
	victim.Restart()
	for _, stream := range damaged {
		moveLeader(t, js, admin, stream, name)
	}
	step(fmt.Sprintf("%s leads %v with its damaged copies", name, damaged))

	// Refused through every replica, whatever the damaged leader says.
	for _, chat := range []*chatserver.Server{a, b} {
		waitUnready(t, chat.URL(), damaged, name)
	}
	step("readiness red on both replicas")
	for i, r := range acked {
		for _, chat := range []*chatserver.Server{a, b} {
			_, status, body := tryRegister(t, chat.URL(), r.handle)
			if status == http.StatusCreated {
				t.Fatalf("acknowledged handle %s registered again by a new key through %s", r.handle, chat.URL())
			}
			if i == 0 && (status != http.StatusServiceUnavailable || !strings.Contains(body, `"log_damaged"`)) {
				t.Errorf("registration on a damaged log: %d %s, want 503 log_damaged", status, body)
			}
		}
	}
	step("every acknowledged handle refused")
	res, err := chatserver.Scrub(context.Background(), js, chatserver.ScrubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	step("scrub found the damage")
	if res.OK || !scrubFound(res, damaged, name) {
		t.Fatalf("scrub with %s leading damaged copies: %+v", name, res)
	}

	// Take the node out, wipe its store, add it back: it catches up from
	// the healthy majority.
	victim.Stop()
	removePeer(t, c.Servers, name)
	if err := os.RemoveAll(storeDir); err != nil {
		t.Fatal(err)
	}
	victim.Restart()
	waitBroker(t, c.Servers)
	step("node removed, wiped and added back")
	for _, chat := range []*chatserver.Server{a, b} {
		waitHealthz(t, chat.URL(), 90*time.Second)
		for _, r := range acked {
			if err := lookupHTTP(chat.URL(), r); err != nil {
				t.Error(err)
			}
		}
	}
	step("both replicas ready, every handle resolves to its key")
	res, err = chatserver.Scrub(context.Background(), js, chatserver.ScrubOptions{})
	if err != nil || !res.OK {
		t.Fatalf("scrub after the repair: %+v, %v", res, err)
	}
	registerHTTP(t, a.URL(), "after_repair")
}

// scrubFound reports whether res names one of streams, led by leader,
// damaged.
func scrubFound(res chatserver.ScrubResult, streams []string, leader string) bool {
	for _, s := range res.Streams {
		if slices.Contains(streams, s.Stream) && s.Leader == leader && s.Status == "damaged" && len(s.Problems) > 0 {
			return true
		}
	}
	return false
}

func leaderOf(t *testing.T, js jetstream.JetStream, stream string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return ""
	}
	if ci := s.CachedInfo().Cluster; ci != nil {
		return ci.Leader
	}
	return ""
}

// stepDown asks stream's leader to step down, in favour of preferred if
// set.
func stepDown(t *testing.T, nc *nats.Conn, stream, preferred string) {
	t.Helper()
	body := []byte("{}")
	if preferred != "" {
		body = []byte(`{"placement":{"preferred":"` + preferred + `"}}`)
	}
	nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, body, 5*time.Second)
}

// moveLeader moves stream's leadership onto node.
func moveLeader(t *testing.T, js jetstream.JetStream, nc *nats.Conn, stream, node string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for leaderOf(t, js, stream) != node {
		if time.Now().After(deadline) {
			t.Fatalf("%s still led by %q, not %s", stream, leaderOf(t, js, stream), node)
		}
		stepDown(t, nc, stream, node)
		time.Sleep(500 * time.Millisecond)
	}
}

// removePeer removes node from the JetStream cluster (nats server cluster
// peer-remove), asked of the system account of a running node.
func removePeer(t *testing.T, nodes []*natstest.Server, node string) {
	t.Helper()
	for _, s := range nodes {
		if s.Name() == node || !s.Running() {
			continue
		}
		sys := s.Connect(natskeys.KeySys)
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err := sys.Request("$JS.API.SERVER.REMOVE", []byte(`{"peer":"`+node+`"}`), 5*time.Second)
			if err == nil && !bytes.Contains(m.Data, []byte(`"error"`)) {
				return
			}
			if time.Now().After(deadline) {
				if m != nil {
					t.Fatalf("peer-remove %s: %v %s", node, err, m.Data)
				}
				t.Fatalf("peer-remove %s: %v", node, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// waitUnready waits until base's readiness is red and names one of
// streams damaged, with its leader.
func waitUnready(t *testing.T, base string, streams []string, leader string) {
	t.Helper()
	ok, last := pollHealthz(base, 30*time.Second, func(status int, b []byte) bool {
		var h struct {
			Integrity struct {
				OK      bool `json:"ok"`
				Streams []struct {
					Stream   string   `json:"stream"`
					Leader   string   `json:"leader"`
					Status   string   `json:"status"`
					Problems []string `json:"problems"`
				} `json:"streams"`
			} `json:"integrity"`
		}
		if status != http.StatusServiceUnavailable || json.Unmarshal(b, &h) != nil || h.Integrity.OK {
			return false
		}
		for _, s := range h.Integrity.Streams {
			if slices.Contains(streams, s.Stream) && s.Leader == leader && s.Status == "damaged" && len(s.Problems) > 0 {
				t.Logf("%s readiness: %s (leader %s) damaged: %s", base, s.Stream, s.Leader, strings.Join(s.Problems, "; "))
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("%s readiness never named %v (leader %s) damaged: %s", base, streams, leader, last)
	}
}

// tryRegister registers name with a new key and returns the
// registration tried and the answer.
func tryRegister(t *testing.T, base, name string) (registration, int, string) {
	t.Helper()
	r, resp, body := postFreshRegistration(t, base, name)
	return r, resp.StatusCode, string(body)
}

// postFreshRegistration posts a registration of name with a new key and
// returns the registration tried, the answer and its body.
func postFreshRegistration(t *testing.T, base, name string) (registration, *http.Response, []byte) {
	t.Helper()
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := postKeyRegistration(t, base, k, name)
	return registration{handle: name, key: k.Public()}, resp, b
}

// registerKey registers name with a new key and returns the key.
func registerKey(t *testing.T, base, name string) *kez.PrivateKey {
	t.Helper()
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postKeyRegistration(t, base, k, name); resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: %d %s", name, resp.StatusCode, body)
	}
	return k
}

// postKeyRegistration posts a registration of name with k and returns the
// answer and its body.
func postKeyRegistration(t *testing.T, base string, k *kez.PrivateKey, name string) (*http.Response, []byte) {
	t.Helper()
	hd, err := kez.ParseHandle(name, clienttest.Domain)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(kez.NewRegistrationRequest(k, hd, time.Now()))
	resp, err := http.Post(base+"/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestTamperedBucketFailsClosed: the key-index bucket holds an entry no
// event of the log made (written by hand, or a damaged store), binding
// a key to another handle. The registration of that key is stored, but
// its projection is refused: readiness names the bucket damaged, and
// registrations are refused (503 log_damaged) instead of being answered
// while the projection stands still. Once the entry is put right, the
// replica is ready again by itself.
func TestTamperedBucketFailsClosed(t *testing.T) {
	st := clienttest.Start(t)
	base := st.URL()
	registerHTTP(t, base, "before")
	js, err := jetstream.New(st.NATS.Connect(natskeys.KeyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, err := js.KeyValue(ctx, streams.KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Put(ctx, k.Public().Hex(), []byte("mallory")); err != nil {
		t.Fatal(err)
	}
	// The log has no claim on k: the registration itself is stored.
	if resp, body := postKeyRegistration(t, base, k, "victim"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("register victim: %d %s", resp.StatusCode, body)
	}
	bucket := "KV_" + streams.KeysBucket
	waitUnready(t, base, []string{bucket}, st.NATS.Name())
	_, status, body := tryRegister(t, base, "after")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"log_damaged"`) {
		t.Fatalf("registration with the projection refused: %d %s, want 503 log_damaged", status, body)
	}
	if e, err := keys.Get(ctx, k.Public().Hex()); err != nil || string(e.Value()) != "mallory" {
		t.Fatalf("the tampered entry: %v, %v; want it left as found", e, err)
	}

	// The operator puts the entry right (here: deletes it; a rebuild does
	// the same for every entry): the projector writes it from the log,
	// the damage it reported is withdrawn and registrations go on, with
	// no restart.
	if err := keys.Delete(ctx, k.Public().Hex()); err != nil {
		t.Fatal(err)
	}
	waitHealthz(t, base, 30*time.Second)
	if err := lookupKeyHTTP(base, k.Public(), "victim"); err != nil {
		t.Error(err)
	}
	registerHTTP(t, base, "after_repair")
}
