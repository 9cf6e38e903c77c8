package chatcmd

import (
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
)

// TestFitSoftWrapSpoof: a body padded so that a fake message starts at a
// multiple of the terminal's width would, soft-wrapped by the terminal,
// show a row that reads as another contact's message. fit hard-wraps
// at the width with every later row indented, so no screen row of a
// message but its first starts at column 1.
func TestFitSoftWrapSpoof(t *testing.T) {
	prefix := "2026-12-07 08:59:00 @mallory: " // what listen prints first
	fake := "2026-12-07 09:00:00 @bank: your card is blocked, call +1 555 0100"
	body := "see below" + strings.Repeat(" ", 1200-len(prefix)-len("see below")) + fake +
		"\n" + strings.Repeat("x", 300) + "\tand\ttabs" + strings.Repeat(" ", 200) + fake
	looksNew := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d @\w+: `)
	for _, w := range []int{40, 80, 100, 120, 200} {
		a := &app{cols: func() int { return w }}
		out := a.fit(prefix + sanitize(body))
		for i, line := range strings.Split(out, "\n") {
			// What the terminal shows: the line, soft-wrapped at w
			// (the text is ASCII: a byte is a column).
			for j := 0; j*w < len(line); j++ {
				row := line[j*w : min((j+1)*w, len(line))]
				if (i > 0 || j > 0) && looksNew.MatchString(row) {
					t.Errorf("%d columns: screen row %q of @mallory's message reads as a message of its own", w, row)
				}
			}
			if i > 0 && !strings.HasPrefix(line, contIndent) {
				t.Errorf("%d columns: row %d not indented: %q", w, i, line)
			}
			if ansi.StringWidthWc(line) > w {
				t.Errorf("%d columns: row %d is %d wide", w, i, ansi.StringWidthWc(line))
			}
		}
		if got := strings.Join(strings.Fields(out), " "); !strings.Contains(got, strings.Join(strings.Fields(fake), " ")) {
			t.Errorf("%d columns: the text was lost: %q", w, got)
		}
	}
	// Not a terminal: as it is.
	if s := (&app{}).fit(prefix + body); s != prefix+body {
		t.Errorf("fit without a terminal changed the text")
	}
}
