// Package clitest runs the command line of a server binary in its tests,
// in-process.
package clitest

import (
	"bytes"
	"context"
	"io"
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
