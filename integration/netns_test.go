//go:build integration

package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/keztest"
	"kez.lat/kez/relay"
	"kez.lat/kez/relay/relaytest"
)

// TestNetnsRelay proves the relay fallback across a real network
// boundary (issue 6): alice and bob run the kez-chat binary in two Linux
// network namespaces that reach the servers and kez-relay but not each
// other, and bob's plain fetch (not --relay-only) falls back to the relay
// by itself. Then a link between the namespaces lets the same fetch go
// direct.
//
// It needs root and ip(8) (and iptables(8) when the host forwards IPv4),
// and skips otherwise.
func TestNetnsRelay(t *testing.T) {
	lab := newNetLab(t)
	// Built while the servers start: linking takes seconds.
	cli := buildCLI(t)
	var homeURL atomic.Value
	rl := startRelayOn(t, lab.server, &homeURL)
	relayAddr := rl.Addrs()[0].String()
	st := clienttest.StartOn(t, lab.server, func(c *chatserver.Config) { c.PublicRelays = []string{relayAddr} })
	homeURL.Store(st.URL())
	bin := cli()
	alice := newNSUser(t, lab.a, bin, st.URL(), "alice")
	bob := newNSUser(t, lab.b, bin, st.URL(), "bob")
	alice.ok(t, "register", "alice", "--i-have-written-it-down")
	bob.ok(t, "register", "bob", "--i-have-written-it-down")
	dir := t.TempDir()

	// transfer shares a file from alice to bob, runs alice's listen (her
	// node on every interface of her namespace, advertising them and her
	// relay circuit), and returns the route of bob's fetch once check has
	// seen alice's node listening on port.
	transfer := func(t *testing.T, name string, seed uint64, check func(t *testing.T, port int)) string {
		src := filepath.Join(dir, name)
		want := writeRandom(t, src, 4<<20, seed)
		id := shareIDOf(t, alice, "@bob", src)
		if out, _ := bob.ok(t, "--json", "listen", "--once"); !strings.Contains(out, id) {
			t.Fatalf("bob's listen --once printed %q, want the announcement of %s", out, id)
		}
		// --timeout: it ends by itself even if the test process is killed
		// (a test timeout runs no cleanup). Not Pdeathsig: dialFrom ends
		// threads, and the signal follows the thread that started the
		// child, not the process.
		listen := alice.start(t, "listen", "--timeout", "2m")
		port := waitNode(t, listen, lab.aAddr)
		check(t, port)
		got := filepath.Join(dir, name+".got")
		start := time.Now()
		out, errw, err := bob.run("--json", "fetch", id, "-o", got, "--wait", "1m")
		t.Logf("bob's fetch took %v", time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%v\nstdout: %s\nstderr: %s\nalice's listen's stderr: %s", err, out, errw, listen.errw.String())
		}
		var res client.FetchResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("fetch printed %q (stderr %q): %v", out, errw, err)
		}
		if keztest.SumFile(t, got) != want {
			t.Fatal("fetched file differs from the shared one")
		}
		if _, errw, code := listen.stop(); code != 0 {
			t.Fatalf("alice's listen: exit %d\n%s", code, errw)
		}
		return res.Route
	}

	t.Run("relayed", func(t *testing.T) {
		opened := relayMetric(t, rl, "kez_relay_circuits_opened_total")
		carried := relayMetric(t, rl, "kez_relay_bytes_total")
		route := transfer(t, "relayed.bin", 1, func(t *testing.T, port int) {
			// The test must not pass for the wrong reason: alice's node
			// is up (the root namespace reaches it) and bob's namespace
			// cannot reach it.
			nodeAddr := net.JoinHostPort(lab.aAddr, strconv.Itoa(port))
			if err := dialFrom("", nodeAddr, 2*time.Second); err != nil {
				t.Fatalf("alice's node is not listening: %v", err)
			}
			switch err := dialFrom(lab.b, nodeAddr, 2*time.Second); {
			case err == nil:
				t.Fatalf("bob's namespace reaches alice's node at %s: the namespaces are not isolated", nodeAddr)
			case errors.Is(err, errSetns):
				t.Fatal(err)
			}
		})
		// Deterministic: DCUtR (hole punching, on in both nodes) could
		// only upgrade the relayed connection by a direct dial between
		// the namespaces, and neither has a route to the other (no link,
		// no forwarding between their subnets). Its service does not
		// even start here: a host needs a public address for that.
		if route != "relayed" {
			t.Fatalf("route %q, want relayed", route)
		}
		if n := relayMetric(t, rl, "kez_relay_circuits_opened_total"); n <= opened {
			t.Fatalf("the relay opened no circuit (%v before, %v after)", opened, n)
		}
		if b := relayMetric(t, rl, "kez_relay_bytes_total") - carried; b < 4<<20 {
			t.Fatalf("the relay carried %v bytes, want at least the file's 4 MiB", b)
		}
	})

	t.Run("direct", func(t *testing.T) {
		// A link of their own between the namespaces: no forwarding
		// through the host involved.
		lab.link(t)
		relayed := relayMetric(t, rl, "kez_relay_bytes_total")
		route := transfer(t, "direct.bin", 2, func(t *testing.T, port int) {
			if err := dialFrom(lab.b, net.JoinHostPort(lab.abAddr, strconv.Itoa(port)), 2*time.Second); err != nil {
				t.Fatalf("bob's namespace does not reach alice's node over their link: %v", err)
			}
		})
		if route != "direct" {
			t.Fatalf("route %q, want direct", route)
		}
		// The bytes came over the link, not through the relay (which
		// libp2p would dial too had the direct dial taken over 500 ms).
		if b := relayMetric(t, rl, "kez_relay_bytes_total") - relayed; b >= 4<<20 {
			t.Fatalf("the relay carried %v bytes of a direct transfer", b)
		}
	})
}

