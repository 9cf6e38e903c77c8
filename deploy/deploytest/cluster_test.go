//go:build docker

package deploytest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/streams"
)

// streamLeader waits until the stream's info names the server leading it.
func streamLeader(t testing.TB, js jetstream.JetStream, stream string) string {
	t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		if ci := tryStreamCluster(js, stream); ci != nil && ci.Leader != "" {
			return ci.Leader
		}
	}
	t.Fatalf("no leader of %s", stream)
	return ""
}

// tryStreamCluster is the stream's cluster info (its leader and replicas),
// or nil when no leader answers within 2 s. (Asked over NATS as the admin:
// the nodes' monitoring is private to their containers.)
func tryStreamCluster(js jetstream.JetStream, stream string) *jetstream.ClusterInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info := st.CachedInfo()
	return info.Cluster
}

// currentReplica reports whether node leads the stream or is a current
// replica of it.
func currentReplica(ci *jetstream.ClusterInfo, node string) bool {
	if ci == nil {
		return false
	}
	if ci.Leader == node {
		return true
	}
	for _, p := range ci.Replicas {
		if p.Name == node && p.Current && !p.Offline {
			return true
		}
	}
	return false
}

// attempt is one registration the load client got an answer for.
type attempt struct {
	u        user
	body     []byte
	acked    time.Time // when the 201 came
	tries    int
	errs     []string
	lookupOK bool
}

// loadResult is what the load client saw.
type loadResult struct {
	acked    []attempt
	failed   []attempt // never acknowledged within the retry budget
	badRetry []string  // a retry of the same signed body answered other than 201
	readGaps []time.Duration
	reads    int
}

