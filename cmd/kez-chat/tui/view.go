package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/message"
	"kez.lat/kez/share"
)

// Widths are counted as terminals count them (wcwidth), so wide
// characters and emoji keep the columns aligned.
func width(s string) int              { return ansi.StringWidthWc(s) }
func truncate(s string, n int) string { return ansi.TruncateWc(s, max(n, 0), "…") }
func wrap(s string, n int) []string   { return strings.Split(ansi.WrapWc(s, max(n, 1), ""), "\n") }
func pad(s string, n int) string {
	s = truncate(s, n)
	return s + strings.Repeat(" ", max(n-width(s), 0))
}
func styled(st lipgloss.Style, s string) string { return st.Render(s) }

// timeIndent is the width of "15:04 ", under which messages wrap.
const timeIndent = 6

// View draws the screen.
func (m *Model) View() string {
	if m.quitting {
		return ""
	}
	w, h := max(m.width, 20), max(m.height, 8)
	var out []string
	out = append(out, m.headerLine(w))
	if m.connKnown && !m.conn.Up {
		why := "reconnecting"
		if m.conn.Err != nil {
			why = errText(m.conn.Err) + "; reconnecting"
		}
		out = append(out, styled(m.st.banner, pad(" broker unreachable: "+why+" (what you send now fails; messages wait in your inbox)", w)))
	}
	inputLines := strings.Split(m.input.View(), "\n")
	bodyH := max(h-len(out)-2-len(inputLines), 3)
	lw := 0
	if w >= 60 {
		lw = min(max(w/4, 18), 30)
	}
	rw := w - lw
	if lw > 0 {
		rw--
	}
	left := m.listLines(lw, bodyH)
	right := m.paneLines(rw, bodyH)
	for i := range bodyH {
		if lw > 0 {
			out = append(out, left[i]+m.st.sep.Render("│")+right[i])
		} else {
			out = append(out, right[i])
		}
	}
	status := m.status
	if status == "" {
		out = append(out, m.st.sep.Render(strings.Repeat("─", w)))
	} else if m.statusW {
		out = append(out, m.st.warn.Render(pad("! "+status, w)))
	} else {
		out = append(out, m.st.dim.Render(pad("─ "+status+" ", w)))
	}
	for _, l := range inputLines {
		out = append(out, pad(l, w))
	}
	out = append(out, m.st.dim.Render(pad(m.helpLine(), w)))
	return strings.Join(out, "\n")
}

func (m *Model) headerLine(w int) string {
	right := ""
	switch {
	case !m.connKnown:
		right = "connecting "
	case m.conn.Up:
		right = "connected "
	default:
		right = "offline "
	}
	left := " kez-chat  " + m.show(m.me.Handle)
	return m.st.header.Render(pad(left, w-width(right)) + right)
}

func (m *Model) helpLine() string {
	switch {
	case m.pick != nil:
		return m.pickLine()
	case len(m.complete) > 0:
		var b strings.Builder
		for _, c := range m.complete { // file names, handles, IDs: inert each
			b.WriteString(" " + display.Line(c) + " ")
		}
		return strings.TrimSuffix(b.String(), " ")
	case m.filtering:
		return " type to filter · Enter opens · Esc clears"
	case m.listFocus:
		return " ↑/↓ choose · Enter open · / filter · Tab back to the input · Ctrl-C quit"
	case m.open != nil && m.open.contact != nil && m.open.contact.ChangedKey != nil:
		return " sending disabled: /verify compares, /trust accepts the new key · Ctrl-C quit"
	}
	return " Enter send · Alt-Enter newline · Tab complete · PgUp/PgDn · /help · Ctrl-C quit"
}

