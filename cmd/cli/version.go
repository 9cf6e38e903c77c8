package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/alecthomas/kong"

	"kez.lat/kez/buildinfo"
)

// versionFlags is embedded in every command's grammar, so that --help
// and completions show --version.
type versionFlags struct {
	Version bool `name:"version" help:"Print the version (module version, commit, Go version) and exit; as JSON with --json."`
}

// version handles --version before kong parses anything, so that it
// works without the arguments a command requires and takes --json even
// where only a subcommand has that flag: if args (up to "--") hold
// --version, it prints the build information, as JSON when they also
// hold --json, and reports true.
func version(name string, args []string, stdout io.Writer) (bool, error) {
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[:i]
	}
	if !slices.Contains(args, "--version") {
		return false, nil
	}
	in := buildinfo.Get()
	if slices.Contains(args, "--json") || slices.Contains(args, "--json=true") {
		return true, json.NewEncoder(stdout).Encode(in)
	}
	_, err := fmt.Fprintf(stdout, "%s %s\n", name, in)
	return true, err
}

// NewParser returns the kong parser of grammar, with --version, for [Run]
// and for what needs kong's model of a command (shell completion).
func NewParser(grammar any, name, description string, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(grammar,
		kong.Name(name),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { panic(errExit) }),
		kong.UsageOnError(),
		kong.Embed(&versionFlags{}),
	)
}