func mustKey() *kez.PrivateKey {
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// loadClient gives up on a registration after 3 s and sends the same signed
// body again to the other replica (safe: the server answers a retry as it
// answered the first attempt). The server itself waits up to 15 s for the
// broker, so a patient client would see up to 15 s added to the gap.
var loadClient = &http.Client{Timeout: 3 * time.Second}

// runLoad registers handles one after another, alternating between the
// chat-server replicas, retrying the same signed body on the other replica
// after an error, and after each acknowledgement looks up an earlier handle
// through the other replica, until stop is closed.
func runLoad(urls func() []string, stop <-chan struct{}) loadResult {
	var res loadResult
	for i := 0; ; i++ {
		select {
		case <-stop:
			return res
		default:
		}
		u := user{name: fmt.Sprintf("load%d", i), key: mustKey()}
		hd, _ := kez.ParseHandle(u.name, "kez.lat")
		body, _ := json.Marshal(kez.NewRegistrationRequest(u.key, hd, time.Now()))
		a := attempt{u: u, body: body}
		first := time.Now()
		deadline := first.Add(30 * time.Second)
		for time.Now().Before(deadline) {
			us := urls()
			base := us[(i+a.tries)%len(us)]
			a.tries++
			code, resp, err := postWith(loadClient, base+"/v1/register", body)
			if err == nil && code == http.StatusCreated {
				a.acked = time.Now()
				break
			}
			if a.tries > 1 && err == nil && code < 500 {
				res.badRetry = append(res.badRetry, fmt.Sprintf("%s try %d: %d %s", u.name, a.tries, code, resp))
			}
			a.errs = append(a.errs, fmt.Sprintf("try %d at +%v via %s: %d %.80s %v", a.tries, time.Since(first).Round(time.Millisecond), base, code, resp, err))
			time.Sleep(50 * time.Millisecond)
		}
		if a.acked.IsZero() {
			res.failed = append(res.failed, a)
			continue
		}
		res.acked = append(res.acked, a)
		// A read of an earlier handle through the other replica; retried
		// on the other one until served.
		prev := res.acked[len(res.acked)/2].u
		start := time.Now()
		for j := 0; time.Since(start) < 30*time.Second; j++ {
			us := urls()
			if lookup(us[(i+1+j)%len(us)], prev) == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		res.reads++
		res.readGaps = append(res.readGaps, time.Since(start))
	}
}

// maxGap is the longest time between consecutive acknowledgements.
func maxGap(acked []attempt) (time.Duration, time.Time) {
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(acked); i++ {
		if d := acked[i].acked.Sub(acked[i-1].acked); d > gap {
			gap, at = d, acked[i-1].acked
		}
	}
	return gap, at
}

// TestCluster runs deploy/cluster/docker-compose.yml (3 NATS nodes, R3
// streams, 2 chat-server replicas) under a client registering and looking
// up continuously and a user sending messages, then kills with SIGKILL the
// node leading KEZ_REGISTRY and one chat-server replica, and brings both
// back. No acknowledged registration or message may be lost, no handle
// bound twice; the registration gap is the leader-election window.
func TestCluster(t *testing.T) {
	base := freePorts(t, 14)
	env := map[string]string{
		"CHAT_PORTS":     fmt.Sprintf("%d-%d", base, base+9),
		"SIG_PORT":       fmt.Sprint(base + 10),
		"REGISTER_LIMIT": "1000000",
	}
	for n := 1; n <= 3; n++ {
		env[fmt.Sprintf("NATS_%d_PORT", n)] = fmt.Sprint(base + 10 + n)
	}
	natsURLs := fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d", base+11, base+12, base+13)
	s := newStack(t, "kezt-cluster", env, filepath.Join(deployDir, "cluster", "docker-compose.yml"))

	took := s.up()
	t.Logf("FIGURE cluster cold start to healthy (3 nodes, 2 chat-server, 1 sig-server): %v", took.Round(10*time.Millisecond))
	var mu sync.Mutex
	chats := []string{s.url("chat-server", 1, 8080), s.url("chat-server", 2, 8080)}
	urls := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(chats) }
	s.waitService("sig-server", 1, 7878, 30*time.Second)

	// Each container reads only its own seeds, and each node's monitoring
	// is private to its container.
	pubs := publicKeys(t, s.must("run", "--rm", "--no-deps", "init"))
	checkSeeds(t, pubs, map[string][]string{
		s.container("chat-server", 1): chatServerSeeds,
		s.container("chat-server", 2): chatServerSeeds,
		s.container("sig-server", 1):  sigServerSeeds,
		s.container("nats-1", 1):      nil,
		s.container("nats-2", 1):      nil,
		s.container("nats-3", 1):      nil,
	})
	checkMonitoringPrivate(t, s.container("nats-1", 1), s.project+"_default", "nats-1")
	js, err := jetstream.New(s.adminConn(natsURLs))
	if err != nil {
		t.Fatal(err)
	}

	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	register(t, chats[0], alice)
	register(t, chats[1], bob)
	waitLookup(t, chats[0], bob, 10*time.Second)
	waitLookup(t, chats[1], alice, 10*time.Second)

	clusterRate = registrationRate(t, chats[0], "cluster", 3*time.Second)
	t.Logf("FIGURE cluster R3: %.0f registrations/s (one sequential client)", clusterRate)
	logRateRatio(t)

	leader := streamLeader(t, js, streams.RegistryStream)
	inboxLeader := streamLeader(t, js, kez.InboxStream)
	t.Logf("leader of %s: %s, of %s: %s", streams.RegistryStream, leader, kez.InboxStream, inboxLeader)

	// Bob sends messages all along; every acknowledged one must reach alice.
	bnc := connectUser(t, natsURLs, bob)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent []string
	var sendErrs int
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			msg := fmt.Sprintf("m%d", i)
			err := sendErr(bnc, bob, alice, msg)
			mu.Lock()
			if err == nil {
				sent = append(sent, msg)
			} else {
				sendErrs++
			}
			mu.Unlock()
		}
	}()
	var res loadResult
	go func() { defer wg.Done(); res = runLoad(urls, stop) }()

	time.Sleep(3 * time.Second)
	killed := time.Now()
	s.must("kill", "-s", "SIGKILL", leader)
	chat2 := s.container("chat-server", 2)
	if out, err := runDocker("kill", "-s", "KILL", chat2); err != nil {
		t.Fatalf("kill %s: %v %s", chat2, err, out)
	}
	t.Logf("killed %s (leader of %s) and %s with SIGKILL", leader, streams.RegistryStream, chat2)
	newLeader := ""
	for start := time.Now(); time.Since(start) < 30*time.Second && newLeader == ""; time.Sleep(100 * time.Millisecond) {
		if ci := tryStreamCluster(js, streams.RegistryStream); ci != nil && ci.Leader != "" && ci.Leader != leader {
			newLeader = ci.Leader
		}
	}
	t.Logf("FIGURE new leader of %s: %s, named in its stream info %v after the kill", streams.RegistryStream, newLeader, time.Since(killed).Round(10*time.Millisecond))

	time.Sleep(7 * time.Second)
	s.must("start", leader)
	if out, err := runDocker("start", chat2); err != nil {
		t.Fatalf("start %s: %v %s", chat2, err, out)
	}
	back := time.Now()
	u2 := s.waitService("chat-server", 2, 8080, 60*time.Second)
	mu.Lock()
	chats[1] = u2
	mu.Unlock()
	t.Logf("%s and %s back; chat-server-2 healthy after %v", leader, chat2, time.Since(back).Round(10*time.Millisecond))
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	bnc.Close()

	// Every acknowledged registration is there, bound to its key, on both
	// replicas; nothing was refused on a retry of its own body.
	gap, at := maxGap(res.acked)
	var beforeKill int
	for _, a := range res.acked {
		if a.acked.Before(killed) {
			beforeKill++
		}
	}
	slowest := slices.Max(res.readGaps)
	t.Logf("FIGURE load: %d registrations acknowledged (%d before the kill), %d never acknowledged, %d retried bodies refused; longest gap between acknowledgements %v (from %v after the kill)",
		len(res.acked), beforeKill, len(res.failed), len(res.badRetry), gap.Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond))
	t.Logf("FIGURE reads: %d look-ups, slowest served after %v (including retries on the other replica)", res.reads, slowest.Round(time.Millisecond))
	logged := 0
	for _, a := range res.acked {
		if len(a.errs) > 0 && logged < 5 {
			logged++
			t.Logf("%s acknowledged %v after the kill, after %d tries: %q", a.u.name, a.acked.Sub(killed).Round(time.Millisecond), a.tries, a.errs)
		}
	}
	for _, b := range res.badRetry {
		t.Errorf("retry of the same signed body: %s", b)
	}
	for _, f := range res.failed {
		t.Errorf("%s never acknowledged in 30 s: %v", f.u.name, f.errs)
	}
	for _, a := range res.acked {
		for _, c := range urls() {
			if err := lookup(c, a.u); err != nil {
				// A replica may still be projecting right after its restart.
				waitLookup(t, c, a.u, 10*time.Second)
			}
		}
	}
	for _, a := range res.acked[:min(20, len(res.acked))] {
		other := user{name: a.u.name, key: mustKey()}
		if code, body, _ := post(urls()[0]+"/v1/register", registrationBody(t, other, "kez.lat")); code != http.StatusConflict {
			t.Errorf("%s registered again with another key: %d %s", a.u.name, code, body)
		}
	}

	// Every acknowledged message reaches alice.
	anc := connectUser(t, natsURLs, alice)
	got := receive(t, anc, alice)
	have := make(map[string]bool, len(got))
	for _, m := range got {
		have[m] = true
	}
	lost := 0
	for _, m := range sent {
		if !have[m] {
			lost++
		}
	}
	t.Logf("FIGURE messages: %d acknowledged, %d publish errors, %d received, %d acknowledged lost", len(sent), sendErrs, len(got), lost)
	if lost > 0 {
		t.Errorf("%d acknowledged messages lost", lost)
	}
	// The killed node is back in the cluster and current.
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		if currentReplica(tryStreamCluster(js, streams.RegistryStream), leader) &&
			currentReplica(tryStreamCluster(js, kez.InboxStream), leader) {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%s not a current replica after it came back", leader)
		}
	}
}
