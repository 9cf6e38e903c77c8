package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/client"
)

// TestOutputPath: where a fetched file is saved. A name from the sender
// that starts with '.' (a hidden file such as .zshenv, which a shell
// runs) starts with '_' when the sender's name is used, in the current
// directory or in a directory given with -o; a file path given with -o
// is the user's choice and kept.
func TestOutputPath(t *testing.T) {
	cwd, dir := t.TempDir(), t.TempDir()
	t.Chdir(cwd)
	if err := os.WriteFile(filepath.Join(cwd, "_exists"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		out, name   string
		want        string
		wantRenamed bool
		wantErr     error
	}{
		{"", "notes.txt", "notes.txt", false, nil},
		{"", ".bash_profile", "_bash_profile", true, nil},
		{"", ".zshenv", "_zshenv", true, nil},
		{"", "..hidden", "_.hidden", true, nil},
		{"", "a.b", "a.b", false, nil},
		{dir, ".zshenv", filepath.Join(dir, "_zshenv"), true, nil},
		{dir, "notes.txt", filepath.Join(dir, "notes.txt"), false, nil},
		{filepath.Join(dir, ".zshenv"), ".zshenv", filepath.Join(dir, ".zshenv"), false, nil},
		{filepath.Join(dir, ".mine"), "notes.txt", filepath.Join(dir, ".mine"), false, nil},
		{"", ".exists", "_exists", true, client.ErrFileExists},
	} {
		p, renamed, err := client.OutputPath(tt.out, tt.name)
		if p != tt.want || renamed != tt.wantRenamed || !errors.Is(err, tt.wantErr) {
			t.Errorf("OutputPath(%q, %q) = %q, %v, %v; want %q, %v, %v", tt.out, tt.name, p, renamed, err, tt.want, tt.wantRenamed, tt.wantErr)
		}
	}
}
