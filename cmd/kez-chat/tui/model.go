package tui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textarea"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/message"
	"kez.lat/kez/p2p"
)

// Options tune the chat.
type Options struct {
	// Open is the conversation to open first (zero: the newest).
	Open kez.Handle
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Location is the time zone of times shown; time.Local if nil.
	Location *time.Location
	// Renderer draws the styles; a renderer of stdout if nil. NO_COLOR
	// and terminals without colour turn colours off through it.
	Renderer *lipgloss.Renderer
	// DownloadDir is where /fetch saves files ("": the current directory).
	DownloadDir string
	// FetchWait is how long /fetch and /browse wait for the sender to come
	// online (0: fail at once).
	FetchWait time.Duration
	// FetchMinRate is the slowest a sender's device may send to /fetch
	// and /browse ([client.FetchOptions.MinRate]).
	FetchMinRate p2p.MinRate
	// NoReceipts turns receipts off both ways: none is sent, and those
	// received do not change how own messages show.
	NoReceipts bool
}

// maxText bounds one message (an envelope is at most 64 KiB, base64
// included), as `kez-chat send` does.
const maxText = 46 << 10

// maxInputLines is the tallest the input grows before it scrolls.
const maxInputLines = 5

// Model is the chat's state. Create it with [New].
type Model struct {
	ctx  context.Context
	b    Backend
	opt  Options
	st   styles
	me   client.Account
	home string

	width, height int

	convs []*conv // newest activity first
	sel   int     // index in the filtered list
	open  *conv

	listFocus bool
	filtering bool
	filter    string

	input   textarea.Model
	sent    []string // what the user entered, for recall
	recall  int      // index into sent while recalling; len(sent) when not
	draft   string   // the input before recall started
	status  string
	statusW bool // the status is a warning

	conn      ConnMsg
	connKnown bool

	pick      *picker               // the files of the last /browse, to fetch one
	offers    map[string]kez.Handle // file IDs seen (announced or browsed) and whose
	transfers map[string]*transfer
	nextLocal int
	complete  []string          // completion candidates shown in the help bar
	prints    map[string]string // fingerprints by key: each costs thousands of hashes
	quitting  bool
}

// conv is one conversation.
type conv struct {
	h        kez.Handle
	contact  *client.Contact
	items    []*item
	unread   int
	unseen   []string // ids of received messages not yet read, for the read receipt
	last     int64    // unix seconds of the newest message
	presence *client.Presence
	scroll   int // lines scrolled up from the bottom
}

type itemKind int

const (
	kindMsg itemKind = iota
	kindNote
)

// item is one line group of a conversation pane: a message or a note of
// the chat itself.
type item struct {
	kind  itemKind
	e     client.Entry
	text  string // what e says, inert: made with the item (see setEntry), never in View
	state string // of an own message: sending, stored, failed: ...
	local int    // of an own message being sent
	note  string // of a note: text the chat wrote (others' parts sanitized)
	warn  bool
	key   string // of a note updated in place (a transfer)
	at    time.Time
	day   string // day separator shown above it ("" if the same day as the previous item)

	lines []string // rendered, for width w
	w     int
}

// New returns the chat of b's account. It reads the contacts and the
// history; a failure to read them is returned.
func New(ctx context.Context, b Backend, opt Options) (*Model, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Location == nil {
		opt.Location = time.Local
	}
	if opt.Renderer == nil {
		opt.Renderer = lipgloss.DefaultRenderer()
	}
	me, err := b.Account()
	if err != nil {
		return nil, err
	}
	m := &Model{ctx: ctx, b: b, opt: opt, st: newStyles(opt.Renderer), me: me, home: b.Domain(),
		offers: map[string]kez.Handle{}, transfers: map[string]*transfer{}, prints: map[string]string{}, width: 80, height: 24}
	m.input = newInput(opt.Renderer)
	if err := m.load(); err != nil {
		return nil, err
	}
	if !opt.Open.IsZero() {
		m.openConv(m.convOf(opt.Open))
	} else if len(m.convs) > 0 {
		m.openConv(m.convs[0])
	}
	m.status = "/help lists the commands"
	return m, nil
}

