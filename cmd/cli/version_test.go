package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"kez.lat/kez/buildinfo"
	"kez.lat/kez/cmd/cli"
)

type serveCmd struct {
	KeyFile string `required:""`
}

func (serveCmd) Run() error { return nil }

type scrubCmd struct {
	JSON bool `name:"json"`
}

func (c *scrubCmd) Run(e *cli.Env) error {
	if c.JSON {
		e.Stdout.Write([]byte("scrub json\n"))
	}
	return nil
}

type sendCmd struct {
	Text []string `arg:""`
}

func (c *sendCmd) Run(e *cli.Env) error {
	e.Stdout.Write([]byte(strings.Join(c.Text, " ") + "\n"))
	return nil
}

type grammar struct {
	Serve serveCmd `cmd:"" default:"withargs"`
	Scrub scrubCmd `cmd:""`
	Send  sendCmd  `cmd:""`
}

func TestVersion(t *testing.T) {
	in := buildinfo.Get()
	line := "prog " + in.String() + "\n"
	js, _ := json.Marshal(in)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--version"}, line},          // although serve requires --key-file
		{[]string{"scrub", "--version"}, line}, // after a command
		{[]string{"--version", "--json"}, string(js) + "\n"},
		{[]string{"scrub", "--json", "--version"}, string(js) + "\n"}, // --json of a subcommand
		{[]string{"scrub", "--json"}, "scrub json\n"},                 // which still is its own
		{[]string{"send", "--", "--version"}, "--version\n"},          // an argument, not the flag
	} {
		var out, errw bytes.Buffer
		if err := cli.Run(context.Background(), &grammar{}, "prog", "", tt.args, &out, &errw); err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if out.String() != tt.want {
			t.Errorf("%q printed %q, want %q", tt.args, out.String(), tt.want)
		}
	}
	var out bytes.Buffer
	if err := cli.Run(context.Background(), &grammar{}, "prog", "", []string{"--help"}, &out, &out); err != nil || !strings.Contains(out.String(), "--version") {
		t.Errorf("--help does not show --version (%v):\n%s", err, out.String())
	}
}
