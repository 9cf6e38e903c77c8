//go:build bench

package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez/client/clienttest"
)

// TestBenchShare is the share rows of TestBenchFiles alone, for work on
// share: the real kez-chat binary shares a 1 GiB file (encrypt, BLAKE3/
// Bao outboard, store, synced), each time right after a plain file copy
// with fsync of the same file, KEZ_BENCH_SHARE_ROUNDS times (default 5),
// and reports both rates, their ratio (of the medians, and the median
// of each round's), share's CPU time (user, system)
// and peak RSS. TestBenchFiles has the same rows among all the others.
//
// It fails only when a step errs, never on a figure.
func TestBenchShare(t *testing.T) {
	n := 5
	if s := os.Getenv("KEZ_BENCH_SHARE_ROUNDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 50 {
			t.Fatalf("KEZ_BENCH_SHARE_ROUNDS=%q: want 1 to 50", s)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	writeRandomFile(t, src, bigFile, 1)
	st := clienttest.Start(t)
	bin := buildCmd(t, "kez-chat")
	alice, bob := newCLIUser(t, bin, st, "alice"), newCLIUser(t, bin, st, "bob")
	alice.ok("register", "alice", "--i-have-written-it-down")
	bob.ok("register", "bob", "--i-have-written-it-down")

	// KEZ_BENCH_SHARE_OTHER names another kez-chat binary (say, main's)
	// whose share is timed in the same rounds, after this one's in even
	// rounds and before it in odd ones.
	bins := []string{bin}
	if other := os.Getenv("KEZ_BENCH_SHARE_OTHER"); other != "" {
		bins = append(bins, other)
	}
	cp := measured{name: "plain file copy + fsync 1 GiB (baseline)"}
	type result struct {
		m      measured
		peak   rss
		cpu    []string
		ratios []string
		rs     []float64
	}
	res := make([]result, len(bins))
	for i, b := range bins {
		res[i].m.name = "kez-chat share 1 GiB"
		if i > 0 {
			res[i].m.name += " (" + filepath.Base(b) + ")"
		}
	}
	for round := range n {
		cp.add(fileCopy(t, src, filepath.Join(dir, "copy.bin")))
		for j := range bins {
			// The binaries take turns at going first after the copy.
			i := j
			if round%2 == 1 {
				i = len(bins) - 1 - j
			}
			b, r := bins[i], &res[i]
			alice.bin = b
			start := time.Now()
			_, peak, ps := alice.runState("--json", "share", "@bob", src)
			d := time.Since(start)
			r.m.add(mibPerSec(bigFile, d))
			ratio := r.m.vals[len(r.m.vals)-1] / cp.vals[len(cp.vals)-1]
			r.ratios = append(r.ratios, fmt.Sprintf("%.2f", ratio))
			r.rs = append(r.rs, ratio)
			r.peak.kib = max(r.peak.kib, peak.kib)
			r.peak.polled = r.peak.polled || peak.polled
			if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
				r.cpu = append(r.cpu, time.Duration(ru.Utime.Nano()).Round(10*time.Millisecond).String()+"/"+
					time.Duration(ru.Stime.Nano()).Round(10*time.Millisecond).String())
			}
		}
	}
	rows := []fileRow{cp.row(cp)}
	for _, r := range res {
		rows = append(rows, r.m.row(cp))
	}
	logFileTable(t, "kez-chat share (encrypt + BLAKE3/Bao + store, synced) against a plain file copy + fsync", rows, measured{})
	for _, r := range res {
		// The median of the rounds' ratios, each share against the copy
		// of its round: steadier on a loaded host than the ratio of the
		// medians above.
		slices.Sort(r.rs)
		med := (r.rs[(len(r.rs)-1)/2] + r.rs[len(r.rs)/2]) / 2
		t.Logf("  %s (%d rounds): median of the rounds' ratios %.2f; ratio of each round %v; CPU of each (user/system) %v; peak RSS %s", r.m.name, n, med, r.ratios, r.cpu, r.peak)
		fmt.Printf("BENCH files peak RSS 1 GiB: %s %s\n", r.m.name, r.peak)
	}
}
