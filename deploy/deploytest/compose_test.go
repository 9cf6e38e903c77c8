//go:build docker

package deploytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestImageTagsPinned checks that every compose file names the nats image
// of the nats-server version pinned in tools.mod.
func TestImageTagsPinned(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(deployDir, "..", "tools.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/nats-io/nats-server/v2" {
			version = strings.TrimPrefix(f[1], "v")
		}
	}
	if "nats:"+version != natsTag {
		t.Fatalf("tools.mod pins nats-server %s, the tests expect %s", version, natsTag)
	}
	for _, f := range []string{"docker-compose.yml", "cluster/docker-compose.yml"} {
		b, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "image: "+natsTag) {
			t.Errorf("%s does not use image %s", f, natsTag)
		}
	}
}

// singleNodeRate and clusterRate are the registrations/s TestCompose and
// TestCluster measure; whichever runs second logs their ratio.
var singleNodeRate, clusterRate float64

func logRateRatio(t testing.TB) {
	if singleNodeRate > 0 && clusterRate > 0 {
		t.Logf("FIGURE cluster/single registration rate ratio: %.2f", clusterRate/singleNodeRate)
	}
}

// TestCompose runs deploy/docker-compose.yml as an operator would: up on a
// clean machine, two users registered over HTTP who exchange a message
// through NATS, nats-server killed with SIGKILL and restarted, a server
// started before its broker, the whole stack taken down and up again, and
// chat-server scaled to 3.
func TestCompose(t *testing.T) {
	base := freePorts(t, 12)
	s := newStack(t, "kezt", map[string]string{
		"CHAT_PORTS":     fmt.Sprintf("%d-%d", base, base+9),
		"SIG_PORT":       fmt.Sprint(base + 10),
		"NATS_PORT":      fmt.Sprint(base + 11),
		"REGISTER_LIMIT": "1000000",
	}, filepath.Join(deployDir, "docker-compose.yml"))

	took := s.up()
	t.Logf("FIGURE compose cold start to healthy (up -d --wait, images present): %v", took.Round(10*time.Millisecond))
	chat, sig, natsURL := s.url("chat-server", 1, 8080), s.url("sig-server", 1, 7878), s.natsURL("nats")
	for _, u := range []string{chat, sig} {
		if code, body, err := get(u + "/v1/healthz"); code != http.StatusOK {
			t.Fatalf("%s/v1/healthz: %d %s %v", u, code, body, err)
		}
	}
	// nats-server's monitoring answers inside its container only
	// (nats.conf keeps it on loopback): no other container, a compromised
	// sig-server say, reads /connz (every user's key and address). So it
	// cannot be published on the host either.
	checkMonitoringPrivate(t, s.container("nats", 1), s.project+"_default", "nats")
	keysBefore := s.must("run", "--rm", "--no-deps", "init")
	// Each container reads only its own seeds: a compromised sig-server
	// cannot act as the admin, the system account or the callout issuer.
	pubs := publicKeys(t, keysBefore)
	seeds := map[string][]string{
		s.container("chat-server", 1): chatServerSeeds,
		s.container("sig-server", 1):  sigServerSeeds,
		s.container("nats", 1):        nil,
	}
	checkSeeds(t, pubs, seeds)

	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	register(t, chat, alice)
	register(t, chat, bob)
	if err := lookup(chat, alice); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(chat + "/.well-known/webfinger?resource=acct:alice@kez.lat"); code != http.StatusOK {
		t.Fatalf("webfinger: %d", code)
	}
	bnc := connectUser(t, natsURL, bob)
	send(t, bnc, bob, alice, "before the crash")
	bnc.Close()

	t.Run("nats killed", func(t *testing.T) {
		// SIGKILL, no shutdown: with sync_interval always every
		// acknowledged registration and message is on disk.
		s.must("kill", "-s", "SIGKILL", "nats")
		s.must("start", "nats")
		chat = s.waitService("chat-server", 1, 8080, 60*time.Second)
		s.waitService("sig-server", 1, 7878, 60*time.Second)
		for _, u := range []user{alice, bob} {
			if err := lookup(chat, u); err != nil {
				t.Fatal(err)
			}
		}
		anc := connectUser(t, natsURL, alice)
		if got := receive(t, anc, alice); !slices.Equal(got, []string{"before the crash"}) {
			t.Fatalf("alice's inbox after the crash: %q", got)
		}
	})

	t.Run("server started before its broker", func(t *testing.T) {
		// streams.Connect retries the first connection for a minute.
		s.must("stop", "nats")
		s.must("restart", "chat-server")
		time.Sleep(3 * time.Second)
		if u := s.tryURL("chat-server", 1, 8080); u != "" {
			if code, _, _ := get(u + "/v1/healthz"); code == http.StatusOK {
				t.Fatal("healthy without NATS")
			}
		}
		s.must("start", "nats")
		start := time.Now()
		chat = s.waitService("chat-server", 1, 8080, 60*time.Second)
		t.Logf("healthy %v after nats started", time.Since(start).Round(10*time.Millisecond))
		if err := lookup(chat, alice); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("down and up", func(t *testing.T) {
		s.must("down", "-t", "25")
		took := s.up()
		t.Logf("FIGURE compose warm start (volumes kept): %v", took.Round(10*time.Millisecond))
		chat = s.url("chat-server", 1, 8080)
		if keysAfter := s.must("run", "--rm", "--no-deps", "init"); keysAfter != keysBefore {
			t.Fatalf("init changed the keys:\n%s\nthen\n%s", keysBefore, keysAfter)
		}
		for _, u := range []user{alice, bob} {
			if err := lookup(chat, u); err != nil {
				t.Fatal(err)
			}
		}
		anc := connectUser(t, natsURL, alice)
		send(t, anc, alice, bob, "after the restart")
		bnc := connectUser(t, natsURL, bob)
		if got := receive(t, bnc, bob); !slices.Equal(got, []string{"after the restart"}) {
			t.Fatalf("bob's inbox: %q", got)
		}
	})

	t.Run("scale to 3", func(t *testing.T) {
		s.up("--scale", "chat-server=3")
		urls := []string{s.url("chat-server", 1, 8080), s.url("chat-server", 2, 8080), s.url("chat-server", 3, 8080)}
		for _, u := range urls {
			waitHealthy(t, u, 30*time.Second)
			waitLookup(t, u, alice, 10*time.Second)
		}
		carol := newUser(t, "carol")
		register(t, urls[1], carol)
		for _, u := range urls {
			waitLookup(t, u, carol, 10*time.Second)
		}
		// Another replica refuses the handle: one registry across replicas.
		mallory := user{name: "carol", key: newUser(t, "x").key}
		if code, body, _ := post(urls[2]+"/v1/register", registrationBody(t, mallory, "kez.lat")); code != http.StatusConflict {
			t.Fatalf("second registration of carol: %d %s", code, body)
		}
	})

	t.Run("upgrade from one keys volume", func(t *testing.T) {
		// Before each service had its own seeds, init wrote them all into
		// `keys` and every container mounted it: that volume, populated,
		// and none of the per-service ones. The upgrade keeps its keys.
		s.must("down", "-t", "25")
		s.removeVolumes("nats-keys", "chat-server-keys", "sig-server-keys")
		s.up()
		if keysAfter := s.must("run", "--rm", "--no-deps", "init"); keysAfter != keysBefore {
			t.Fatalf("the upgrade changed the keys:\n%s\nthen\n%s", keysBefore, keysAfter)
		}
		checkSeeds(t, pubs, seeds)
		chat = s.url("chat-server", 1, 8080)
		waitLookup(t, chat, alice, 10*time.Second)
		anc := connectUser(t, natsURL, alice)
		send(t, anc, alice, bob, "after the upgrade")
		bnc := connectUser(t, natsURL, bob)
		if got := receive(t, bnc, bob); !slices.Equal(got, []string{"after the upgrade"}) {
			t.Fatalf("bob's inbox: %q", got)
		}
	})

	singleNodeRate = registrationRate(t, s.url("chat-server", 1, 8080), "single", 3*time.Second)
	t.Logf("FIGURE single node: %.0f registrations/s (one sequential client)", singleNodeRate)
	logRateRatio(t)
}

// registrationRate registers handles one after another through base for d.
func registrationRate(t testing.TB, base, prefix string, d time.Duration) float64 {
	t.Helper()
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		register(t, base, newUser(t, fmt.Sprintf("r%s%d", prefix, n)))
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// TestBringYourOwnNATS runs deploy/byo-nats/docker-compose.yml against a
// broker that is not part of it: a nats-server container started on its
// own with nats/nats.conf and the keys the compose file's init wrote.
func TestBringYourOwnNATS(t *testing.T) {
	requireDocker(t)
	id := fmt.Sprintf("kezt-byo-%d", os.Getpid())
	keys := filepath.Join(t.TempDir(), "keys")
	// The containers run as 10001 (docs/operations.md: install -d -o 10001).
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(keys, 10001, 10001); err != nil {
		t.Fatalf("chown the keys folder (the test runs as root): %v", err)
	}
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	docker("network", "create", id)
	t.Cleanup(func() { exec.Command("docker", "network", "rm", id).Run() })

	base := freePorts(t, 12)
	override := filepath.Join(t.TempDir(), "network.yml")
	// The broker lives on another network, here a Docker network of its own.
	os.WriteFile(override, []byte(fmt.Sprintf("networks:\n  default:\n    name: %s\n    external: true\n", id)), 0o644)
	s := newStack(t, "kezt-byo", map[string]string{
		"NATS_URL":       "nats://broker:4222",
		"KEZ_KEYS_DIR":   keys,
		"CHAT_PORTS":     fmt.Sprintf("%d-%d", base, base+9),
		"SIG_PORT":       fmt.Sprint(base + 10),
		"REGISTER_LIMIT": "1000000",
	}, filepath.Join(deployDir, "byo-nats", "docker-compose.yml"), override)

	s.must("run", "--rm", "init")
	for _, f := range []string{"kez-keys.conf", "chat-server.nk", "sig-server.nk", "issuer.nk"} {
		if _, err := os.Stat(filepath.Join(keys, f)); err != nil {
			t.Fatal(err)
		}
	}
	broker := id + "-broker"
	docker("run", "-d", "--name", broker, "--network", id, "--network-alias", "broker",
		"-p", fmt.Sprintf("127.0.0.1:%d:4222", base+11),
		"-v", filepath.Join(deployDir, "..", "nats", "nats.conf")+":/etc/nats/nats.conf:ro",
		"-v", keys+":/etc/nats/keys:ro",
		natsTag, "--config", "/etc/nats/nats.conf")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", "--tail", "30", broker).CombinedOutput()
			t.Logf("broker logs:\n%s", out)
		}
		exec.Command("docker", "rm", "-f", "-v", broker).Run()
	})

	s.up()
	chat, sig := s.url("chat-server", 1, 8080), s.url("sig-server", 1, 7878)
	waitHealthy(t, sig, 10*time.Second)
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	register(t, chat, alice)
	register(t, chat, bob)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", base+11)
	anc := connectUser(t, natsURL, alice)
	send(t, anc, alice, bob, "via your own broker")
	bnc := connectUser(t, natsURL, bob)
	if got := receive(t, bnc, bob); !slices.Equal(got, []string{"via your own broker"}) {
		t.Fatalf("bob's inbox: %q", got)
	}
}
