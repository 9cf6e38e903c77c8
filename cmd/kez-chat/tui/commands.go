package tui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
)

// commands are the slash commands, in the order /help lists them.
var commands = []struct{ name, args, help string }{
	{"add", "@handle", "look a handle up, verify its sigchain, pin its key, open the conversation"},
	{"verify", "[@handle]", "show the safety number to compare out of band"},
	{"profile", "[@handle]", "key, safety number, sigchain and the claims a contact makes"},
	{"trust", "[@handle]", "accept the changed key the banner shows"},
	{"share", "<path>", "share a file with this conversation's contact"},
	{"fetch", "<id>", "download a file shared with you (waits for the sender to come online)"},
	{"browse", "[@handle]", "list what a contact shares with you"},
	{"files", "", "list the files you share"},
	{"unshare", "<id> [@handle]", "stop sharing a file (with everyone, or one contact)"},
	{"search", "<text>", "search this conversation's history (all with /search -a <text>)"},
	{"help", "", "this list and the keys"},
	{"quit", "", "leave (Ctrl-C too)"},
}

const keysHelp = `keys: Enter sends · Alt-Enter or Ctrl-J a new line · Up/Down recall (empty input)
      Tab completes a command, else moves to the list (/ filters, Enter opens)
      Ctrl-N/Ctrl-P next/previous conversation · PgUp/PgDn or the wheel scroll
      //text sends a message starting with /`

// resultMsg is the outcome of a command run in the background: a note
// for conversation h (the open one if zero), and what to do after.
type resultMsg struct {
	h      kez.Handle
	text   string
	warn   bool
	open   bool // open conversation h
	reload bool // read h's contact and history again
	added  *client.Entry
	key    string // the transfer it ends
}

// browsedMsg is what /browse found: the files h shares with the user.
type browsedMsg struct {
	h    kez.Handle
	list client.Listing
}

// picker is a list of files to fetch from, shown in the help line: Up and
// Down choose, Enter fetches, Esc closes.
type picker struct {
	files []client.Offer
	i     int
}

// browsed shows a /browse result in h's conversation and, if it lists
// files, opens the picker on them.
func (m *Model) browsed(b browsedMsg) {
	var s strings.Builder
	if len(b.list.Files) == 0 {
		fmt.Fprintf(&s, "%s shares nothing with you", m.show(b.h))
	} else {
		fmt.Fprintf(&s, "%s shares with you (↑/↓ and Enter fetch one, or /fetch ID):", m.show(b.h))
	}
	for _, o := range b.list.Files {
		m.offers[o.ID] = b.h
		fmt.Fprintf(&s, "\n  %s  %s  %s", o.ID, display.Line(o.File.Name), display.Size(o.File.FileSize))
	}
	if b.list.Problem != "" {
		fmt.Fprintf(&s, "\nsome entries for you do not open: %s", display.Line(b.list.Problem))
	}
	m.result(resultMsg{h: b.h, text: s.String()})
	m.pick = nil
	if len(b.list.Files) > 0 {
		m.pick = &picker{files: b.list.Files}
	}
}

// pickKey handles a key while the picker is open; it reports whether it
// took the key.
func (m *Model) pickKey(k tea.KeyMsg) (tea.Cmd, bool) {
	p := m.pick
	switch k.String() {
	case "up":
		p.i = (p.i + len(p.files) - 1) % len(p.files)
	case "down":
		p.i = (p.i + 1) % len(p.files)
	case "enter":
		m.pick = nil
		return m.command("/fetch " + p.files[p.i].ID), true
	case "esc":
		m.pick = nil
	default:
		m.pick = nil // typing closes it
		return nil, false
	}
	return nil, true
}

// pickLine is the help line of an open picker.
func (m *Model) pickLine() string {
	o := m.pick.files[m.pick.i]
	return fmt.Sprintf(" fetch %d/%d: %s  %s  %s · ↑/↓ choose · Enter fetch · Esc close",
		m.pick.i+1, len(m.pick.files), o.ID, display.Line(o.File.Name), display.Size(o.File.FileSize))
}