func newInput(r *lipgloss.Renderer) textarea.Model {
	ta := textarea.New()
	ta.ShowLineNumbers = false
	ta.Prompt = "> "
	ta.Placeholder = "a message, or /help"
	ta.CharLimit = maxText
	ta.MaxHeight = 0
	ta.SetHeight(1)
	ta.KeyMap.InsertNewline = key.NewBinding(key.WithKeys("alt+enter", "ctrl+j"))
	ta.KeyMap.LineNext = key.NewBinding(key.WithKeys("down"))
	ta.KeyMap.LinePrevious = key.NewBinding(key.WithKeys("up"))
	plain := r.NewStyle()
	for _, s := range []*textarea.Style{&ta.FocusedStyle, &ta.BlurredStyle} {
		s.Base, s.CursorLine, s.Text, s.Prompt, s.EndOfBuffer = plain, plain, plain, plain, plain
		s.Placeholder = r.NewStyle().Faint(true)
	}
	ta.Cursor.Style = r.NewStyle().Reverse(true)
	ta.Focus()
	return ta
}

// load reads the contacts and the whole history into conversations.
func (m *Model) load() error {
	cs, err := m.b.Contacts()
	if err != nil {
		return err
	}
	es, err := m.b.History(kez.Handle{})
	if err != nil {
		return err
	}
	m.convs = nil
	for i := range cs {
		m.convOf(cs[i].Handle).contact = &cs[i]
	}
	for _, e := range es {
		if e.Type == client.TypeReceipt {
			m.receipt(e)
			continue
		}
		m.convOf(e.Peer).add(m.msgItem(e, ""), m.opt.Location)
	}
	m.sortConvs()
	return nil
}

// receipt applies a received receipt to the own messages it names: a
// message shows delivered, then read, never going back.
func (m *Model) receipt(e client.Entry) {
	if m.opt.NoReceipts || e.Dir != client.DirIn || e.Quarantined {
		return
	}
	r, err := client.ParseReceipt(e.Plaintext)
	if err != nil {
		return
	}
	ids := make(map[string]bool, len(r.IDs))
	for _, id := range r.IDs {
		ids[id] = true
	}
	c := m.convOf(e.Peer)
	for i := len(c.items) - 1; i >= 0 && len(ids) > 0; i-- {
		it := c.items[i]
		if it.kind != kindMsg || it.e.Dir != client.DirOut || !ids[it.e.ID] {
			continue
		}
		delete(ids, it.e.ID)
		if it.state == "stored" || (it.state == client.ReceiptDelivered && r.Kind == client.ReceiptRead) {
			it.state, it.lines = r.Kind, nil
		}
	}
}

// reloadConv reads one conversation's contact and history again (after a
// trust releases quarantined messages), keeping the chat's own notes.
func (m *Model) reloadConv(c *conv) {
	es, err := m.b.History(c.h)
	if err != nil {
		m.setStatus(err.Error(), true)
		return
	}
	m.refreshContacts()
	notes := slices.DeleteFunc(slices.Clone(c.items), func(it *item) bool { return it.kind == kindMsg && it.local == 0 })
	c.items = nil
	for _, e := range es {
		if e.Type != client.TypeReceipt {
			c.add(m.msgItem(e, ""), m.opt.Location)
		}
	}
	for _, e := range es {
		if e.Type == client.TypeReceipt {
			m.receipt(e)
		}
	}
	for _, it := range notes {
		c.add(it, m.opt.Location)
	}
	slices.SortStableFunc(c.items, func(a, b *item) int { return a.at.Compare(b.at) })
	c.redays(m.opt.Location)
}

func (m *Model) refreshContacts() {
	cs, err := m.b.Contacts()
	if err != nil {
		m.setStatus(err.Error(), true)
		return
	}
	for i := range cs {
		m.convOf(cs[i].Handle).contact = &cs[i]
	}
}

func (m *Model) msgItem(e client.Entry, state string) *item {
	if e.Dir == client.DirOut && state == "" {
		state = "stored"
	}
	at := time.Unix(e.SentAt, 0)
	if e.Dir == client.DirIn && e.StoredAt > 0 {
		// Others choose SentAt; order (and days) go by when it arrived.
		at = time.Unix(e.StoredAt, 0)
	}
	it := &item{kind: kindMsg, state: state, at: at}
	if id := m.setEntry(it, e); id != "" {
		m.offers[id] = e.Peer
	}
	return it
}

// setEntry makes e the message of it, with what it says, and returns the
// ID of the file it offers ("" if none). A received file's offer is read
// here, once per item, never while drawing: the backend may wait on its
// lock (a broker dial), and View must not.
func (m *Model) setEntry(it *item, e client.Entry) string {
	var o *client.Offer
	var oerr error
	if e.Dir == client.DirIn && e.Type == message.TypeFileShare && !e.Quarantined {
		var offer client.Offer
		if offer, oerr = m.b.Announcement(e); oerr == nil {
			o = &offer
		}
	}
	it.e, it.text, it.lines = e, m.entryText(e, o, oerr), nil
	if o == nil {
		return ""
	}
	return o.ID
}

