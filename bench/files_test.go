//go:build bench

package bench_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
	"kez.lat/kez/relay/relaytest"
)

const (
	// bigFile is the size of the throughput figure's blob; smallFile shows
	// that the CLI's memory does not grow with the file.
	bigFile   = 1 << 30
	smallFile = 64 << 20
	// copyBuf is the buffer of the plain TCP copies: bufio size of the
	// file layer's reads.
	copyBuf = 64 << 10
	mib     = 1 << 20
)

// TestBenchFiles: the file layer moving 1 GiB over loopback, against a
// plain TCP copy of the same file measured interleaved in the same run.
//
//   - p2p: blob.Store.Fetch from a p2p.Node serving a blob.Store (libp2p
//     TCP+TLS+yamux, and QUIC), Bao-verified per 16 KiB group, synced
//     in the background, outboard kept from the verified tree; blob.Get into a
//     synced file (the verified stream kez-chat fetch decrypts); the
//     import (BLAKE3 + Bao outboard + fsync) against a plain copy + fsync.
//   - CLI: the real binary, alice and bob in separate processes: share
//     (encrypt + import) against a plain file copy + fsync; listen
//     (serves the file) and fetch (download + decrypt to the output
//     file), direct (the transport libp2p picks, TCP only, QUIC only) and
//     through kez-relay; peak RSS of each process for 1 GiB and 64 MiB
//     (the target is flat, under 100 MiB), and fetch's wall time.
//   - croc v10 (tools.mod) sending the same file through its own relay
//     on 127.0.0.1, where it builds.
//
// It fails only when bytes differ or a step errs, never on a figure.
// KEZ_BENCH_FILES=p2p runs only the import and p2p rows, =cli only the
// CLI rows of the 1 GiB file (no croc, no 64 MiB file): for iterating.
// KEZ_BENCH_FILES_VARIANT=QUIC keeps only the CLI variants whose name
// holds that text; KEZ_BENCH_FILES_PROFILE=dir has every kez-chat listen
// and fetch of the 1 GiB file write its CPU profile there
// (KEZ_CPU_PROFILE).
func TestBenchFiles(t *testing.T) {
	only := os.Getenv("KEZ_BENCH_FILES")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	start := time.Now()
	want := writeRandomFile(t, src, bigFile, 1)
	t.Logf("wrote %d MiB of test data in %v", bigFile/mib, time.Since(start).Round(time.Millisecond))

	tcpFile := func(size int64, path string) func() float64 {
		return func() float64 { return tcpCopy(t, path, filepath.Join(dir, "tcp-out.bin"), size) }
	}
	base := measured{name: "plain TCP file→file (baseline)"}
	wire := measured{name: "plain TCP memory→discard"}

	udp := udpCounters()
	var p2pRows []measured
	if only != "cli" {
		p2pRows = benchP2P(t, dir, src, want, tcpFile, base, wire)
	}
	if only != "p2p" {
		benchCLIAll(t, dir, src, want, tcpFile, only == "cli", p2pRows)
	}
	logUDP(t, udp)
}

// logUDP reports the UDP socket buffers QUIC had: the system's caps, and
// the datagrams the kernel dropped for a full buffer during the run
// (from before, udpCounters at its start). quic-go wants its sockets'
// SO_RCVBUF and SO_SNDBUF at 7 MiB as the kernel reports them, which is
// twice what it grants under net.core.rmem_max / wmem_max: a cap of
// 3.5 MiB or more satisfies it. Under that it forces the size
// (SO_RCVBUFFORCE, which needs CAP_NET_ADMIN: root) or logs a warning and
// runs with the cap. Drops cost QUIC retransmissions and a smaller
// congestion window: docs/operations.md, "UDP buffers for QUIC".
func logUDP(t *testing.T, before map[string]int64) {
	t.Helper()
	after := udpCounters()
	if before == nil || after == nil {
		t.Log("UDP buffers: /proc/net/snmp not readable; not reported")
		return
	}
	const want = 7 << 20
	enough := func(name string) string {
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			return name + "=?"
		}
		var n int64
		fmt.Sscan(strings.TrimSpace(string(b)), &n)
		switch {
		case 2*n >= want:
			return fmt.Sprintf("%s=%d (enough)", name, n)
		case os.Geteuid() == 0:
			return fmt.Sprintf("%s=%d (too low; forced past it as root)", name, n)
		}
		return fmt.Sprintf("%s=%d (too low: quic-go runs with less)", name, n)
	}
	t.Logf("UDP buffers: %s, %s; datagrams dropped for a full buffer during the run (every process of this network namespace): receive %d, send %d, of %d received",
		enough("rmem_max"), enough("wmem_max"),
		after["RcvbufErrors"]-before["RcvbufErrors"], after["SndbufErrors"]-before["SndbufErrors"], after["InDatagrams"]-before["InDatagrams"])
}

