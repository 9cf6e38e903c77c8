package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/share"
)

// TestOutputPath: where a fetched file is saved. When the sender's name
// is used, in the current directory or in a directory given with -o, a
// name that starts with '.' (a hidden file such as .zshenv, which a shell
// runs) starts with '_', a Windows device name (CON, nul.txt, any case,
// any extension) gets a '_' in front, and the characters Windows refuses
// become '_', on every system; a name the parsers would refuse is refused.
// A file path given with -o is the user's choice and kept.
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

		// Windows device names.
		{"", "CON", "_CON", true, nil},
		{"", "con", "_con", true, nil},
		{"", "nul.txt", "_nul.txt", true, nil},
		{"", "Com1.log", "_Com1.log", true, nil},
		{"", "LPT9", "_LPT9", true, nil},
		{"", "lpt0.tar.gz", "_lpt0.tar.gz", true, nil},
		{"", "AUX", "_AUX", true, nil},
		{"", "PRN.pdf", "_PRN.pdf", true, nil},
		{"", "COM\u00b9", "_COM\u00b9", true, nil},
		{"", "conin$", "_conin$", true, nil},
		{"", "CONOUT$.txt", "_CONOUT$.txt", true, nil},
		{"", "CON .txt", "_CON .txt", true, nil},
		{dir, "aux.c", filepath.Join(dir, "_aux.c"), true, nil},
		{"", ".con", "_con", true, nil},
		// At the length limit: shortened before the extension.
		{"", "CON." + strings.Repeat("a", 251), "_CON." + strings.Repeat("a", 250), true, nil},
		{"", "nul.a" + strings.Repeat("é", 123) + ".txt", "_nul.a" + strings.Repeat("é", 122) + ".txt", true, nil},
		{"", "CONSOLE", "CONSOLE", false, nil},
		{"", "icon.png", "icon.png", false, nil},
		{"", "COM10", "COM10", false, nil},
		{"", "LPT", "LPT", false, nil},
		{"", "CONIN", "CONIN", false, nil},
		{"", "nul_.txt", "nul_.txt", false, nil},
		{"", "my.nul", "my.nul", false, nil},
		{"", " CON", " CON", false, nil},

		// Characters Windows refuses.
		{"", `what?.txt`, "what_.txt", true, nil},
		{"", `a<b>c"d|e*f.txt`, "a_b_c_d_e_f.txt", true, nil},
		{"", `.a?`, "_a_", true, nil},
		{"", `nul?.txt`, "nul_.txt", true, nil},
		{"", `?`, "_", true, nil},
		{dir, `*.*`, filepath.Join(dir, "_._"), true, nil},

		// What the parsers refuse is refused here too.
		{"", "a.", "", false, share.ErrName},
		{"", "a ", "", false, share.ErrName},
		{"", "a:b", "", false, share.ErrName},
		{"", "a\x01b", "", false, share.ErrName},
		{"", "..", "", false, share.ErrName},
		{dir, "../x", "", false, share.ErrName},

		// A path given with -o is kept.
		{filepath.Join(dir, "CON"), "notes.txt", filepath.Join(dir, "CON"), false, nil},
		{filepath.Join(dir, "mine"), "nul?.txt", filepath.Join(dir, "mine"), false, nil},
		{filepath.Join(dir, "mine"), "a.", filepath.Join(dir, "mine"), false, nil},
	} {
		p, renamed, err := client.OutputPath(tt.out, tt.name)
		if p != tt.want || renamed != tt.wantRenamed || !errors.Is(err, tt.wantErr) {
			t.Errorf("OutputPath(%q, %q) = %q, %v, %v; want %q, %v, %v", tt.out, tt.name, p, renamed, err, tt.want, tt.wantRenamed, tt.wantErr)
		}
	}
}
