package keyfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/keyfile"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "key")
	if err := os.WriteFile(name, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := keyfile.Read(name, 3); string(b) != "sec" || err != nil {
		t.Errorf("Read(max 3) = %q, %v, want \"sec\"", b, err)
	}
	if err := os.Chmod(name, 0o640); err != nil {
		t.Fatal(err)
	}
	var me *keyfile.ModeError
	if _, err := keyfile.Read(name, 64); !errors.As(err, &me) || me.Mode != 0o640 || err.Error() != name+" has mode 0640" {
		t.Errorf("Read(0640) = %v, want a ModeError", err)
	}
	if _, err := keyfile.Read(dir, 64); !errors.Is(err, keyfile.ErrNotRegular) {
		t.Errorf("Read(dir) = %v, want ErrNotRegular", err)
	}
	if _, err := keyfile.Read(filepath.Join(dir, "none"), 64); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read(missing) = %v, want fs.ErrNotExist", err)
	}
}
