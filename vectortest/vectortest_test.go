package vectortest_test

import (
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/vectortest"
)

// fakeTB records whether a check failed instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Name() string                 { return "TestX" }
func (f *fakeTB) Fatalf(string, ...any)        { f.failed = true; panic(f) }
func (f *fakeTB) Fatal(...any)                 { f.failed = true; panic(f) }
func (f *fakeTB) Logf(format string, a ...any) {}

// check runs vectortest.Check and reports whether it failed.
func check(path string, gen []byte) (failed bool) {
	f := &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != f {
			panic(r)
		}
		failed = f.failed
	}()
	vectortest.Check(f, path, gen)
	return false
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vectors.json")
	if !check(path, []byte("{}\n")) {
		t.Error("Check passed with no file")
	}
	if err := os.WriteFile(path, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if check(path, []byte("{}\n")) {
		t.Error("Check failed on the same bytes")
	}
	if !check(path, []byte("{ }\n")) {
		t.Error("Check passed on different bytes")
	}
}

func TestJSON(t *testing.T) {
	v := map[string]any{"a": "<&>", "b": []int{1}}
	got := string(vectortest.JSON(t, v, false))
	want := "{\n  \"a\": \"<&>\",\n  \"b\": [\n    1\n  ]\n}\n"
	if got != want {
		t.Errorf("JSON = %q, want %q", got, want)
	}
	got = string(vectortest.JSON(t, v, true))
	want = "{\n  \"a\": \"\\u003c\\u0026\\u003e\",\n  \"b\": [\n    1\n  ]\n}\n"
	if got != want {
		t.Errorf("JSON escaping HTML = %q, want %q", got, want)
	}
}