// udpCounters returns the Udp counters of /proc/net/snmp (this network
// namespace, every process), or nil.
func udpCounters() map[string]int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return nil
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Udp:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if names == nil {
			names = fields
			continue
		}
		out := map[string]int64{}
		for i, f := range fields {
			if i < len(names) {
				var n int64
				fmt.Sscan(f, &n)
				out[names[i]] = n
			}
		}
		return out
	}
	return nil
}

// benchP2P measures the import and the p2p rows of TestBenchFiles, and
// returns the p2p rows.
func benchP2P(t *testing.T, dir, src string, want [32]byte, tcpFile func(int64, string) func() float64, base, wire measured) []measured {
	// Import: hash + outboard + sync, against a plain copy + sync.
	as, bs := openStore(t, filepath.Join(dir, "alice")), openStore(t, filepath.Join(dir, "bob"))
	var h blob.Hash
	cp := measured{name: "plain file copy + fsync (import baseline)"}
	imp := measured{name: "blob.Store.Import (BLAKE3+Bao outboard+fsync)"}
	for range rounds {
		cp.add(fileCopy(t, src, filepath.Join(dir, "copy.bin")))
		imp.add(func() float64 {
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			start := time.Now()
			if h, err = as.Import(f, bigFile); err != nil {
				t.Fatal(err)
			}
			return mibPerSec(bigFile, time.Since(start))
		}())
	}
	logFileTable(t, "import of 1 GiB into a blob.Store", []fileRow{cp.row(cp), imp.row(cp)}, measured{})

	// Fetch through libp2p, one sender node per transport.
	bobKey := keztest.NewKey(t)
	bn := newNode(t, p2p.Config{Key: bobKey, Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}, Store: bs})
	allow := func(p kez.PublicKey, got blob.Hash) bool { return got == h && p.Equal(bobKey.Public()) }
	type transport struct {
		m   measured
		src blob.Source
		get bool // blob.Get into a synced file rather than Store.Fetch
	}
	var transports []*transport
	for _, tc := range []struct{ name, listen string }{
		{"p2p Fetch, libp2p TCP+TLS+yamux", "/ip4/127.0.0.1/tcp/0"},
		{"p2p Fetch, libp2p QUIC-v1", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		k := keztest.NewKey(t)
		an := newNode(t, p2p.Config{Key: k, Listen: []string{tc.listen}, Store: as, Allow: allow})
		s, err := bn.Peer(k.Public(), an.Addrs())
		if err != nil {
			t.Fatal(err)
		}
		transports = append(transports, &transport{m: measured{name: tc.name}, src: s},
			&transport{m: measured{name: strings.Replace(tc.name, "p2p Fetch", "p2p Get→file", 1)}, src: s, get: true})
	}
	// The store's own work without the network: Bao decode, writes synced
	// every 32 MiB, outboard kept from the verified tree.
	transports = append(transports, &transport{m: measured{name: "Fetch from a local store (no network)"}, src: as})
	quicCeiling := measured{name: "quic-go alone, memory→discard (QUIC's ceiling)"}
	for i := range rounds {
		base.add(tcpFile(bigFile, src)())
		wire.add(tcpWire(t, bigFile))
		quicCeiling.add(quicWire(t, bigFile))
		for _, tr := range transports {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			if tr.get {
				err := getToFile(ctx, tr.src, h, filepath.Join(dir, "get.bin"))
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", tr.m.name, err)
				}
				tr.m.add(mibPerSec(bigFile, time.Since(start)))
				if i == 0 && keztest.SumFile(t, filepath.Join(dir, "get.bin")) != want {
					t.Fatalf("%s: fetched blob differs from the source", tr.m.name)
				}
				os.Remove(filepath.Join(dir, "get.bin"))
				continue
			}
			err := bs.Fetch(ctx, h, bigFile, tr.src, nil)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", tr.m.name, err)
			}
			tr.m.add(mibPerSec(bigFile, time.Since(start)))
			if i == 0 {
				if got := sumBlob(t, bs, h); got != want {
					t.Fatalf("%s: fetched blob differs from the source", tr.m.name)
				}
			}
			if err := bs.Remove(h); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := []fileRow{base.row(base), wire.row(base), quicCeiling.row(base)}
	for _, tr := range transports {
		rows = append(rows, tr.m.row(base))
	}
	if err := as.Remove(h); err != nil {
		t.Fatal(err)
	}
	logFileTable(t, "file layer, 1 GiB over loopback", rows, wire)
	var out []measured
	for _, tr := range transports {
		out = append(out, tr.m)
	}
	return out
}

