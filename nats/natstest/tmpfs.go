package natstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// tmpfsChild marks a test binary run again by Tmpfs in a user and mount
// namespace of its own.
const tmpfsChild = "KEZ_NATSTEST_TMPFS_CHILD"

// Tmpfs returns a folder with a tmpfs of size bytes mounted on it
// (unmounted at the end of the test), for tests of a disk that fills:
// a JetStream store there hits ENOSPC below max_file_store. As root it
// mounts one. Otherwise it runs the calling test again, alone, in a user
// and mount namespace of its own (Linux's unprivileged user namespaces),
// where the test's process may mount a tmpfs, and reports that run's
// outcome as this one's: it then returns ok false, and the caller
// returns at once. A test that cannot have a tmpfs (no user namespaces,
// no mount) is skipped, saying why.
func Tmpfs(tb testing.TB, size int64) (dir string, ok bool) {
	tb.Helper()
	if os.Geteuid() != 0 && os.Getenv(tmpfsChild) == "" {
		out, err := runInNamespace(tb)
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			tb.Fatalf("the test, run again in a user namespace of its own to mount a tmpfs, failed:\n%s", out)
		case err != nil:
			tb.Skipf("needs a tmpfs: not root, and no user namespace to mount one in (%v): skipped", err)
		case strings.Contains(string(out), "--- SKIP"):
			tb.Skipf("run again in a user namespace of its own to mount a tmpfs, it skipped:\n%s", out)
		case !strings.Contains(string(out), "--- PASS"):
			tb.Fatalf("the test, run again in a user namespace of its own to mount a tmpfs, did not run:\n%s", out)
		}
		tb.Logf("ran again in a user namespace of its own, to mount a tmpfs:\n%s", out)
		return "", false
	}
	dir = tb.TempDir()
	opt := fmt.Sprintf("size=%d", size)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opt, "tmpfs", dir).CombinedOutput(); err != nil {
		tb.Skipf("needs a tmpfs: mount -t tmpfs -o %s: %v: %s: skipped", opt, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, true
}

// testArgs returns the test binary's flags to run the test tb alone.
func testArgs(tb testing.TB) []string {
	args := []string{"-test.run=^" + regexp.QuoteMeta(tb.Name()) + "$", "-test.count=1", "-test.v"}
	for _, a := range os.Args[1:] {
		for _, keep := range []string{"-test.timeout=", "-test.short", "-test.paniconexit0"} {
			if strings.HasPrefix(a, keep) {
				args = append(args, a)
			}
		}
	}
	return args
}

// OnSmallDisk returns a StartWith hook that puts the server's store on
// dir (a small volume: Tmpfs) under a max_file_store larger than it, so
// that the disk fills before JetStream's own limit refuses anything.
func OnSmallDisk(dir string) func(*server.Options) {
	return func(o *server.Options) {
		o.StoreDir = filepath.Join(dir, "jetstream")
		o.JetStreamMaxStore = 1 << 30
	}
}

// Fill writes a file into dir until its volume is full and returns a
// function that removes it.
func Fill(tb testing.TB, dir string) (free func()) {
	tb.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if _, err := f.Write(buf); err != nil {
			break
		}
		if i > 1<<14 {
			f.Close()
			tb.Fatalf("fill %s: 16 GiB written and not full", dir)
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(name); err != nil {
			tb.Errorf("free %s: %v", dir, err)
		}
	}
}
