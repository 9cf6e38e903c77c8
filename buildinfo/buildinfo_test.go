package buildinfo_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"kez.lat/kez/buildinfo"
)

func TestFromBuildInfo(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tt := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want buildinfo.Info
	}{
		{"no build info", nil, false, buildinfo.Info{Version: "(devel)", Revision: "unknown", Go: runtime.Version(), Platform: platform}},
		{"go test, go run", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "kez.lat/kez", Version: "(devel)"}},
			true, buildinfo.Info{Version: "(devel)", Revision: "unknown", Go: "go1.26.8", Platform: platform}},
		{"release", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "kez.lat/kez", Version: "v0.0.0-20261206145812-983176d9c2f3"},
			Settings: []debug.BuildSetting{
				{Key: "GOOS", Value: "darwin"}, {Key: "GOARCH", Value: "arm64"},
				{Key: "vcs.revision", Value: "983176d9c2f3113246943088ac88bd78ed2277bb"},
				{Key: "vcs.time", Value: "2026-12-06T14:58:12+01:00"}, {Key: "vcs.modified", Value: "false"},
			}},
			true, buildinfo.Info{Version: "v0.0.0-20261206145812-983176d9c2f3", Revision: "983176d9c2f3113246943088ac88bd78ed2277bb",
				Time: "2026-12-06T13:58:12Z", Go: "go1.26.8", Platform: "darwin/arm64"}},
		{"dirty tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "garbage"}}},
			true, buildinfo.Info{Version: "v1.2.3+dirty", Revision: "abc", Modified: true, Go: "go1.26.8", Platform: platform}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildinfo.FromBuildInfo(tt.bi, tt.ok); got != tt.want {
				t.Errorf("FromBuildInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	in := buildinfo.Info{Version: "v1.2.3", Revision: "983176d9c2f3113246943088ac88bd78ed2277bb", Modified: true,
		Time: "2026-12-06T13:58:12Z", Go: "go1.26.8", Platform: "linux/amd64"}
	if got, want := in.String(), "v1.2.3 (commit 983176d9c2f3, modified, 2026-12-06T13:58:12Z, go1.26.8 linux/amd64)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := in.UserAgent("kez-chat"), "kez-chat/v1.2.3 (commit 983176d9c2f3; go1.26.8; linux/amd64)"; got != want {
		t.Errorf("UserAgent = %q, want %q", got, want)
	}
	dev := buildinfo.FromBuildInfo(nil, false)
	if got := dev.String(); !strings.HasPrefix(got, "(devel) (commit unknown, go") {
		t.Errorf("String of a build without VCS information = %q", got)
	}
}

// TestBuiltBinary builds a program that prints buildinfo.Get as JSON in
// a fresh git repository, as `make release` builds, and checks that it
// names the commit, then that an uncommitted change shows as modified.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := strings.SplitN(string(gomod), "\n", 4)[2] // "go 1.x.y"
	write("go.mod", "module example.invalid/v\n\n"+goLine+"\n\nrequire kez.lat/kez v0.0.0\n\nreplace kez.lat/kez => "+root+"\n")
	write("main.go", `package main

import (
	"encoding/json"
	"os"

	"kez.lat/kez/buildinfo"
)

func main() { json.NewEncoder(os.Stdout).Encode(buildinfo.Get()) }
`)
	run("git", "init", "-q")
	run("git", "add", ".")
	run("git", "commit", "-q", "-m", "v")
	rev := run("git", "rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "v")
	build := func() buildinfo.Info {
		t.Helper()
		run("go", "build", "-buildvcs=true", "-trimpath", "-o", bin, ".")
		var in buildinfo.Info
		if err := json.Unmarshal([]byte(run(bin)), &in); err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := build()
	if in.Revision != rev || in.Modified || in.Time == "" || !strings.HasSuffix(in.Version, rev[:12]) {
		t.Errorf("built from commit %s: %+v", rev, in)
	}
	write("main.go", strings.Replace(string(must(os.ReadFile(filepath.Join(dir, "main.go")))), "func main", "// changed\nfunc main", 1))
	if in := build(); in.Revision != rev || !in.Modified || !strings.HasSuffix(in.Version, "+dirty") {
		t.Errorf("built from a modified tree: %+v", in)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
