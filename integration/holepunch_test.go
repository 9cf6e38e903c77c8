//go:build integration

package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/p2p"
	"kez.lat/kez/relay"
)

// TestNetnsHolePunch proves hole punching through NATs (issue 6): alice
// and bob are each behind a NAT of their own (a router namespace that
// masquerades its LAN behind its WAN address and drops what comes in
// unasked, as a home router does), kez-relay is on the "internet"
// between them, and bob's fetch, which can only begin through the relay,
// ends with a direct connection: one DCUtR made, since nothing else could.
//
// The transfer moves too: once the direct connection is up, the fetch
// stops the relayed stream and goes on over the direct connection from
// the last verified byte (p2p.ErrUpgraded), so the relay carries only the
// first part of the file.
//
// It needs root, ip(8) and iptables(8), and skips otherwise.
func TestNetnsHolePunch(t *testing.T) {
	lab := newNATLab(t)
	cli := buildCLI(t)
	relayBin := buildCmd(t, "kez.lat/kez/cmd/kez-relay")
	relayKey := filepath.Join(t.TempDir(), "relay.key")
	key, err := relay.LoadKey(relayKey) // made now, for the relay's address
	if err != nil {
		t.Fatal(err)
	}
	priv, err := p2p.Identity(key)
	if err != nil {
		t.Fatal(err)
	}
	relayID, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", natRelayIP, relayID)
	st := clienttest.StartOn(t, lab.server, func(c *chatserver.Config) { c.PublicRelays = []string{relayAddr} })
	metrics := lab.startRelay(t, relayBin(), relayKey, st.URL())
	bin := cli()
	alice := newNSUser(t, lab.a, bin, st.URL(), "alice")
	bob := newNSUser(t, lab.b, bin, st.URL(), "bob")
	alice.ok(t, "register", "alice", "--i-have-written-it-down")
	bob.ok(t, "register", "bob", "--i-have-written-it-down")
	// libp2p's own account of the hole punch, shown if it fails.
	for _, u := range []*nsUser{alice, bob} {
		u.env = []string{"GOLOG_LOG_LEVEL=error,p2p-holepunch=debug", "GOLOG_LOG_ADD_SOURCE=false"}
	}
	dir := t.TempDir()

	// DCUtR gets a few chances (a file each): it succeeds about 70% of
	// the time in the wild, here every time so far.
	const attempts = 3
	const size = 32 << 20
	var ids []string
	for i := range attempts {
		src := filepath.Join(dir, fmt.Sprintf("f%d.bin", i))
		writeRandom(t, src, size, uint64(i+1))
		ids = append(ids, shareIDOf(t, alice, "@bob", src))
	}
	bob.ok(t, "--json", "listen", "--once")
	listen := alice.start(t, "listen", "--timeout", "2m")
	waitMetric(t, metrics, "kez_relay_reservations", 1, listen)

	// The test must not pass for the wrong reason: alice's node is up,
	// and bob's namespace reaches it neither at her LAN address (which
	// she advertises) nor at her NAT's address and port for it (which
	// the relay saw), until a hole is punched.
	port := tcp4Listening(listen.cmd.Process.Pid)
	if port == 0 {
		t.Fatalf("alice's node does not listen on IPv4 TCP\n%s", listen.errw.String())
	}
	if err := dialFrom(lab.a, net.JoinHostPort(natHomeIP(1), strconv.Itoa(port)), 2*time.Second); err != nil {
		t.Fatalf("alice's node is not listening: %v", err)
	}
	for _, ip := range []string{natHomeIP(1), natWANIP(1)} {
		switch err := dialFrom(lab.b, net.JoinHostPort(ip, strconv.Itoa(port)), time.Second); {
		case err == nil:
			t.Fatalf("bob's namespace reaches alice's node at %s:%d unasked: it is not behind a NAT", ip, port)
		case errors.Is(err, errSetns):
			t.Fatal(err)
		}
	}

	var fetchLog strings.Builder
	for i, id := range ids {
		relayed := relayMetricAt(t, metrics, "kez_relay_bytes_total")
		start := time.Now()
		out, errw, err := bob.run("--json", "fetch", id, "-o", filepath.Join(dir, id+".got"), "--wait", "30s")
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			t.Fatalf("%v\nstdout: %s\nstderr: %s\nalice's listen's stderr: %s", err, out, errw, listen.errw.String())
		}
		var res client.FetchResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("fetch printed %q (stderr %q): %v", out, errw, err)
		}
		carried := relayMetricAt(t, metrics, "kez_relay_bytes_total") - relayed
		t.Logf("fetch %d: route %s in %v; the relay carried %.1f MiB of %d MiB", i+1, res.Route, took, carried/(1<<20), size>>20)
		if res.Route == "direct" {
			// DCUtR punches through while the transfer runs: alone on
			// the machine the relay carries about a quarter of the file,
			// under the load of a full `make test` on 2 cores about half.
			if carried >= size*3/4 {
				t.Fatalf("the relay carried %.1f MiB of a %d MiB file fetched over a direct connection: the transfer did not move to it", carried/(1<<20), size>>20)
			}
			return
		}
		fmt.Fprintf(&fetchLog, "bob's fetch %d (route %q):\n%s\n", i+1, res.Route, errw)
	}
	t.Fatalf("no fetch of %d ended on a direct connection: DCUtR did not punch through\n%s\nalice's listen:\n%s",
		attempts, fetchLog.String(), listen.errw.String())
}