// benchCLIAll measures the CLI rows of TestBenchFiles; quick: the 1 GiB
// file only, without croc. p2p are the p2p rows, if measured.
func benchCLIAll(t *testing.T, dir, src string, want [32]byte, tcpFile func(int64, string) func() float64, quick bool, p2p []measured) {

	// The CLI, each side its own process, with a kez-relay for the
	// relayed figure.
	var homeURL atomic.Value
	relayAddr := relaytest.Start(t, "127.0.0.1", &homeURL, slog.New(slog.DiscardHandler)).Addrs()[0].String()
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.PublicRelays = []string{relayAddr} })
	homeURL.Store(st.URL())
	bin := buildCmd(t, "kez-chat")
	alice, bob := newCLIUser(t, bin, st, "alice"), newCLIUser(t, bin, st, "bob")
	alice.ok("register", "alice", "--i-have-written-it-down")
	bob.ok("register", "bob", "--i-have-written-it-down")

	tiny := filepath.Join(dir, "tiny.bin")
	writeRandomFile(t, tiny, 1000, 3)
	var mem []memRow
	var fixed []time.Duration
	var cli measured
	var shareRows []fileRow
	var rows []fileRow
	sizes := []int64{bigFile, smallFile}
	if quick {
		sizes = sizes[:1]
	}
	for _, size := range sizes {
		path := src
		sum := want
		if size != bigFile {
			path = filepath.Join(dir, "small.bin")
			sum = writeRandomFile(t, path, size, 2)
		}
		variants := []cliVariant{{name: "direct, the transport libp2p picks", route: "direct"}}
		if size == bigFile {
			variants = append(variants,
				cliVariant{name: "direct, TCP only", route: "direct", listen: []string{"--p2p-listen", "/ip4/127.0.0.1/tcp/0"}},
				cliVariant{name: "direct, QUIC only", route: "direct", listen: []string{"--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"}},
				cliVariant{name: "through kez-relay", route: "relayed", listen: []string{"--relay-only"}, fetch: []string{"--relay-only"}})
			if only := os.Getenv("KEZ_BENCH_FILES_VARIANT"); only != "" {
				variants = slices.DeleteFunc(variants, func(v cliVariant) bool {
					return !strings.Contains(strings.ToLower(v.name), strings.ToLower(only))
				})
				if len(variants) == 0 {
					t.Fatalf("KEZ_BENCH_FILES_VARIANT=%q matches no variant", only)
				}
			}
			for i := range variants {
				variants[i].profile = os.Getenv("KEZ_BENCH_FILES_PROFILE")
			}
		}
		res := benchCLI(t, alice, bob, path, tiny, size, sum, tcpFile(size, path), func() float64 {
			return fileCopy(t, path, filepath.Join(dir, "copy.bin"))
		}, variants)
		mem = append(mem, res.mem)
		rows = append(rows, res.base.row(res.base))
		for _, f := range res.fetch {
			rows = append(rows, f.row(res.base))
		}
		shareRows = append(shareRows, res.copy.row(res.copy), res.share.row(res.copy))
		if size == bigFile {
			cli = res.fetch[0]
			if quick {
				t.Log("croc: not measured (KEZ_BENCH_FILES=cli)")
			} else if croc := benchCroc(t, path, sum, tcpFile(size, path)); croc != nil {
				rows = append(rows, croc...)
			}
			os.Remove(src)
		}
		os.Remove(path)
		fixed = append(fixed, res.fixed)
	}
	logFileTable(t, "kez-chat CLI end to end (fetch wall time: start to exit, decryption to the output file included)", rows, measured{})
	logFileTable(t, "kez-chat share (encrypt + BLAKE3/Bao + store, synced) against a plain file copy + fsync", shareRows, measured{})
	// The CLI's node dials TCP first between loopback addresses: the
	// p2p Get→file TCP row is the one to compare with.
	if len(p2p) == 5 {
		t.Logf("  CLI fetch 1 GiB (picked) ÷ p2p Get→file TCP above: %.2f, ÷ p2p Get→file QUIC: %.2f",
			cli.row(p2p[1]).ratio, cli.row(p2p[3]).ratio)
	}
	for i, f := range fixed {
		t.Logf("  fixed cost of one fetch command (a 1000-byte file, median): %v with the %s file shared",
			f.Round(time.Millisecond), fmtSize(sizes[i]))
	}

	t.Logf("peak RSS per kez-chat process, target < 100 MiB whatever the size (* = VmHWM polled every %v, else exact from wait4):", rssPoll)
	t.Logf("  %-8s %-30s %-24s %-30s %s", "file", "share (alice: encrypt+import)", "listen (alice: serves)", "fetch (bob: download+decrypt)", "share MiB/s")
	for _, m := range mem {
		t.Logf("  %-8s %-30s %-24s %-30s %.0f", fmtSize(m.size), m.share, m.listen, m.fetch, m.shareRate)
		fmt.Printf("BENCH files peak RSS %s: share %s, listen (sender) %s, fetch (receiver) %s\n", fmtSize(m.size), m.share, m.listen, m.fetch)
	}
}