// listLines draws the conversation list, lw wide and h high.
func (m *Model) listLines(lw, h int) []string {
	out := make([]string, 0, h)
	if lw == 0 {
		return out
	}
	if m.filtering || m.filter != "" {
		out = append(out, pad(" /"+m.filter+"▏", lw))
	}
	vis := m.visible()
	per := 2
	rows := (h - len(out)) / per
	first := 0
	if m.sel >= rows {
		first = m.sel - rows + 1
	}
	for i := first; i < len(vis) && i-first < rows; i++ {
		c := vis[i]
		dot := "○"
		if c.presence != nil && c.presence.State == client.PresenceOnline {
			dot = m.st.online.Render("●")
		}
		mark := " "
		if c == m.open {
			mark = ">"
		}
		name := m.show(c.h)
		if c.contact != nil && c.contact.ChangedKey != nil {
			name = "! " + name
		}
		count := ""
		if c.unread > 0 {
			count = fmt.Sprintf(" %d", c.unread)
		}
		line1 := pad(mark+dot+" "+name, lw-width(count)) + m.st.unread.Render(count)
		line2 := pad("   "+m.preview(c), lw)
		if i == m.sel && m.listFocus {
			line1, line2 = m.st.selected.Render(ansi.Strip(line1)), m.st.selected.Render(ansi.Strip(line2))
		} else {
			line2 = m.st.dim.Render(line2)
		}
		out = append(out, line1, line2)
	}
	if len(vis) == 0 {
		hint := " no conversations: /add @handle"
		if m.filter != "" {
			hint = " nothing matches"
		}
		out = append(out, pad(hint, lw))
	}
	for len(out) < h {
		out = append(out, strings.Repeat(" ", lw))
	}
	return out[:h]
}

// preview is the last message of c on one line.
func (m *Model) preview(c *conv) string {
	for i := len(c.items) - 1; i >= 0; i-- {
		it := c.items[i]
		if it.kind != kindMsg || it.e.Type == client.TypeReceipt {
			continue
		}
		s := it.text
		if it.e.Dir == client.DirOut {
			s = "you: " + s
		}
		return preview(s, 60)
	}
	return ""
}

// paneLines draws the open conversation, rw wide and h high.
func (m *Model) paneLines(rw, h int) []string {
	out := make([]string, 0, h)
	c := m.open
	if c == nil {
		out = append(out, pad(" no conversation open: /add @handle, or Tab to the list", rw))
		for len(out) < h {
			out = append(out, strings.Repeat(" ", rw))
		}
		return out
	}
	title := " " + m.show(c.h)
	if c.presence != nil {
		title += " · " + display.Presence(*c.presence, m.opt.Now())
	}
	if c.scroll > 0 {
		title += " · scrolled (PgDn)"
	}
	if c.contact != nil {
		title += " · key " + m.fingerprint(c.contact.Key)
	} else {
		title += " · not a contact"
	}
	out = append(out, m.st.header.Render(pad(title, rw)))
	if c.contact != nil && c.contact.ChangedKey != nil {
		for _, l := range m.keyBanner(c, rw) {
			out = append(out, m.st.warn.Render(pad(l, rw)))
		}
	}
	msgH := max(h-len(out), 1)
	// The last items, enough lines for the window scrolled up: walked
	// backwards, then only the window's lines are copied.
	need, count, first := c.scroll+msgH, 0, len(c.items)
	for first > 0 && count < need {
		first--
		count += len(m.itemLines(c.items[first], rw))
	}
	c.scroll = min(c.scroll, max(count-msgH, 0))
	skip := max(count-c.scroll-msgH, 0) // lines above the window
	win := make([]string, 0, msgH)
	for i := first; i < len(c.items) && len(win) < msgH; i++ {
		for _, l := range c.items[i].lines {
			if skip > 0 {
				skip--
				continue
			}
			if len(win) < min(msgH, count-c.scroll) {
				win = append(win, l)
			}
		}
	}
	for range msgH - len(win) {
		out = append(out, strings.Repeat(" ", rw))
	}
	for _, l := range win {
		out = append(out, pad(l, rw))
	}
	return out[:h]
}