// command runs a slash command.
func (m *Model) command(line string) tea.Cmd {
	name, rest, _ := strings.Cut(strings.TrimPrefix(line, "/"), " ")
	args := strings.Fields(rest)
	ctx, b := m.ctx, m.b
	current := kez.Handle{}
	if m.open != nil {
		current = m.open.h
	}
	// handleArg parses args[i] as a handle, defaulting to the open
	// conversation.
	handleArg := func(i int) (kez.Handle, bool) {
		if i < len(args) {
			h, err := b.ParseHandle(args[i])
			if err != nil {
				m.setStatus(fmt.Sprintf("/%s: %s", name, errText(err)), true)
				return h, false
			}
			return h, true
		}
		if current.IsZero() {
			m.setStatus(fmt.Sprintf("/%s: name a handle, or open a conversation", name), true)
			return current, false
		}
		return current, true
	}
	switch name {
	case "help":
		var b strings.Builder
		b.WriteString("commands:")
		for _, c := range commands {
			fmt.Fprintf(&b, "\n  /%-8s %-15s %s", c.name, c.args, c.help)
		}
		b.WriteString("\n" + keysHelp)
		m.note(nil, b.String(), false)
	case "quit", "q":
		m.quitting = true
		return tea.Quit
	case "add":
		if len(args) != 1 {
			m.setStatus("usage: /add @handle", true)
			return nil
		}
		h, ok := handleArg(0)
		if !ok {
			return nil
		}
		m.setStatus("looking up "+m.show(h)+"...", false)
		return func() tea.Msg {
			ct, added, err := b.Add(ctx, h)
			if err != nil {
				return resultMsg{text: "/add " + m.show(h) + ": " + errText(err), warn: true}
			}
			what := "is already a contact"
			if added {
				what = "pinned"
			}
			return resultMsg{h: h, open: true, reload: true, text: fmt.Sprintf("%s %s, key fingerprint %s; compare the safety number: /verify",
				m.show(ct.Handle), what, m.fingerprint(ct.Key))}
		}
	case "verify", "profile":
		h, ok := handleArg(0)
		if !ok {
			return nil
		}
		v, err := b.Verify(h)
		if err != nil {
			m.setStatus("/"+name+": "+errText(err), true)
			return nil
		}
		if name == "profile" {
			m.note(nil, display.Lines(display.Profile(m.home, v, m.opt.Location)), false)
			return nil
		}
		text := fmt.Sprintf("safety number with %s (pinned key %s):\n  %s", m.show(h), m.fingerprint(v.Contact.Key), v.SafetyNumber)
		if v.ChangedSafetyNumber != "" {
			// /trust pins this key, and only while it is still the
			// change recorded (client.Client.Trust).
			if err := b.MarkShown(h, *v.Contact.ChangedKey); err != nil {
				m.setStatus("/verify: "+errText(err), true)
				return nil
			}
			text += fmt.Sprintf("\nthe server now names another key (%s); with it the number would be:\n  %s\nif %s reads you this second number, accept it: /trust",
				m.fingerprint(*v.Contact.ChangedKey), v.ChangedSafetyNumber, m.show(h))
		}
		m.note(nil, text, false)
	case "trust":
		h, ok := handleArg(0)
		if !ok {
			return nil
		}
		c := m.convOf(h)
		if c.contact == nil || c.contact.ChangedKey == nil {
			m.setStatus(m.show(h)+"'s key has not changed: nothing to trust", false)
			return nil
		}
		// The key /verify showed, and only while it is still the change
		// recorded: never whatever the server names by now.
		return func() tea.Msg {
			ct, _, err := b.Trust(ctx, h, kez.PublicKey{})
			if errors.Is(err, client.ErrNotShown) {
				return resultMsg{h: h, warn: true, reload: true,
					text: "/trust: compare the safety number of " + m.show(h) + "'s new key first (/verify), then /trust"}
			}
			if err != nil {
				return resultMsg{h: h, text: "/trust: " + errText(err), warn: true, reload: true}
			}
			return resultMsg{h: h, reload: true, text: fmt.Sprintf("now trusting %s with key %s; sending is enabled", m.show(h), m.fingerprint(ct.Key))}
		}
	case "share":
		path := strings.TrimSpace(rest)
		if path == "" || current.IsZero() {
			m.setStatus("usage: /share <path>, in the conversation of whom to share with", true)
			return nil
		}
		path = expandHome(path)
		fi, err := os.Stat(path)
		if err != nil {
			m.setStatus("/share: "+display.Line(err.Error()), true)
			return nil
		}
		tr := m.startTransfer("share:"+path, current, "encrypting "+display.Line(filepath.Base(path)), fi.Size())
		return tea.Batch(m.tickCmd(), func() tea.Msg {
			res, err := b.Share(ctx, current, path, func(done int64) { tr.set(done, fi.Size(), "") })
			if err != nil {
				return resultMsg{h: current, key: tr.key, text: "/share: " + errText(err), warn: true}
			}
			e := res.Message
			return resultMsg{h: current, key: tr.key, added: &e, text: fmt.Sprintf("shared %s (%s) as %s; %s fetches it from this device while the chat runs",
				display.Line(res.File.Name), display.Size(res.File.FileSize), res.ID, m.show(current))}
		})
	case "fetch":
		if len(args) != 1 {
			m.setStatus("usage: /fetch <id>", true)
			return nil
		}
		id := args[0]
		var from kez.Handle
		for known, h := range m.offers {
			if strings.HasPrefix(known, id) {
				from = h
			}
		}
		where := current
		if !from.IsZero() {
			where = from
		}
		tr := m.startTransfer("fetch:"+id, where, "fetching "+display.Line(id), 0)
		opts := client.FetchOptions{From: from, Output: m.opt.DownloadDir, Wait: m.opt.FetchWait, MinRate: m.opt.FetchMinRate,
			Progress: func(p client.FetchProgress) { tr.set(p.Done, p.Total, p.Route) },
			Waiting: func(h kez.Handle, until time.Time) {
				tr.wait(fmt.Sprintf("waiting for %s to come online (until %s)", m.show(h), until.In(m.opt.Location).Format("15:04")))
			}}
		return tea.Batch(m.tickCmd(), func() tea.Msg {
			res, err := b.Fetch(ctx, id, opts)
			if err != nil {
				return resultMsg{h: where, key: tr.key, text: "/fetch " + display.Line(id) + ": " + errText(err), warn: true}
			}
			return resultMsg{h: res.Offer.From, key: tr.key, text: fmt.Sprintf("fetched %s (%s) from %s, verified and decrypted: %s",
				display.Line(res.Offer.File.Name), display.Size(res.Offer.File.FileSize), m.show(res.Offer.From), display.Line(res.Path))}
		})
	case "browse":
		h, ok := handleArg(0)
		if !ok {
			return nil
		}
		m.setStatus("asking "+m.show(h)+"'s device for the files shared with you...", false)
		opts := client.FetchOptions{Wait: m.opt.FetchWait, MinRate: m.opt.FetchMinRate}
		return func() tea.Msg {
			l, err := b.Browse(ctx, h, opts)
			if err != nil {
				return resultMsg{h: h, text: "/browse: " + errText(err), warn: true}
			}
			return browsedMsg{h: h, list: l}
		}
	case "files":
		fs, err := b.Files()
		if err != nil {
			m.setStatus("/files: "+errText(err), true)
			return nil
		}
		var s strings.Builder
		if len(fs) == 0 {
			s.WriteString("you share no files; /share <path> shares one with this conversation's contact")
		} else {
			s.WriteString("files you share:")
		}
		for _, f := range fs {
			var with []string
			for _, r := range f.With {
				with = append(with, m.show(r.Handle))
			}
			fmt.Fprintf(&s, "\n  %s  %s  %s  with %s", f.ID, display.Line(f.File.Name), display.Size(f.File.FileSize), strings.Join(with, ", "))
		}
		m.note(nil, s.String(), false)
	case "unshare":
		if len(args) < 1 || len(args) > 2 {
			m.setStatus("usage: /unshare <id> [@handle]", true)
			return nil
		}
		var h kez.Handle
		if len(args) == 2 {
			var ok bool
			if h, ok = handleArg(1); !ok {
				return nil
			}
		}
		id := args[0]
		return func() tea.Msg {
			f, err := b.Unshare(ctx, id, h)
			if err != nil {
				return resultMsg{text: "/unshare: " + errText(err), warn: true}
			}
			who := "anyone"
			if !h.IsZero() {
				who = m.show(h)
			}
			return resultMsg{text: fmt.Sprintf("%s %s is no longer shared with %s", f.ID, display.Line(f.File.Name), who)}
		}
	case "search":
		all := len(args) > 0 && args[0] == "-a"
		q := strings.TrimSpace(rest)
		if all {
			q = strings.TrimSpace(strings.TrimPrefix(q, "-a"))
		}
		if q == "" {
			m.setStatus("usage: /search <text>", true)
			return nil
		}
		m.search(q, all)
	default:
		m.setStatus(fmt.Sprintf("unknown command /%s; /help lists them", display.Line(name)), true)
	}
	return nil
}