// convOf returns the conversation with h, creating it.
func (m *Model) convOf(h kez.Handle) *conv {
	for _, c := range m.convs {
		if c.h == h {
			return c
		}
	}
	c := &conv{h: h}
	m.convs = append(m.convs, c)
	return c
}

// add appends it, with a day separator if its day is not the previous
// item's.
func (c *conv) add(it *item, loc *time.Location) {
	it.day = ""
	if n := len(c.items); n == 0 || !sameDay(c.items[n-1].at.In(loc), it.at.In(loc)) {
		it.day = "x" // replaced by the date when rendered
	}
	c.items = append(c.items, it)
	if it.kind == kindMsg {
		c.last = max(c.last, it.at.Unix())
	}
}

// redays recomputes the day separators after a reorder.
func (c *conv) redays(loc *time.Location) {
	for i, it := range c.items {
		it.day, it.lines = "", nil
		if i == 0 || !sameDay(c.items[i-1].at.In(loc), it.at.In(loc)) {
			it.day = "x"
		}
	}
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd
}

// sortConvs orders the conversations newest activity first, then by
// handle, keeping the selection on the same conversation.
func (m *Model) sortConvs() {
	var selected *conv
	if vis := m.visible(); m.sel < len(vis) {
		selected = vis[m.sel]
	}
	slices.SortStableFunc(m.convs, func(a, b *conv) int {
		if a.last != b.last {
			return int(b.last - a.last)
		}
		return strings.Compare(a.h.String(), b.h.String())
	})
	if selected != nil {
		m.selectConv(selected)
	}
}

// visible returns the conversations the filter lets through.
func (m *Model) visible() []*conv {
	if m.filter == "" {
		return m.convs
	}
	var out []*conv
	f := strings.ToLower(strings.TrimPrefix(m.filter, "@"))
	for _, c := range m.convs {
		if strings.Contains(c.h.String(), f) {
			out = append(out, c)
		}
	}
	return out
}

func (m *Model) selectConv(c *conv) {
	for i, v := range m.visible() {
		if v == c {
			m.sel = i
		}
	}
}

// openConv shows c, and returns the read receipt for what it held
// unread.
func (m *Model) openConv(c *conv) tea.Cmd {
	m.open = c
	c.unread = 0
	m.selectConv(c)
	ids := c.unseen
	c.unseen = nil
	return m.sendReceipt(c.h, client.ReceiptRead, ids)
}

func (m *Model) setStatus(s string, warn bool) { m.status, m.statusW = s, warn }

// Init starts the cursor blinking.
func (m *Model) Init() tea.Cmd { return textarea.Blink }

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	case tea.MouseMsg:
		if msg.Action == tea.MouseActionPress && m.open != nil {
			switch msg.Button {
			case tea.MouseButtonWheelUp:
				m.scroll(3)
			case tea.MouseButtonWheelDown:
				m.scroll(-3)
			}
		}
		return m, nil
	case EventMsg:
		return m, m.event(client.Event(msg))
	case PresenceMsg:
		p := client.Presence(msg)
		m.convOf(p.Handle).presence = &p
		return m, nil
	case ConnMsg:
		m.conn, m.connKnown = msg, true
		return m, nil
	case NoteMsg:
		m.setStatus(display.Line(string(msg)), true)
		return m, nil
	case sentMsg:
		m.sent_(msg)
		return m, nil
	case resultMsg:
		m.result(msg)
		return m, nil
	case browsedMsg:
		m.browsed(msg)
		return m, nil
	case tickMsg:
		return m, m.tick()
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	return m, cmd
}