// netLab is two network namespaces, a and b, each linked to the root
// namespace by a veth pair with the root side as default gateway. The
// servers listen on server, the root end of a's link: an address local to
// the root namespace, so both namespaces reach it without the host
// forwarding anything. Packets between a and b would need forwarding,
// which is off or dropped.
type netLab struct {
	a, b   string // namespace names
	server string
	aAddr  string // a's address on its link to the root namespace
	abAddr string // a's address on the a-b link, once link made it
	net    string // "10.N": the /16 of the links to the root namespace
}

// labSeq makes the names of each lab unique within the process (the
// pid, across processes), so that a crashed run cannot break the next.
var labSeq atomic.Int64

// newNetLab makes the namespaces and removes them, their links and the
// firewall rules at the end of the test. It skips the test when the
// machine does not allow it.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8) to make network namespaces")
	}
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Skipf("cannot tell whether the host forwards IPv4: %v", err)
	}
	forwarding := strings.TrimSpace(string(fwd)) != "0"
	if forwarding {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Skip("the host forwards IPv4 and there is no iptables(8) to keep the namespaces apart")
		}
	}
	defer lockNetLabs(t)()
	seq := int(labSeq.Add(1))
	pid := os.Getpid()
	l := &netLab{
		a:   fmt.Sprintf("kezA-%d-%d", pid, seq),
		b:   fmt.Sprintf("kezB-%d-%d", pid, seq),
		net: freeNet(t),
	}
	l.server, l.aAddr = l.net+".1.1", l.net+".1.2"
	if out, err := exec.Command("ip", "netns", "add", l.a).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { undo(t, "ip", "netns", "del", l.a) })
	mustRun(t, "ip", "netns", "add", l.b)
	t.Cleanup(func() { undo(t, "ip", "netns", "del", l.b) })
	for i, ns := range []string{l.a, l.b} {
		// Interface names have at most 15 bytes.
		host := fmt.Sprintf("kz%d%c%d", pid, "ab"[i], seq)
		if out, err := exec.Command("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot make a veth pair: %v: %s", err, out)
		}
		// Deleted explicitly: the namespace's end goes with the
		// namespace, but asynchronously.
		t.Cleanup(func() { undo(t, "ip", "link", "del", host) })
		sub := fmt.Sprintf("%s.%d", l.net, i+1)
		mustRun(t, "ip", "addr", "add", sub+".1/24", "dev", host)
		mustRun(t, "ip", "link", "set", host, "up")
		mustRun(t, "ip", "-n", ns, "addr", "add", sub+".2/24", "dev", "eth0")
		mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
		mustRun(t, "ip", "-n", ns, "route", "add", "default", "via", sub+".1")
	}
	if forwarding {
		// The host forwards (Docker turns it on): drop whatever would
		// go from one namespace to the other, ahead of every other rule
		// (never touching them or the sysctl).
		for _, dir := range [][2]string{{".1.0/24", ".2.0/24"}, {".2.0/24", ".1.0/24"}} {
			rule := []string{"FORWARD", "-s", l.net + dir[0], "-d", l.net + dir[1],
				"-m", "comment", "--comment", labComment + strconv.Itoa(pid), "-j", "DROP"}
			mustRun(t, "iptables", append([]string{"-w", "-I", rule[0], "1"}, rule[1:]...)...)
			t.Cleanup(func() { undo(t, "iptables", append([]string{"-w", "-D"}, rule...)...) })
		}
	}
	return l
}

