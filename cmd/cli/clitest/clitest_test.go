package clitest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"kez.lat/kez/cmd/cli/clitest"
)

func TestRun(t *testing.T) {
	errBad := errors.New("bad")
	run := func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		fmt.Fprint(stdout, args[0])
		fmt.Fprint(stderr, args[1])
		return errBad
	}
	out, errOut, err := clitest.Run(t, run, "a", "b")
	if out != "a" || errOut != "b" || !errors.Is(err, errBad) {
		t.Errorf("Run = %q, %q, %v; want \"a\", \"b\", %v", out, errOut, err, errBad)
	}
}