// measured is one row of MiB/s figures, one per round.
type measured struct {
	name string
	vals []float64
}

func (m *measured) add(v float64) { m.vals = append(m.vals, v) }

// fileRow is a measured row with its ratio to a baseline.
type fileRow struct {
	name             string
	median, min, max float64
	ratio            float64
}

func (m measured) row(base measured) fileRow {
	v := slices.Sorted(slices.Values(m.vals))
	b := slices.Sorted(slices.Values(base.vals))
	return fileRow{name: m.name, median: v[len(v)/2], min: v[0], max: v[len(v)-1], ratio: v[len(v)/2] / b[len(b)/2]}
}

// logFileTable logs rows with their ratio to the first row's baseline and,
// if wire has figures, to it too.
func logFileTable(t *testing.T, title string, rows []fileRow, wire measured) {
	t.Helper()
	t.Logf("%s, MiB/s over %d interleaved rounds:", title, rounds)
	w := 0.0
	if len(wire.vals) > 0 {
		w = wire.row(wire).median
		t.Logf("  %-52s %8s  %-11s  %s  %s", "", "median", "range", "÷ baseline", "÷ TCP memory→discard")
	} else {
		t.Logf("  %-52s %8s  %-11s  %s", "", "median", "range", "÷ baseline")
	}
	for _, r := range rows {
		line := fmt.Sprintf("  %-52s %8.0f  %4.0f–%-5.0f  %10.2f", r.name, r.median, r.min, r.max, r.ratio)
		if w > 0 {
			line += fmt.Sprintf("  %20.2f", r.median/w)
		}
		t.Log(line)
		fmt.Printf("BENCH files %s: %.0f MiB/s (%.0f–%.0f), ratio %.2f\n", strings.TrimSpace(r.name), r.median, r.min, r.max, r.ratio)
	}
}

type memRow struct {
	size                 int64
	share, listen, fetch rss
	shareRate            float64
}

type cliResult struct {
	base, copy, share measured
	fetch             []measured // one per variant
	fixed             time.Duration
	mem               memRow
}

// cliVariant is one way alice serves and bob fetches.
type cliVariant struct {
	name          string
	listen, fetch []string // extra arguments of alice's listen, bob's fetch
	route         string   // the route fetch must report
	profile       string   // a directory for CPU profiles of listen and fetch, if not empty
}

