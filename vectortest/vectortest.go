// Package vectortest keeps a package's test-vector file in step with the
// code that generates it, with one -update flag for every package:
//
//	go test ./sigchain -run TestVectors -update
//
// rewrites the file from the implementation; without -update a test fails
// when the file and the code disagree.
package vectortest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the test-vector files (testdata/*vectors.json) from this implementation")

// Check compares gen, the vector file as the code generates it, with the
// file at path and fails tb if they differ; with -update it first writes
// gen to path. It returns the file's contents for the test to check on
// its own, the way another implementation would read it.
func Check(tb testing.TB, path string, gen []byte) []byte {
	tb.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, gen, 0o644); err != nil {
			tb.Fatal(err)
		}
		tb.Logf("wrote %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -run '^%s$' -update)", err, tb.Name())
	}
	if !bytes.Equal(b, gen) {
		tb.Fatalf("%s differs from what the code generates; if the change is intended, run go test -run '^%s$' -update", path, tb.Name())
	}
	return b
}

// JSON returns v as a vector file is written: indented by two spaces and
// ending in a newline. With escapeHTML, "<", ">" and "&" in strings are
// written \u003c, \u003e and \u0026 as encoding/json does by default
// (the share and sigchain files were written so; the others were not, and
// each file keeps its bytes).
func JSON(tb testing.TB, v any, escapeHTML bool) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