// lockNetLabs sweeps what killed runs left and takes the lock under
// which a lab chooses its subnet and adds its addresses, so that runs at
// the same time (two make test) do not pick the same one; the kernel
// drops the lock if the process dies. It returns the unlock.
func lockNetLabs(t *testing.T) func() {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "kez-netns-test.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		t.Fatal(err)
	}
	sweepNetLabs(t)
	return func() { lock.Close() }
}

// labComment, then the pid, marks the firewall rules of a lab.
const labComment = "kez-netns-test-"

// labName matches the namespace names of labs: kez<ROLE>-<pid>-<seq>
// (kezA-, kezB-; kezI-, kezRA-... of TestNetnsHolePunch).
var labName = regexp.MustCompile(`^kez[A-Z]+-([0-9]+)-([0-9]+)$`)

// sweepNetLabs removes what labs of processes that are gone left behind
// (killed by a test timeout, where cleanups do not run): namespaces with
// their links and the processes still running in them, and firewall
// rules. A live process's labs are left alone.
func sweepNetLabs(t *testing.T) {
	t.Helper()
	gone := func(pid string) bool {
		_, err := os.Stat("/proc/" + pid)
		return errors.Is(err, os.ErrNotExist)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m := labName.FindStringSubmatch(f[0]); m != nil && gone(m[1]) {
			t.Logf("removing namespace %s of a run that is gone", f[0])
			// A process in it (kez-relay) would keep it alive unnamed.
			pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
			sweep(t, "ip", "netns", "del", f[0])
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return
	}
	out, _ = exec.Command("iptables", "-w", "-S", "FORWARD").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		for _, w := range f {
			if pid, ok := strings.CutPrefix(w, labComment); ok && gone(pid) {
				t.Logf("removing firewall rule %q of a run that is gone", line)
				sweep(t, "iptables", append([]string{"-w", "-D"}, f[1:]...)...)
				break
			}
		}
	}
}

// sweep runs a command removing a leftover, and logs if it fails.
func sweep(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Logf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// link connects a and b directly with a veth pair of their own, on
// private addresses (10.N.3.0/24) as on a LAN; it goes with the
// namespaces.
func (l *netLab) link(t *testing.T) {
	t.Helper()
	mustRun(t, "ip", "-n", l.a, "link", "add", "ab0", "type", "veth", "peer", "name", "ba0", "netns", l.b)
	l.abAddr = l.net + ".3.1"
	mustRun(t, "ip", "-n", l.a, "addr", "add", l.abAddr+"/24", "dev", "ab0")
	mustRun(t, "ip", "-n", l.b, "addr", "add", l.net+".3.2/24", "dev", "ba0")
	mustRun(t, "ip", "-n", l.a, "link", "set", "ab0", "up")
	mustRun(t, "ip", "-n", l.b, "link", "set", "ba0", "up")
}

// freeNet returns "10.N" for an N whose 10.N.0.0/16 overlaps no address
// or route of the root namespace.
func freeNet(t *testing.T) string {
	t.Helper()
	var used []*net.IPNet
	for _, args := range [][]string{{"-4", "-o", "addr"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Skipf("ip %s: %v", strings.Join(args, " "), err)
		}
		for _, f := range strings.Fields(string(out)) {
			if _, n, err := net.ParseCIDR(f); err == nil {
				used = append(used, n)
			} else if ip := net.ParseIP(f); ip != nil {
				used = append(used, &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)})
			}
		}
	}