// benchCLI shares path (size bytes, SHA-256 sum) from alice to bob rounds
// times, each after a plain file copy from copyBase, then for each
// variant has bob fetch it rounds times while alice's listen serves it,
// each fetch after a plain TCP copy from baseline.
func benchCLI(t *testing.T, alice, bob *cliUser, path, tiny string, size int64, sum [32]byte, baseline, copyBase func() float64, variants []cliVariant) cliResult {
	t.Helper()
	res := cliResult{
		base:  measured{name: fmt.Sprintf("plain TCP file→file %s (baseline)", fmtSize(size))},
		copy:  measured{name: fmt.Sprintf("plain file copy + fsync %s (baseline)", fmtSize(size))},
		share: measured{name: fmt.Sprintf("kez-chat share %s", fmtSize(size))},
		mem:   memRow{size: size},
	}
	var id string
	for range rounds {
		res.copy.add(copyBase())
		start := time.Now()
		out, share := alice.run("--json", "share", "@bob", path)
		res.share.add(mibPerSec(size, time.Since(start)))
		res.mem.shareRate = max(res.mem.shareRate, mibPerSec(size, time.Since(start)))
		if share.kib > res.mem.share.kib {
			res.mem.share = share
		}
		id = fileID(t, out) // the last one is fetched
	}
	tinyID := fileID(t, alice.mustRun("--json", "share", "@bob", tiny))
	bob.ok("listen", "--once")

	outDir := t.TempDir()
	var fetchRSS rss
	for vi, v := range variants {
		profile := func(u *cliUser, name string) {
			if v.profile != "" {
				u.env = []string{"KEZ_CPU_PROFILE=" + filepath.Join(v.profile, fmt.Sprintf("%s-%d.prof", name, vi))}
			}
		}
		profile(alice, "listen")
		listen := alice.start(append([]string{"listen"}, v.listen...)...)
		alice.env = nil
		defer listen.interrupt() // on failure; a no-op once stopped
		// The first fetch waits for alice's node to listen and her
		// sigchain to list it; it and the others of the 1000-byte file
		// show the fixed cost of a fetch command.
		fetchArgs := func(args ...string) []string { return append(slices.Clone(v.fetch), args...) }
		bob.ok(fetchArgs("fetch", tinyID, "-o", filepath.Join(outDir, fmt.Sprintf("tiny-%d-0", vi)), "--wait", "1m")...)
		if vi == 0 {
			var fixed []time.Duration
			for i := range rounds {
				start := time.Now()
				bob.ok(fetchArgs("fetch", tinyID, "-o", filepath.Join(outDir, fmt.Sprintf("tiny-%d", i+1)), "--wait", "1m")...)
				fixed = append(fixed, time.Since(start))
			}
			slices.Sort(fixed)
			res.fixed = fixed[len(fixed)/2]
		}
		m := measured{name: fmt.Sprintf("kez-chat fetch %s, %s", fmtSize(size), v.name)}
		var cpu []time.Duration // of each fetch, user + system
		for i := range rounds {
			if vi == 0 {
				res.base.add(baseline())
			}
			got := filepath.Join(outDir, fmt.Sprintf("got-%d.bin", i))
			profile(bob, fmt.Sprintf("fetch-%d", i))
			start := time.Now()
			out, ps, st := bob.runState(fetchArgs("--json", "fetch", id, "-o", got, "--wait", "1m")...)
			cpu = append(cpu, st.UserTime()+st.SystemTime())
			m.add(mibPerSec(size, time.Since(start)))
			bob.env = nil
			if ps.kib > fetchRSS.kib {
				fetchRSS = ps
			}
			var fr struct{ Route string }
			if err := json.Unmarshal([]byte(out), &fr); err != nil || fr.Route != v.route {
				t.Errorf("fetch %s (%s): printed %q (want route %s): %v", fmtSize(size), v.name, out, v.route, err)
			}
			if keztest.SumFile(t, got) != sum {
				t.Fatalf("fetch %s (%s), round %d: the output differs from the shared file", fmtSize(size), v.name, i+1)
			}
			os.Remove(got)
		}
		res.fetch = append(res.fetch, m)
		ps, err := listen.interrupt()
		if err != nil {
			t.Fatalf("alice's listen: %v\nstderr: %s", err, listen.errw)
		}
		// Where a transfer is CPU-bound (both ends on one machine), CPU
		// per GiB is the figure that load on the machine changes least.
		slices.Sort(cpu)
		lst := listen.cmd.ProcessState
		t.Logf("  CPU of %s: fetch %.2f s per GiB (median, user+system); listen %.2f s per GiB (its whole run over the %d fetches)",
			m.name, cpu[len(cpu)/2].Seconds()*float64(1<<30)/float64(size), (lst.UserTime()+lst.SystemTime()).Seconds()*float64(1<<30)/float64(size)/rounds, rounds)
		if ps.kib > res.mem.listen.kib {
			res.mem.listen = ps
		}
	}
	res.mem.fetch = fetchRSS
	return res
}