// event shows one inbox event, and returns the receipt to send for it.
func (m *Model) event(ev client.Event) tea.Cmd {
	if h := ev.Held; h != nil {
		m.setStatus(display.Line(fmt.Sprintf("message %d from %s left unread, read again later: %s", h.Seq, h.From, h.Reason)), true)
		return nil
	}
	if d := ev.Dropped; d != nil {
		from := d.From
		if from == "" {
			from = "an unparsable sender"
		}
		m.setStatus(display.Line(fmt.Sprintf("dropped message %d from %s: %s", d.Seq, from, d.Reason)), true)
		return nil
	}
	e := *ev.Entry
	if e.Type == client.TypeReceipt {
		m.receipt(e)
		return nil
	}
	c := m.convOf(e.Peer)
	if e.Warning != "" {
		m.refreshContacts()
	}
	if e.Warning == client.WarnNewContact {
		m.note(c, fmt.Sprintf("new contact %s pinned with key %s; compare the safety number: /verify", m.show(e.Peer), m.fingerprint(e.PeerKey)), false)
	}
	c.add(m.msgItem(e, ""), m.opt.Location)
	m.sortConvs()
	if e.Quarantined {
		return nil // not the contact's message: no receipt in its name
	}
	if c != m.open {
		c.unread++
		c.unseen = append(c.unseen, e.ID)
		return m.sendReceipt(c.h, client.ReceiptDelivered, []string{e.ID})
	}
	return m.sendReceipt(c.h, client.ReceiptRead, []string{e.ID})
}

// sendReceipt sends a receipt in the background, unless receipts are
// off; a failure is not worth the user's attention.
func (m *Model) sendReceipt(h kez.Handle, kind string, ids []string) tea.Cmd {
	if m.opt.NoReceipts || len(ids) == 0 {
		return nil
	}
	ctx, b := m.ctx, m.b
	for len(ids) > client.MaxReceiptIDs {
		ids = ids[len(ids)-client.MaxReceiptIDs:]
	}
	r := client.Receipt{Kind: kind, IDs: ids}
	return func() tea.Msg {
		_ = b.SendReceipt(ctx, h, r)
		return nil
	}
}

// note adds a note of the chat to conversation c (the open one if nil).
func (m *Model) note(c *conv, text string, warn bool) *item {
	if c == nil {
		c = m.open
	}
	it := &item{kind: kindNote, note: text, warn: warn, at: m.opt.Now()}
	if c == nil {
		m.setStatus(strings.ReplaceAll(text, "\n", " "), warn)
		return it
	}
	c.add(it, m.opt.Location)
	c.scroll = 0
	return it
}

func (m *Model) show(h kez.Handle) string { return display.Handle(m.home, h) }

// fingerprint is client.Fingerprint, remembered: the screen shows the
// same few keys on every frame.
func (m *Model) fingerprint(k kez.PublicKey) string {
	s := k.String()
	fp, ok := m.prints[s]
	if !ok {
		fp = client.Fingerprint(k)
		m.prints[s] = fp
	}
	return fp
}

// key handles a key press.
func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.String() {
	case "ctrl+c":
		m.quitting = true
		return m, tea.Quit
	case "pgup":
		m.scroll(m.paneHeight() - 1)
		return m, nil
	case "pgdown":
		m.scroll(-(m.paneHeight() - 1))
		return m, nil
	case "ctrl+n", "alt+down":
		return m, m.step(1)
	case "ctrl+p", "alt+up":
		return m, m.step(-1)
	}
	if m.listFocus {
		return m.listKey(k)
	}
	if m.pick != nil {
		if cmd, took := m.pickKey(k); took {
			return m, cmd
		}
	}
	switch k.String() {
	case "enter":
		return m, m.submit()
	case "tab":
		if strings.HasPrefix(m.input.Value(), "/") {
			m.completeInput()
			return m, nil
		}
		m.listFocus = true
		m.input.Blur()
		return m, nil
	case "esc":
		m.complete = nil
		return m, nil
	case "up":
		if m.input.Value() == "" || m.recall < len(m.sent) {
			m.recallStep(-1)
			return m, nil
		}
	case "down":
		if m.recall < len(m.sent) {
			m.recallStep(1)
			return m, nil
		}
	}
	m.complete = nil
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	m.fitInput()
	return m, cmd
}

func (m *Model) fitInput() {
	m.input.SetHeight(min(max(m.input.LineCount(), 1), maxInputLines))
}