next:
	for _, n := range rand.Perm(64) {
		p := fmt.Sprintf("10.%d", 64+n)
		_, cand, _ := net.ParseCIDR(p + ".0.0/16")
		for _, u := range used {
			if cand.Contains(u.IP) || u.Contains(cand.IP) {
				continue next
			}
		}
		return p
	}
	t.Skip("no free 10.N.0.0/16 for the test's namespaces")
	return ""
}

// mustRun runs a command and stops the test if it fails.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// undo runs a command of a cleanup: if it fails, the test fails (it left
// something behind) and the other cleanups still run.
func undo(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// errSetns: dialFrom could not enter the namespace (it dialled nothing).
var errSetns = errors.New("cannot enter the network namespace")

// dialFrom dials TCP address addr from network namespace ns (the test's
// own if ""), closes the connection and returns the dial's error, or one
// wrapping errSetns.
func dialFrom(ns, addr string, timeout time.Duration) error {
	if ns == "" {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			c.Close()
		}
		return err
	}
	errc := make(chan error, 1)
	go func() {
		// The thread switched namespace is never unlocked: it exits with
		// this goroutine, so nothing else ever runs in ns.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- fmt.Errorf("%w: %w", errSetns, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("%w: setns %s: %w", errSetns, ns, err)
			return
		}
		// The socket belongs to the namespace of the thread making it.
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	return <-errc
}

// startRelayOn runs kez-relay in-process, listening on host, for the home
// server whose URL home will return; its log is shown if the test fails.
func startRelayOn(t *testing.T, host string, home *atomic.Value) *relay.Service {
	t.Helper()
	var log syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kez-relay's log:\n%s", log.String())
		}
	})
	return relaytest.Start(t, host, home, slog.New(slog.NewTextHandler(&log, nil)))
}

// relayMetric returns the value of an unlabelled series of the relay's
// /metrics.
func relayMetric(t *testing.T, r *relay.Service, name string) float64 {
	t.Helper()
	return relayMetricAt(t, r.HTTPURL(), name)
}

// relayMetricAt returns the value of an unlabelled series of /metrics of
// the relay whose HTTP server is at base (http://host:port).
func relayMetricAt(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("the relay's /metrics has no %s", name)
	return 0
}

// buildCLI starts building kez-chat into a temporary folder and returns
// a function that waits for the build and returns the binary's path.
func buildCLI(t *testing.T) func() string {
	t.Helper()
	return buildCmd(t, "kez.lat/kez/cmd/kez-chat")
}

// buildCmd starts building the command pkg into a temporary folder and
// returns a function that waits for the build and returns the binary's
// path.
func buildCmd(t *testing.T, pkg string) func() string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	var out []byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err = exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	}()
	t.Cleanup(func() { <-done })
	return func() string {
		t.Helper()
		<-done
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
}

// nsUser is one CLI profile whose commands run the kez-chat binary in a
// network namespace.
type nsUser struct {
	ns, bin string
	profile string
	server  string
	home    string   // $HOME
	env     []string // more environment variables
}

func newNSUser(t *testing.T, ns, bin, server, name string) *nsUser {
	return &nsUser{ns: ns, bin: bin, profile: filepath.Join(t.TempDir(), name), server: server, home: t.TempDir()}
}