// benchCroc times croc v10 (pinned in tools.mod, built with go tool)
// sending path through its own relay on 127.0.0.1, rounds times, each
// after a plain TCP copy from baseline: from the start of the receiver,
// once the sender waits on the relay, to the receiver's end (what fetch
// is timed for; the sender's hashing compares with share). It returns the rows, or nil
// (with a message) where croc cannot be built.
func benchCroc(t *testing.T, path string, sum [32]byte, baseline func() float64) []fileRow {
	t.Helper()
	out, err := exec.Command("go", "tool", "-modfile=../tools.mod", "-n", "croc").Output()
	if err != nil {
		t.Logf("croc: not measured: go tool -modfile=tools.mod croc: %v", err)
		return nil
	}
	croc := strings.TrimSpace(string(out))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	ports := freePorts(t, 5)
	relayCmd := exec.Command(croc, "relay", "--host", "127.0.0.1", "--ports", strings.Join(ports, ","))
	var relayOut bytes.Buffer
	relayCmd.Stdout, relayCmd.Stderr = &relayOut, &relayOut
	if err := relayCmd.Start(); err != nil {
		t.Logf("croc: not measured: relay: %v", err)
		return nil
	}
	defer func() {
		relayCmd.Process.Kill()
		relayCmd.Wait()
	}()
	if !listening("127.0.0.1:" + ports[0]) {
		t.Logf("croc: not measured: its relay does not listen on 127.0.0.1:%s after 60 s: %s", ports[0], relayOut.String())
		return nil
	}
	home := t.TempDir()
	base := measured{name: fmt.Sprintf("plain TCP file→file %s (baseline, croc rounds)", fmtSize(size))}
	m := measured{name: "croc v10.7.0 send → receive through its relay"}
	for i := range rounds {
		base.add(baseline())
		code := fmt.Sprintf("kez-bench-%d-%d", os.Getpid(), i)
		env := append(os.Environ(), "HOME="+home, "CROC_SECRET="+code)
		outDir := t.TempDir()
		common := []string{"--yes", "--relay", "127.0.0.1:" + ports[0], "--ignore-stdin"}
		send := exec.Command(croc, append(common, "send", "--no-local", "--code", code, path)...)
		send.Env, send.Dir = env, filepath.Dir(path)
		serr := &syncBuffer{}
		send.Stdout, send.Stderr = serr, serr
		if err := send.Start(); err != nil {
			t.Fatal(err)
		}
		// The sender hashes the file first (as share does), then waits on
		// the relay; a receiver that comes before it fails the handshake.
		// Timed: from the receiver's start to its end, as fetch is.
		ready := false
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if ready = strings.Contains(serr.String(), "Code is:"); ready {
				break
			}
		}
		if !ready {
			send.Process.Kill()
			send.Wait()
			t.Logf("croc: not measured: the sender did not get ready: %s", serr.String())
			return nil
		}
		recv := exec.Command(croc, append(common, "--overwrite", "--out", outDir)...)
		recv.Env = env
		var rerr bytes.Buffer
		recv.Stdout, recv.Stderr = &rerr, &rerr
		start := time.Now()
		err := recv.Run()
		elapsed := time.Since(start)
		send.Process.Kill()
		send.Wait()
		if err != nil {
			out := serr.String()
			t.Logf("croc: not measured: receive: %v\n%s\nsender: %s", err, rerr.String(), out[max(0, len(out)-2000):])
			return nil
		}
		got := filepath.Join(outDir, filepath.Base(path))
		if keztest.SumFile(t, got) != sum {
			t.Fatalf("croc round %d: received file differs", i+1)
		}
		os.Remove(got)
		m.add(mibPerSec(size, elapsed))
	}
	return []fileRow{base.row(base), m.row(base)}
}

// syncBuffer is a bytes.Buffer that a child process writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		out = append(out, p)
	}
	return out
}