// search notes the messages containing q (case-insensitive).
func (m *Model) search(q string, all bool) {
	var hits []string
	lq := strings.ToLower(q)
	for _, c := range m.convs {
		if !all && c != m.open {
			continue
		}
		for _, it := range c.items {
			if it.kind != kindMsg || it.e.Type != "text" || !strings.Contains(strings.ToLower(it.e.Body), lq) {
				continue
			}
			who := m.show(c.h)
			if it.e.Dir == client.DirOut {
				who = "you to " + who
			}
			hits = append(hits, fmt.Sprintf("  %s %s: %s", it.at.In(m.opt.Location).Format("2006-01-02 15:04"), who, preview(it.e.Body, 60)))
		}
	}
	text := fmt.Sprintf("%d messages contain %q", len(hits), display.Line(q))
	if len(hits) > 0 {
		text += ":\n" + strings.Join(hits, "\n")
	}
	m.note(nil, text, false)
}

// preview is s on one line, inert, cut to n cells.
func preview(s string, n int) string {
	return truncate(display.Line(strings.Join(strings.Fields(s), " ")), n)
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// result shows what a background command did.
func (m *Model) result(r resultMsg) {
	var c *conv
	if !r.h.IsZero() {
		c = m.convOf(r.h)
	}
	if r.key != "" {
		if tr := m.transfers[r.key]; tr != nil {
			delete(m.transfers, r.key)
			tr.it.note, tr.it.warn, tr.it.lines = r.text, r.warn, nil
			if r.added != nil {
				m.convOf(r.h).add(m.msgItem(*r.added, ""), m.opt.Location)
			}
			m.setStatus("", false)
			return
		}
	}
	if r.reload && c != nil {
		m.reloadConv(c)
	}
	if r.open && c != nil {
		m.openConv(c)
		m.sortConvs()
	}
	if r.added != nil && c != nil {
		c.add(m.msgItem(*r.added, ""), m.opt.Location)
	}
	if m.open == nil {
		m.setStatus(r.text, r.warn)
		return
	}
	// In the conversation in view: a result elsewhere would go unseen.
	m.note(nil, r.text, r.warn)
	m.setStatus("", false)
}

// transfer is a /share or /fetch running in the background; its note in
// the pane shows its progress, updated on each tick.
type transfer struct {
	key  string
	what string
	it   *item

	mu             sync.Mutex
	done, total    int64
	route, waiting string
}

func (t *transfer) set(done, total int64, route string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done, t.total, t.route, t.waiting = done, total, route, ""
}

func (t *transfer) wait(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting = s
}

// text is the progress line: "fetching x  [=====     ] 50% of 3.1 MiB (direct)".
func (t *transfer) text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiting != "" {
		return t.what + ": " + t.waiting
	}
	if t.total <= 0 {
		return t.what + "..."
	}
	const w = 20
	n := int(min(t.done*w/t.total, w))
	s := fmt.Sprintf("%s  [%s%s] %d%% of %s", t.what, strings.Repeat("=", n), strings.Repeat(" ", w-n), t.done*100/t.total, display.Size(t.total))
	if t.route != "" {
		s += " (" + t.route + ")"
	}
	return s
}