// listKey handles a key while the conversation list has the focus.
func (m *Model) listKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	if m.filtering {
		switch k.Type {
		case tea.KeyEnter:
			m.filtering = false
			if vis := m.visible(); len(vis) > 0 {
				cmd = m.openConv(vis[min(m.sel, len(vis)-1)])
				m.focusInput()
			}
		case tea.KeyEsc:
			m.filtering, m.filter, m.sel = false, "", 0
			if m.open != nil {
				m.selectConv(m.open)
			}
		case tea.KeyBackspace:
			if r := []rune(m.filter); len(r) > 0 {
				m.filter = string(r[:len(r)-1])
			}
			m.sel = 0
		case tea.KeyRunes, tea.KeySpace:
			m.filter += display.Line(string(k.Runes))
			m.sel = 0
		}
		return m, cmd
	}
	switch k.String() {
	case "up", "k":
		m.sel = max(m.sel-1, 0)
	case "down", "j":
		m.sel = min(m.sel+1, max(len(m.visible())-1, 0))
	case "enter":
		if vis := m.visible(); m.sel < len(vis) {
			cmd = m.openConv(vis[m.sel])
		}
		m.focusInput()
	case "/":
		m.filtering, m.filter, m.sel = true, "", 0
	case "tab", "esc", "i":
		m.focusInput()
	}
	return m, cmd
}

func (m *Model) focusInput() {
	m.listFocus = false
	m.input.Focus()
}

// step opens the next (1) or previous (-1) conversation of the list.
func (m *Model) step(d int) tea.Cmd {
	vis := m.visible()
	if len(vis) == 0 {
		return nil
	}
	m.sel = (m.sel + d + len(vis)) % len(vis)
	return m.openConv(vis[m.sel])
}

func (m *Model) scroll(n int) {
	if m.open == nil {
		return
	}
	m.open.scroll = max(m.open.scroll+n, 0)
	// View clamps it to the lines there are.
}

// recallStep moves through what was entered before.
func (m *Model) recallStep(d int) {
	if len(m.sent) == 0 {
		return
	}
	if m.recall == len(m.sent) {
		m.draft = m.input.Value()
	}
	m.recall = min(max(m.recall+d, 0), len(m.sent))
	if m.recall == len(m.sent) {
		m.input.SetValue(m.draft)
	} else {
		m.input.SetValue(m.sent[m.recall])
	}
	m.fitInput()
}

// submit sends the input as a message, or runs it as a command.
func (m *Model) submit() tea.Cmd {
	text := m.input.Value()
	if strings.TrimSpace(text) == "" {
		return nil
	}
	m.sent = append(m.sent, text)
	m.recall = len(m.sent)
	m.complete = nil
	if strings.HasPrefix(text, "/") && !strings.HasPrefix(text, "//") {
		m.input.Reset()
		m.fitInput()
		return m.command(text)
	}
	text = strings.TrimPrefix(text, "/") // "//x" sends "/x"
	c := m.open
	if c == nil {
		m.setStatus("no conversation open: /add @handle starts one", true)
		return nil
	}
	if c.contact != nil && c.contact.ChangedKey != nil {
		m.setStatus(fmt.Sprintf("sending is disabled: %s's key changed; /verify, then /trust", m.show(c.h)), true)
		return nil
	}
	m.input.Reset()
	m.fitInput()
	m.nextLocal++
	local := m.nextLocal
	e := client.Entry{Dir: client.DirOut, Peer: c.h, SentAt: m.opt.Now().Unix(), Type: message.TypeText, Body: text}
	it := &item{kind: kindMsg, state: "sending", local: local, at: m.opt.Now()}
	m.setEntry(it, e)
	c.add(it, m.opt.Location)
	c.scroll = 0
	c.last = m.opt.Now().Unix()
	m.sortConvs()
	h, ctx, b := c.h, m.ctx, m.b
	return func() tea.Msg {
		e, err := b.SendText(ctx, h, text)
		return sentMsg{h: h, local: local, e: e, err: err}
	}
}

// sentMsg is the outcome of one send.
type sentMsg struct {
	h     kez.Handle
	local int
	e     client.Entry
	err   error
}

func (m *Model) sent_(s sentMsg) {
	c := m.convOf(s.h)
	for _, it := range c.items {
		if it.local != s.local {
			continue
		}
		it.lines = nil
		if errors.Is(s.err, client.ErrSentNotRecorded) {
			// Delivered: not "failed", which would have it sent again.
			m.setEntry(it, s.e)
			it.state, it.local = "delivered, not recorded on this device: do not resend", 0
			m.setStatus(errText(s.err), true)
			return
		}
		if s.err != nil {
			it.state = "failed: " + errText(s.err)
			if errors.Is(s.err, client.ErrKeyChanged) {
				m.refreshContacts()
			}
			return
		}
		m.setEntry(it, s.e)
		it.state, it.local = "stored", 0
		return
	}
}

// errText is an error with its hints, on one line.
func errText(err error) string {
	s := err.Error()
	for _, h := range client.Hints(err) {
		s += " (hint: " + h + ")"
	}
	return display.Line(s)
}