// listening reports whether addr accepts connections within 60 s.
func listening(addr string) bool {
	for range 600 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// getToFile downloads blob h (bigFile bytes) from src with blob.Get into a
// new file at path, synced: what kez-chat fetch does with the verified
// bytes, without the decryption. The write path is the CLI's
// (client/incoming.go): 1 MiB writes (direct where they can be, a
// blob.Appender) on a blob.WriteBehind of their own goroutine,
// overlapping verification; a blob.Syncer syncing every
// 32 MiB in the background and dropping what it synced from the page
// cache; the whole file synced before it returns.
func getToFile(ctx context.Context, src blob.Source, h blob.Hash, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sy := blob.NewSyncer(f, 0, 32<<20, func(int64) error { return nil })
	sy.DropCache()
	out := blob.NewAppender(f, 0)
	defer out.Close()
	w := blob.NewWriteBehind(out, 3, 1<<20, sy.Wrote)
	err = blob.Get(ctx, src, h, bigFile, 0, w)
	if werr := w.Close(); err == nil {
		err = werr
	}
	if serr := sy.Close(); err == nil {
		err = serr
	}
	if err == nil && sy.Synced() != bigFile {
		err = fmt.Errorf("synced %d bytes of %d", sy.Synced(), bigFile)
	}
	return err
}

// cliUser runs the kez-chat binary with one profile.
type cliUser struct {
	t                    *testing.T
	bin, profile, server string
	home                 string
	fixedArgs            []string
	env                  []string // more environment of the next commands
}

func newCLIUser(t *testing.T, bin string, st *clienttest.Stack, name string) *cliUser {
	u := &cliUser{t: t, bin: bin, profile: filepath.Join(t.TempDir(), name), server: st.URL(), home: t.TempDir()}
	u.fixedArgs = []string{"--profile", u.profile, "--server", u.server, "--domain", clienttest.Domain, "--key-store", "file"}
	return u
}

func (u *cliUser) command(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(u.bin, append(slices.Clone(u.fixedArgs), args...)...)
	// A home of its own: nothing of the machine's user is read or
	// written (keyring, config).
	cmd.Env = append(os.Environ(), "HOME="+u.home, "XDG_CONFIG_HOME="+filepath.Join(u.home, ".config"))
	cmd.Env = append(cmd.Env, u.env...)
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	return cmd, &out, &errw
}

// run runs kez-chat to its end, failing the test unless it exits 0, and
// returns its stdout and peak RSS.
func (u *cliUser) run(args ...string) (string, rss) {
	u.t.Helper()
	out, peak, _ := u.runState(args...)
	return out, peak
}

// runState is run that also returns the ended process's state (its CPU
// times).
func (u *cliUser) runState(args ...string) (string, rss, *os.ProcessState) {
	u.t.Helper()
	cmd, out, errw := u.command(args...)
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	w := watchRSS(cmd.Process.Pid)
	err := cmd.Wait()
	peak := w.peak(cmd.ProcessState)
	if err != nil {
		u.t.Fatalf("kez-chat %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errw)
	}
	return out.String(), peak, cmd.ProcessState
}

func (u *cliUser) mustRun(args ...string) string {
	u.t.Helper()
	out, _ := u.run(args...)
	return out
}

func (u *cliUser) ok(args ...string) {
	u.t.Helper()
	u.run(args...)
}

// bgCmd is a kez-chat process in the background.
type bgCmd struct {
	cmd       *exec.Cmd
	out, errw *bytes.Buffer
	rss       *rssWatch
	done      chan error
	stopped   bool
	peak      rss
}

func (u *cliUser) start(args ...string) *bgCmd {
	u.t.Helper()
	cmd, out, errw := u.command(args...)
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	b := &bgCmd{cmd: cmd, out: out, errw: errw, rss: watchRSS(cmd.Process.Pid), done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	return b
}

// interrupt stops the process as Ctrl-C does, waits for it (killing it
// after 30 s) and returns its peak RSS, and an error unless it exited 0.
func (b *bgCmd) interrupt() (rss, error) {
	if b.stopped {
		return b.peak, nil
	}
	b.stopped = true
	b.cmd.Process.Signal(os.Interrupt)
	var err error
	select {
	case err = <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
		err = fmt.Errorf("did not stop within 30 s of SIGINT")
	}
	b.peak = b.rss.peak(b.cmd.ProcessState)
	return b.peak, err
}

// rssPoll is how often a child's peak RSS is read while it runs.
const rssPoll = 10 * time.Millisecond

// rss is a peak resident set size in KiB; polled if it was read from
// /proc while the process ran rather than from wait4.
type rss struct {
	kib    int64
	polled bool
}

func (r rss) String() string {
	s := fmt.Sprintf("%.1f MiB", float64(r.kib)/1024)
	if r.polled {
		s += "*"
	}
	return s
}

// rssWatch finds a child's peak RSS. wait4's ru_maxrss alone is not it:
// Go starts children with vfork (CLONE_VM), and at exec Linux folds the
// high-water mark of the mm being left, the parent's, into the child's
// maxrss, so every child of this test would report at least the test's
// own peak (about 50 MiB). The child's own mm, fresh from exec, has an
// honest VmHWM in /proc/<pid>/status, read here until the process ends;
// it misses only growth in the last rssPoll before exit. Where ru_maxrss
// exceeds the test's own peak, it is the child's exactly and wins.
type rssWatch struct {
	floor int64 // the test's own peak RSS once the child started
	stop  chan struct{}
	done  chan struct{}
	hwm   int64
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{floor: statusKiB("/proc/self/status", "VmHWM:"), stop: make(chan struct{}), done: make(chan struct{})}
	// The directory handle pins this process: once it is reaped, reads
	// through it fail instead of reading a process that reused the pid.
	dir, err := os.Open(fmt.Sprintf("/proc/%d", pid))
	go func() {
		defer close(w.done)
		if err != nil {
			return
		}
		defer dir.Close()
		tick := time.NewTicker(rssPoll)
		defer tick.Stop()
		for {
			if fd, err := syscall.Openat(int(dir.Fd()), "status", syscall.O_RDONLY, 0); err == nil {
				f := os.NewFile(uintptr(fd), "status")
				b, _ := io.ReadAll(f)
				f.Close()
				w.hwm = max(w.hwm, parseKiB(b, "VmHWM:"))
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// peak stops watching the ended process ps and returns its peak RSS.
func (w *rssWatch) peak(ps *os.ProcessState) rss {
	close(w.stop)
	<-w.done
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && runtime.GOOS == "linux" && ru.Maxrss > w.floor {
		return rss{kib: ru.Maxrss} // KiB on Linux
	}
	return rss{kib: w.hwm, polled: true}
}

func statusKiB(path, field string) int64 {
	b, _ := os.ReadFile(path)
	return parseKiB(b, field)
}

// parseKiB returns the value of a "Field:   123 kB" line of a
// /proc/<pid>/status, 0 if absent.
func parseKiB(status []byte, field string) int64 {
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var n int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &n)
			return n
		}
	}
	return 0
}

func fileID(t *testing.T, out string) string {
	t.Helper()
	var res struct {
		File struct{ Blob string } `json:"file"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.File.Blob) != 64 {
		t.Fatalf("share printed %q: %v", out, err)
	}
	return res.File.Blob[:12]
}

// tcpCopy copies the size bytes of path over a loopback TCP connection into
// a new file at out, synced, through copyBuf buffers in user space on both
// ends (no sendfile or splice: the file layer cannot use them either), and
// returns MiB/s. It removes out.
func tcpCopy(t *testing.T, path, out string, size int64) float64 {
	t.Helper()
	defer os.Remove(out)
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	return tcpSend(t, in, size, func() (io.Writer, func() error, error) {
		f, err := os.Create(out)
		if err != nil {
			return nil, nil, err
		}
		return f, func() error {
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, nil
	})
}

// tcpWire sends size bytes from memory over a loopback TCP connection to a
// reader that discards them, copyBuf at a time: the network path alone.
func tcpWire(t *testing.T, size int64) float64 {
	t.Helper()
	buf := make([]byte, copyBuf)
	rand.NewChaCha8([32]byte{}).Read(buf)
	return tcpSend(t, &repeatReader{buf: buf, left: size}, size, func() (io.Writer, func() error, error) {
		return io.Discard, func() error { return nil }, nil
	})
}

// repeatReader reads buf over and over, left bytes in all.
type repeatReader struct {
	buf  []byte
	left int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), r.left)], r.buf)
	r.left -= int64(n)
	return n, nil
}

// tcpSend copies size bytes of src over a loopback TCP connection, copyBuf
// at a time on both ends, into the writer sink opens, and returns MiB/s
// up to sink's finish (a sync).
func tcpSend(t *testing.T, src io.Reader, size int64, sink func() (io.Writer, func() error, error)) float64 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		w, finish, err := sink()
		if err != nil {
			done <- err
			return
		}
		n, err := io.CopyBuffer(onlyWriter{w}, onlyReader{c}, make([]byte, copyBuf))
		if err == nil && n != size {
			err = fmt.Errorf("received %d bytes, want %d", n, size)
		}
		if ferr := finish(); err == nil {
			err = ferr
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.CopyBuffer(onlyWriter{c}, onlyReader{src}, make([]byte, copyBuf)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return mibPerSec(size, time.Since(start))
}

// fileCopy copies path to out through a copyBuf buffer and syncs it, as a
// plain import would, returns MiB/s and removes out.
func fileCopy(t *testing.T, path, out string) float64 {
	t.Helper()
	defer os.Remove(out)
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	start := time.Now()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(onlyWriter{f}, onlyReader{in}, make([]byte, copyBuf))
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		t.Fatal(err)
	}
	return mibPerSec(n, time.Since(start))
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so that io.CopyBuffer
// really copies through its buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// writeRandomFile writes size pseudo-random bytes to path, streaming, and
// returns their SHA-256.
func writeRandomFile(t *testing.T, path string, size int64, seed byte) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{seed})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		r.Read(b)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		left -= int64(len(b))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func sumBlob(t *testing.T, s *blob.Store, h blob.Hash) [32]byte {
	t.Helper()
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return keztest.SumReader(t, f)
}

func openStore(t *testing.T, dir string) *blob.Store {
	t.Helper()
	s, err := blob.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newNode(t *testing.T, cfg p2p.Config) *p2p.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := p2p.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func mibPerSec(n int64, d time.Duration) float64 { return float64(n) / mib / d.Seconds() }

func fmtSize(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n/mib)
}
