package chatcmd

import (
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/x/ansi"
	"golang.org/x/term"
)

// contIndent starts every row of a message but its first: a message's
// own line breaks (sanitize) and the rows it is wrapped into (fit).
const contIndent = "    "

// termCols returns a function that reports the width of w's terminal,
// or nil if w is not a terminal: what listen and history print is then
// left as it is.
func termCols(w io.Writer) func() int {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return func() int {
		cols, _, err := term.GetSize(int(f.Fd()))
		if err != nil {
			return 0
		}
		return cols
	}
}

// fit hard-wraps the lines of s, as printed (time, sender, body), at the
// terminal's width, every row after a line's first indented. sanitize
// indents a message's own line breaks so that none of its lines passes
// for a message of its own, but a terminal's soft wrap of a long line
// starts rows at column 1 too: a body padded to the width would show a
// row reading "2026-12-07 09:00:00 @bank: ...". Not a terminal (or too
// narrow to indent): s as it is.
func (a *app) fit(s string) string {
	if a.cols == nil {
		return s
	}
	cols := a.cols()
	if cols <= 2*len(contIndent) {
		return s
	}
	// A tab's width depends on the column it starts at: spaces instead.
	s = strings.ReplaceAll(s, "\t", contIndent)
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			line = strings.TrimPrefix(line, contIndent) // sanitize's, given to every row below
		}
		for j, row := range strings.Split(ansi.WrapWc(line, cols-len(contIndent), ""), "\n") {
			if i > 0 || j > 0 {
				b.WriteString("\n" + contIndent)
			}
			b.WriteString(row)
		}
	}
	return b.String()
}
