package buildinfo

import (
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Unknown stands for what a build does not record: `go test` and `go
// run` binaries, and builds with -buildvcs=false, carry no commit.
const Unknown = "unknown"

// Info is one binary's build. Its JSON form is stable (fields are added,
// never changed): `--version --json` prints it and the servers' health
// answers carry it.
type Info struct {
	// Version is the main module's version: a tag (v1.2.3), a
	// pseudo-version naming the commit (v0.0.0-20261206145812-983176d1a2b3),
	// either with +dirty for a modified tree, or "(devel)" when the go
	// command knew none.
	Version string `json:"version"`
	// Revision is the commit the binary was built from (vcs.revision),
	// Unknown without VCS information.
	Revision string `json:"revision"`
	// Modified reports whether the work tree had uncommitted changes.
	Modified bool `json:"modified"`
	// Time is the commit's time (vcs.time, RFC 3339, UTC): the date of
	// what was built, which a reproducible build keeps the same
	// whenever it is rebuilt. Empty without VCS information.
	Time string `json:"time,omitempty"`
	// Go is the Go version that built the binary.
	Go string `json:"go"`
	// Platform is GOOS/GOARCH of the binary.
	Platform string `json:"platform"`
}

// Get returns the running binary's build information (read once).
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return FromBuildInfo(bi, ok)
})

// FromBuildInfo returns the Info that bi describes; ok is what
// debug.ReadBuildInfo returned with it (false: a binary without module
// support, whose fields are then all Unknown except Go and Platform).
func FromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: "(devel)", Revision: Unknown, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		return in
	}
	if v := bi.Main.Version; v != "" {
		in.Version = v
	}
	if bi.GoVersion != "" {
		in.Go = bi.GoVersion
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				in.Time = t.UTC().Format(time.RFC3339)
			}
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		in.Platform = goos + "/" + goarch
	}
	return in
}

// ShortRevision returns the first 12 hex digits of the commit, or
// Unknown.
func (in Info) ShortRevision() string {
	if len(in.Revision) > 12 {
		return in.Revision[:12]
	}
	return in.Revision
}

// String is the one line `--version` prints after the program's name:
// "v0.0.0-2026...-983176d1a2b3 (commit 983176d1a2b3, modified, 2026-12-06T14:58:12Z, go1.26.8 linux/amd64)".
func (in Info) String() string {
	parts := []string{"commit " + in.ShortRevision()}
	if in.Modified {
		parts = append(parts, "modified")
	}
	if in.Time != "" {
		parts = append(parts, in.Time)
	}
	parts = append(parts, in.Go+" "+in.Platform)
	return fmt.Sprintf("%s (%s)", in.Version, strings.Join(parts, ", "))
}

// UserAgent returns the User-Agent of program's HTTP requests:
// "kez-chat/v1.2.3 (commit 983176d1a2b3; go1.26.8; linux/amd64)". Version and
// commit are public facts of the binary, and a server needs them to
// tell which clients still run a release with a known bug.
func (in Info) UserAgent(program string) string {
	return fmt.Sprintf("%s/%s (commit %s; %s; %s)", program, in.Version, in.ShortRevision(), in.Go, in.Platform)
}

// LogValue logs the build as a group (a server's start-up line has
// "build": {"version", "revision", "modified", "go"}).
func (in Info) LogValue() slog.Value {
	return slog.GroupValue(slog.String("version", in.Version), slog.String("revision", in.Revision),
		slog.Bool("modified", in.Modified), slog.String("go", in.Go))
}