// command returns the command running kez-chat with args in u's
// namespace, its profile and server. The servers are plaintext on the
// lab's private link, not loopback: --insecure.
func (u *nsUser) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", u.ns, u.bin, "--profile", u.profile, "--server", u.server,
		"--domain", clienttest.Domain, "--key-store", "file", "--insecure"}, args...)
	c := exec.CommandContext(ctx, "ip", full...)
	// No KEZ_* setting of the machine (KEZ_CHAT_NO_FILES,
	// KEZ_CHAT_RELAY_ONLY) changes what is tested; no real config folder
	// or keyring is touched.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEZ_") && !strings.HasPrefix(kv, "DBUS_SESSION_BUS_ADDRESS=") &&
			!strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, "HOME="+u.home, "XDG_CONFIG_HOME="+filepath.Join(u.home, ".config"))
	c.Env = append(c.Env, u.env...)
	return c
}

// run runs kez-chat and returns its stdout, stderr and error.
func (u *nsUser) run(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := u.command(ctx, args...)
	var out, errw syncBuffer
	c.Stdout, c.Stderr = &out, &errw
	err := c.Run()
	if err != nil {
		err = fmt.Errorf("kez-chat %s in %s: %w", strings.Join(args, " "), u.ns, err)
	}
	return out.String(), errw.String(), err
}

// ok runs kez-chat and fails the test unless it exits 0.
func (u *nsUser) ok(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, errw, err := u.run(args...)
	if err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, out, errw)
	}
	return out, errw
}

// nsBg is kez-chat running in the background.
type nsBg struct {
	cmd       *exec.Cmd
	out, errw syncBuffer
	cancel    context.CancelFunc
	done      chan struct{}
}

// start runs kez-chat in the background until stop, or the end of the
// test.
func (u *nsUser) start(t *testing.T, args ...string) *nsBg {
	t.Helper()
	return startBg(t, func(ctx context.Context) *exec.Cmd { return u.command(ctx, args...) })
}

// startBg runs the command that cmd returns (for ctx) in the background
// until stop, or the end of the test. It must be run by ip netns exec, or
// be the program itself: stop interrupts the process it starts.
func startBg(t *testing.T, cmd func(ctx context.Context) *exec.Cmd) *nsBg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b := &nsBg{cancel: cancel, done: make(chan struct{})}
	b.cmd = cmd(ctx)
	// ip netns exec execs the program: the interrupt reaches it.
	b.cmd.Cancel = func() error { return b.cmd.Process.Signal(os.Interrupt) }
	b.cmd.WaitDelay = 10 * time.Second
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.errw
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		_ = b.cmd.Wait()
	}()
	t.Cleanup(func() { b.stop() })
	return b
}

// stop interrupts the command and returns its stdout, stderr and exit
// code.
func (b *nsBg) stop() (string, string, int) {
	b.cancel()
	<-b.done
	// Wait reports the cancellation even when kez-chat exited 0 on the
	// interrupt: the process state tells (-1 if it was killed).
	code := -1
	if b.cmd.ProcessState != nil {
		code = b.cmd.ProcessState.ExitCode()
	}
	return b.out.String(), b.errw.String(), code
}

// waitNode waits until the node of listen b listens on TCP over IPv4,
// open at addr (a's address), and returns its port. The port comes from
// the process's own socket table: node.json may hold the IPv6 one, which
// differs on a first run.
func waitNode(t *testing.T, b *nsBg, addr string) int {
	t.Helper()
	var port int
	err := errors.New("no IPv4 TCP socket listening")
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if port = tcp4Listening(b.cmd.Process.Pid); port == 0 {
			continue
		}
		if err = dialFrom("", net.JoinHostPort(addr, strconv.Itoa(port)), time.Second); err == nil {
			return port
		}
	}
	t.Fatalf("alice's node does not listen at %s:%d after 30s: %v\nlisten's stderr: %s", addr, port, err, b.errw.String())
	return 0
}

// tcp4Listening returns the port of a TCP socket listening on every IPv4
// address in the network namespace of process pid, or 0.
func tcp4Listening(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		// sl local_address rem_address st ...; 0A is LISTEN.
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		if hexPort, ok := strings.CutPrefix(f[1], "00000000:"); ok {
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				return int(p)
			}
		}
	}
	return 0
}

// shareIDOf shares path with to and returns the file's ID.
func shareIDOf(t *testing.T, from *nsUser, to, path string) string {
	t.Helper()
	out, _ := from.ok(t, "--json", "share", to, path)
	return sharedID(t, out)
}
