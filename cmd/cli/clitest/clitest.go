// Package clitest runs the command line of a server binary in its tests,
// in-process.
package clitest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"testing"
)

// Run calls run, a binary's run(ctx, args, stdout, stderr) (main without
// the process around it), with args, and returns what it wrote to stdout
// and to stderr and its error.
func Run(tb testing.TB, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// UnitStartsOnLiveness runs the ExecStartPost= command of a systemd unit
// file (deploy/systemd), with its --wait cut to 2 s, through run against
// a server whose readiness (readyPath, which HEALTHCHECK_URL names)
// answers 503 and whose livez beside it answers 200, and fails tb unless
// the command passes; and fails tb if it passes with livez red too. With
// Restart=always, a unit that waited for readiness would kill and restart
// a server whose readiness stays red at start, though it serves.
func UnitStartsOnLiveness(tb testing.TB, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error, unit, readyPath string) {
	tb.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		tb.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(b), "\n") {
		if cmd, ok := strings.CutPrefix(line, "ExecStartPost="); ok {
			args = strings.Fields(cmd)[1:] // without the binary
		}
	}
	if len(args) == 0 {
		tb.Fatalf("%s: no ExecStartPost=", unit)
	}
	for i := range args {
		if args[i] == "--wait" && i+1 < len(args) {
			args[i+1] = "2s"
		}
	}
	var live atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == path.Join(path.Dir(readyPath), "livez") && live.Load():
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tb.Setenv("HEALTHCHECK_URL", srv.URL+readyPath)
	live.Store(true)
	if _, _, err := Run(tb, run, args...); err != nil {
		tb.Errorf("%s: ExecStartPost %q fails while only readiness is red (a restart loop under Restart=always): %v", unit, args, err)
	}
	live.Store(false)
	if _, _, err := Run(tb, run, args...); err == nil {
		tb.Errorf("%s: ExecStartPost %q passes with liveness red", unit, args)
	}
}