func (m *Model) startTransfer(key string, h kez.Handle, what string, total int64) *transfer {
	tr := &transfer{key: key, what: what, total: total}
	var c *conv
	if !h.IsZero() {
		c = m.convOf(h)
	}
	tr.it = m.note(c, tr.text(), false)
	tr.it.key = key
	m.transfers[key] = tr
	return tr
}

type tickMsg struct{}

func (m *Model) tickCmd() tea.Cmd {
	return tea.Tick(100*time.Millisecond, func(time.Time) tea.Msg { return tickMsg{} })
}

// tick refreshes the transfers' notes, and ticks again while any runs.
func (m *Model) tick() tea.Cmd {
	if len(m.transfers) == 0 {
		return nil
	}
	for _, tr := range m.transfers {
		if s := tr.text(); s != tr.it.note {
			tr.it.note, tr.it.lines = s, nil
		}
	}
	return m.tickCmd()
}

// completeInput completes the command or argument at the end of the
// input: the longest common prefix of the candidates, which the help
// bar lists when there are several.
func (m *Model) completeInput() {
	v := m.input.Value()
	name, rest, hasArg := strings.Cut(strings.TrimPrefix(v, "/"), " ")
	var cands []string
	var word string
	if !hasArg {
		word = name
		for _, c := range commands {
			if strings.HasPrefix(c.name, name) {
				cands = append(cands, c.name+" ")
			}
		}
	} else {
		fields := strings.Fields(rest)
		word = ""
		if len(fields) > 0 && !strings.HasSuffix(rest, " ") {
			word = fields[len(fields)-1]
		}
		switch name {
		case "share":
			word = strings.TrimLeft(rest, " ")
			cands = completePath(word)
		case "add", "verify", "profile", "trust", "browse":
			for _, c := range m.convs {
				if s := m.show(c.h); strings.HasPrefix(s, word) || strings.HasPrefix(strings.TrimPrefix(s, "@"), word) {
					cands = append(cands, s+" ")
				}
			}
		case "fetch":
			for id := range m.offers {
				if strings.HasPrefix(id, word) {
					cands = append(cands, id)
				}
			}
		case "unshare":
			if fs, err := m.b.Files(); err == nil {
				for _, f := range fs {
					if strings.HasPrefix(f.ID, word) {
						cands = append(cands, f.ID+" ")
					}
				}
			}
		}
	}
	slices.Sort(cands)
	if len(cands) == 0 {
		m.setStatus("no completion", false)
		return
	}
	common := cands[0]
	for _, c := range cands[1:] {
		for !strings.HasPrefix(c, common) {
			common = common[:len(common)-1]
		}
	}
	if len(common) > len(word) || (len(cands) == 1 && common != word) {
		m.input.SetValue(v[:len(v)-len(word)] + common)
		m.input.CursorEnd()
	}
	m.complete = nil
	if len(cands) > 1 {
		m.complete = cands
	}
}

// completePath lists the paths that start with prefix (directories with a
// trailing slash). A name that does not print as itself (an escape
// sequence, a bidi override: a file from an archive or a download) is
// left out: completed into the input or listed in the help line, it
// would reach the terminal raw; the user can still type its path.
func completePath(prefix string) []string {
	dir, base := filepath.Split(expandHome(prefix))
	shownDir, _ := filepath.Split(prefix)
	list := dir
	if list == "" {
		list = "."
	}
	ents, err := os.ReadDir(list)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, base) || (strings.HasPrefix(n, ".") && !strings.HasPrefix(base, ".")) || display.Line(n) != n {
			continue
		}
		if e.IsDir() {
			n += "/"
		}
		out = append(out, shownDir+n)
	}
	return out
}
