package tui_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"kez.lat/kez/cmd/kez-chat/tui"
)

// TestShareCompletionInert: Tab after /share completes local file names;
// a name holding an escape sequence (a file from an archive or a
// download) is never offered, neither in the help line nor in the input,
// where it would reach the terminal raw.
func TestShareCompletionInert(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []string
		want  string // on the screen
	}{
		{"several", []string{"a\x1b]0;owned\x07.txt", "a\x1b[2J.txt", "ab.txt", "ac.txt"}, "ab.txt  "},
		{"one", []string{"a\x1b]0;owned\x07.txt"}, "no completion"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			m := newModel(t, world(), tui.Options{Open: handle("bob"), NoReceipts: true})
			m.Update(tea.WindowSizeMsg{Width: 200, Height: 24})
			for _, r := range "/share " + dir + "/a" {
				m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			}
			m.Update(tea.KeyMsg{Type: tea.KeyTab})
			v := m.View()
			if strings.ContainsAny(v, "\x1b\x07") {
				t.Errorf("the screen carries a file name's escape sequence raw:\n%q", v)
			}
			if !strings.Contains(v, tt.want) {
				t.Errorf("the screen lacks %q:\n%s", tt.want, v)
			}
		})
	}
}