// natRelayIP is kez-relay's address in the internet namespace of a
// natLab.
const natRelayIP = "5.3.0.1"

// natWANIP returns the address of home network n's NAT on the internet
// (n is 1 for a, 2 for b).
func natWANIP(n int) string { return fmt.Sprintf("5.%d.0.2", n) }

// natHomeIP returns the address of the machine in home network n.
func natHomeIP(n int) string { return fmt.Sprintf("192.168.%d.2", n) }

// natLab is two home networks behind NATs and the internet between them.
// Public addresses are made up, in ranges libp2p takes for public
// (manet.IsPublicAddr), and exist only inside the lab's namespaces:
//
//	a (192.168.1.2) -- ra: NAT, WAN 5.1.0.2 --+
//	                                          inet (kez-relay on 5.3.0.1) -- root (the servers)
//	b (192.168.2.2) -- rb: NAT, WAN 5.2.0.2 --+
//
// inet reaches the servers, on an address local to the root namespace,
// through a veth pair, masquerading behind its own address there: the
// root namespace forwards nothing and needs no route back.
type natLab struct {
	inet, ra, rb, a, b string // namespace names
	server             string // the root's address on its link to inet
	inetAddr           string // inet's address on that link
}

// newNATLab makes the namespaces and removes them, with their links and
// what runs in them, at the end of the test. It skips the test when the
// machine does not allow it.
func newNATLab(t *testing.T) *natLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, cmd := range []string{"ip", "iptables", "sysctl", "timeout"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("no %s to make NATs in network namespaces", cmd)
		}
	}
	defer lockNetLabs(t)()
	seq := int(labSeq.Add(1))
	pid := os.Getpid()
	sub := freeNet(t)
	l := &natLab{server: sub + ".0.1", inetAddr: sub + ".0.2"}
	ns := func(role string) string {
		name := fmt.Sprintf("kez%s-%d-%d", role, pid, seq)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Skipf("cannot make a network namespace: ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { undo(t, "ip", "netns", "del", name) })
		mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
		return name
	}
	l.inet, l.ra, l.rb, l.a, l.b = ns("I"), ns("RA"), ns("RB"), ns("HA"), ns("HB")
	// in runs a command in namespace n.
	in := func(n string, args ...string) { mustRun(t, "ip", append([]string{"netns", "exec", n}, args...)...) }
	// link joins namespaces x and y by a veth pair, interface ix with
	// address ax (a CIDR) in x, iy with ay in y.
	link := func(x, ix, ax, y, iy, ay string) {
		mustRun(t, "ip", "-n", x, "link", "add", ix, "type", "veth", "peer", "name", iy, "netns", y)
		for _, e := range [][3]string{{x, ix, ax}, {y, iy, ay}} {
			mustRun(t, "ip", "-n", e[0], "addr", "add", e[2], "dev", e[1])
			mustRun(t, "ip", "-n", e[0], "link", "set", e[1], "up")
		}
	}

	// The root namespace and inet. Interface names have at most 15
	// bytes.
	host := fmt.Sprintf("kz%di%d", pid, seq)
	if out, err := exec.Command("ip", "link", "add", host, "type", "veth", "peer", "name", "up0", "netns", l.inet).CombinedOutput(); err != nil {
		t.Skipf("cannot make a veth pair: %v: %s", err, out)
	}
	// Deleted explicitly: the namespace's end goes with the namespace,
	// but asynchronously.
	t.Cleanup(func() { undo(t, "ip", "link", "del", host) })
	mustRun(t, "ip", "addr", "add", l.server+"/24", "dev", host)
	mustRun(t, "ip", "link", "set", host, "up")
	mustRun(t, "ip", "-n", l.inet, "addr", "add", l.inetAddr+"/24", "dev", "up0")
	mustRun(t, "ip", "-n", l.inet, "link", "set", "up0", "up")
	mustRun(t, "ip", "-n", l.inet, "addr", "add", natRelayIP+"/32", "dev", "lo")
	in(l.inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The first NAT rule tells whether the kernel can (nf_nat).
	if out, err := exec.Command("ip", "netns", "exec", l.inet,
		"iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "up0", "-j", "MASQUERADE").CombinedOutput(); err != nil {
		t.Skipf("cannot make a NAT in a network namespace: %v: %s", err, out)
	}

	// The two home networks.
	for i, r := range []struct{ router, home string }{{l.ra, l.a}, {l.rb, l.b}} {
		n := i + 1
		link(l.inet, fmt.Sprintf("w%c0", "ab"[i]), fmt.Sprintf("5.%d.0.1/24", n), r.router, "wan0", natWANIP(n)+"/24")
		mustRun(t, "ip", "-n", r.router, "route", "add", "default", "via", fmt.Sprintf("5.%d.0.1", n))
		link(r.router, "lan0", fmt.Sprintf("192.168.%d.1/24", n), r.home, "eth0", natHomeIP(n)+"/24")
		mustRun(t, "ip", "-n", r.home, "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", n))
		in(r.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		in(r.router, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE")
		// Nothing comes in unasked: no RST or ICMP answer either, which
		// would close the NAT mapping of a hole punch whose packet
		// arrives before the other side's has opened it.
		for _, chain := range []string{"INPUT", "FORWARD"} {
			in(r.router, "iptables", "-w", "-A", chain, "-i", "wan0", "-m", "conntrack", "--ctstate", "NEW,INVALID", "-j", "DROP")
		}
	}
	return l
}

// startRelay runs kez-relay in inet, listening on natRelayIP, and returns
// the base URL of its /metrics server, once it answers.
func (l *natLab) startRelay(t *testing.T, bin, keyFile, home string) string {
	t.Helper()
	httpAddr := l.inetAddr + ":7879"
	r := startBg(t, func(ctx context.Context) *exec.Cmd {
		// timeout: it ends by itself even if the test process is killed.
		return exec.CommandContext(ctx, "ip", "netns", "exec", l.inet, "timeout", "5m", bin, "serve",
			"--key-file", keyFile, "--listen", "/ip4/"+natRelayIP+"/tcp/4001", "--home-server", home, "--http", httpAddr)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kez-relay's log:\n%s", r.errw.String())
		}
	})
	base := "http://" + httpAddr
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-r.done:
			t.Fatalf("kez-relay exited: %s", r.errw.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("kez-relay does not answer at %s: %v\n%s", base, err, r.errw.String())
		}
	}
}

// waitMetric waits until the relay's metric is at least want; b is shown
// if it does not come.
func waitMetric(t *testing.T, base, name string, want float64, b *nsBg) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if relayMetricAt(t, base, name) >= want {
			return
		}
	}
	t.Fatalf("the relay's %s is not %v after 20s\n%s", name, want, strings.TrimSpace(b.errw.String()))
}
