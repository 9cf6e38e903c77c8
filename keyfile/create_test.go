package keyfile_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"kez.lat/kez/keyfile"
)

// TestCreate: Create puts the whole file in place with mode 0600 or
// nothing; it never replaces a file that holds something, replaces an
// empty one (a crash of an earlier release's create-then-write), and is
// not blocked by the temporary files a crash leaves.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "key")
	// What a crash between CreateTemp and link leaves: an empty and a
	// partial temporary file.
	for suffix, data := range map[string]string{"1": "", "2": "sec"} {
		if err := os.WriteFile(filepath.Join(dir, ".key.tmp-"+suffix), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := keyfile.Create(name, []byte("secret\n")); err != nil {
		t.Fatalf("Create beside stray temporary files: %v", err)
	}
	if b, err := keyfile.Read(name, 64); err != nil || string(b) != "secret\n" {
		t.Fatalf("Read after Create = %q, %v", b, err)
	}
	if err := keyfile.Create(name, []byte("other\n")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing key = %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "secret\n" {
		t.Errorf("existing key replaced: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("Create left %d entries, want key and the 2 stray ones", len(entries))
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Create(empty, []byte("new\n")); err != nil {
		t.Fatalf("Create over an empty file: %v", err)
	}
	if b, err := keyfile.Read(empty, 64); err != nil || string(b) != "new\n" {
		t.Errorf("Read after Create over an empty file = %q, %v", b, err)
	}

	// Neither a symlink (even to an empty file) nor a directory is replaced.
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{link, sub} {
		if err := keyfile.Create(n, []byte("x")); !errors.Is(err, fs.ErrExist) {
			t.Errorf("Create(%s) = %v, want fs.ErrExist", filepath.Base(n), err)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi, err)
	}
}

// TestCreateWithoutHardLinks: on a file system that refuses hard links,
// Create writes the file in place, still never over an existing one.
func TestCreateWithoutHardLinks(t *testing.T) {
	defer keyfile.SetLink(func(o, n string) error { return &os.LinkError{Op: "link", Old: o, New: n, Err: syscall.EPERM} })()
	name := filepath.Join(t.TempDir(), "key")
	if err := keyfile.Create(name, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if b, err := keyfile.Read(name, 64); err != nil || !bytes.Equal(b, []byte("secret")) {
		t.Fatalf("Read = %q, %v", b, err)
	}
	if err := keyfile.Create(name, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create = %v, want fs.ErrExist", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(name))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left", e.Name())
		}
	}
}