// keyBanner explains a changed key: the old and new fingerprints, and
// why sending is off.
func (m *Model) keyBanner(c *conv, rw int) []string {
	who := m.show(c.h)
	text := fmt.Sprintf("! %s's key changed. pinned: %s  new: %s. "+
		"Messages signed by the new key are held back, not shown as %s's. Sending is disabled until you compare safety numbers (/verify) and accept the new key (/trust).",
		who, m.fingerprint(c.contact.Key), m.fingerprint(*c.contact.ChangedKey), who)
	return wrap(text, rw-1)
}

// itemLines renders one item (cached for the width).
func (m *Model) itemLines(it *item, rw int) []string {
	if it.lines != nil && it.w == rw {
		return it.lines
	}
	var lines []string
	if it.day != "" {
		d := " " + it.at.In(m.opt.Location).Format("Mon 2 Jan 2006") + " "
		side := max((rw-width(d))/2, 2)
		lines = append(lines, m.st.sep.Render(strings.Repeat("─", side)+d+strings.Repeat("─", max(rw-side-width(d), 0))))
	}
	switch it.kind {
	case kindNote:
		st := m.st.dim
		if it.warn {
			st = m.st.warn
		}
		mark := "* "
		for _, l := range strings.Split(it.note, "\n") {
			for _, wl := range wrap(l, rw-2) {
				lines = append(lines, st.Render(mark+wl))
				mark = "  "
			}
		}
	case kindMsg:
		if it.e.Type == client.TypeReceipt {
			break
		}
		hm := it.at.In(m.opt.Location).Format("15:04") + " "
		var who string
		switch {
		case it.e.Dir == client.DirOut:
			who = m.st.me.Render("you")
		case it.e.Quarantined:
			who = m.st.warn.Render("? unverified key")
		default:
			who = m.st.peer.Render(m.show(it.e.Peer))
		}
		body := it.text
		if it.e.Dir == client.DirOut && it.state != "" {
			st := m.st.state
			if strings.HasPrefix(it.state, "failed") {
				st = m.st.errText
			}
			body += "  " + st.Render("· "+it.state)
		}
		for i, l := range wrap(who+": "+body, rw-timeIndent) {
			if i == 0 {
				lines = append(lines, m.st.dim.Render(hm)+l)
			} else {
				lines = append(lines, strings.Repeat(" ", timeIndent)+l)
			}
		}
	}
	it.lines, it.w = lines, rw
	return lines
}

// entryText is what a message says, inert; o is the offer of a received
// file (nil if it could not be read: oerr says why).
func (m *Model) entryText(e client.Entry, o *client.Offer, oerr error) string {
	if e.Quarantined {
		return fmt.Sprintf("[held back: signed by key %s, which you have not trusted for %s; /verify, then /trust shows it]",
			m.fingerprint(e.PeerKey), m.show(e.Peer))
	}
	switch e.Type {
	case message.TypeText:
		return strings.ReplaceAll(display.Text(e.Body), "\t", "    ")
	case message.TypeFileShare:
		if e.Dir == client.DirOut {
			ann, err := share.ParseAnnouncement(e.Plaintext)
			if err != nil {
				return "[a file announcement]"
			}
			return fmt.Sprintf("[file] shared %s (%s)", display.Line(ann.Name), display.Size(ann.FileSize))
		}
		if o == nil {
			return "[a file announcement that cannot be read: " + errText(oerr) + "]"
		}
		return fmt.Sprintf("[file] %s (%s) · /fetch %s", display.Line(o.File.Name), display.Size(o.File.FileSize), o.ID)
	}
	return fmt.Sprintf("[a message of type %q this version cannot show]", display.Line(e.Type))
}

// paneHeight is roughly the height of the message area, for paging.
func (m *Model) paneHeight() int { return max(m.height-6, 3) }
