package tui_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/tui"
	"kez.lat/kez/message"
	"kez.lat/kez/share"
	"kez.lat/kez/sigchain"
)

// now is the fake clock: Tuesday 1 December 2026, 14:30 UTC.
var now = time.Date(2026, 12, 1, 14, 30, 0, 0, time.UTC)

func text(dir string, peer string, at time.Time, body string) client.Entry {
	return client.Entry{Dir: dir, Peer: handle(peer), PeerKey: key(peer[0]), SentAt: at.Unix(), StoredAt: at.Unix(), Type: message.TypeText, Body: body}
}

// world is alice's profile: bob and carol as contacts, a conversation
// with bob across two days and one from carol.
func world() *fake {
	f := &fake{now: now, me: client.Account{Handle: handle("alice"), Primary: key('a')}}
	f.contacts = []client.Contact{{Handle: handle("bob"), Key: key('b')}, {Handle: handle("carol"), Key: key('c')}}
	f.history = []client.Entry{
		text(client.DirIn, "bob", now.Add(-26*time.Hour), "hi alice, lunch tomorrow?"),
		text(client.DirOut, "bob", now.Add(-25*time.Hour), "sure: 12:30 at the usual place"),
		text(client.DirIn, "carol", now.Add(-3*time.Hour), "did you see the 漢字 test 🎉?"),
		text(client.DirIn, "bob", now.Add(-time.Hour), "running late\nsee you in 10"),
	}
	return f
}

func newModel(t testing.TB, f *fake, opt tui.Options) *tui.Model {
	t.Helper()
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	opt.Now, opt.Location, opt.Renderer = func() time.Time { return now }, time.UTC, r
	m, err := tui.New(context.Background(), f, opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run starts m in a teatest program of 80x24.
func run(t *testing.T, m *tui.Model) *teatest.TestModel {
	t.Helper()
	return teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
}

// drawn is all a test program has drawn so far (tests run one at a
// time).
var drawn = map[*teatest.TestModel]string{}

// waitScreen waits until the program has drawn a line containing want
// (the renderer writes each changed line whole), at any time since it
// started. The model's state itself is checked once the program ended.
func waitScreen(t *testing.T, tm *teatest.TestModel, _ *tui.Model, want string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
		all := drawn[tm] + ansi.Strip(string(b))
		if strings.Contains(all, want) {
			drawn[tm] = all
			return true
		}
		return false
	}, teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
}

// screen is the model's view as text, read once the program has ended.
func screen(m *tui.Model) string { return ansi.Strip(m.View()) }

func final(t *testing.T, tm *teatest.TestModel) *tui.Model {
	t.Helper()
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(3*time.Second)).(*tui.Model)
}

func typeLine(tm *teatest.TestModel, s string) {
	tm.Type(s)
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
}

// TestScreen is the golden screen of a conversation: the list newest
// first with previews, day separators, senders and times, a multi-line
// message, wide characters aligned.
func TestScreen(t *testing.T) {
	m := newModel(t, world(), tui.Options{})
	tm := run(t, m)
	m = final(t, tm)
	golden.RequireEqual(t, []byte(screen(m)))
}

// TestSend: a message shows as sending, then stored once the client
// returns; the conversation moves to the top.
func TestSend(t *testing.T) {
	f := world()
	f.sendGate = make(chan struct{})
	m := newModel(t, f, tui.Options{Open: handle("carol")})
	tm := run(t, m)
	typeLine(tm, "on my way")
	waitScreen(t, tm, m, "you: on my way  · sending")
	close(f.sendGate)
	waitScreen(t, tm, m, "you: on my way  · stored")
	m = final(t, tm)
	if len(f.sent) != 1 || f.sent[0] != "on my way" {
		t.Fatalf("sent %q", f.sent)
	}
	golden.RequireEqual(t, []byte(screen(m)))
}

// TestSendFails: a failed send says why, with the client's hint.
func TestSendFails(t *testing.T) {
	f := world()
	f.sendErr = &client.HintError{Err: client.ErrUnreachable, Hints: []string{"is the broker running?"}}
	m := newModel(t, f, tui.Options{})
	tm := run(t, m)
	typeLine(tm, "hello?")
	waitScreen(t, tm, m, "· failed: server")
	if s := screen(final(t, tm)); !strings.Contains(s, "failed: server unreachable (hint: is") || !strings.Contains(s, "the broker running?)") {
		t.Errorf("no reason:\n%s", s)
	}
}

// TestSendNotRecorded: a message delivered but not recorded in the
// history shows as delivered, with a warning not to send it again,
// never as failed.
func TestSendNotRecorded(t *testing.T) {
	f := world()
	f.sendErr = &client.HintError{Err: fmt.Errorf("to @bob: %w: disk full", client.ErrSentNotRecorded), Hints: []string{"do not send it again"}}
	m := newModel(t, f, tui.Options{})
	tm := run(t, m)
	typeLine(tm, "pay 100")
	waitScreen(t, tm, m, "you: pay 100  · delivered")
	s := screen(final(t, tm))
	if strings.Contains(s, "failed") || !strings.Contains(s, "do not resend") {
		t.Errorf("a delivered message not recorded:\n%s", s)
	}
}

// TestLive: messages arriving for another conversation count as unread
// and bring it to the top; opening it clears the count.
func TestLive(t *testing.T) {
	f := world()
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	for i := range 3 {
		e := text(client.DirIn, "carol", now.Add(time.Duration(i)*time.Second), fmt.Sprintf("ping %d", i))
		tm.Send(tui.EventMsg{Entry: &e})
	}
	tm.Send(tui.PresenceMsg{Handle: handle("carol"), Key: key('c'), State: client.PresenceOnline})
	waitScreen(t, tm, m, "● @carol")
	waitScreen(t, tm, m, "ping 2")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlP})
	waitScreen(t, tm, m, "@carol · online")
	m = final(t, tm)
	s := screen(m)
	left := func(i int) string { return strings.TrimSpace(strings.Split(strings.Split(s, "\n")[i], "│")[0]) }
	if !strings.Contains(s, "@carol: ping 2") || left(1) != ">● @carol" || left(2) != "ping 2" {
		t.Errorf("after opening carol (first, unread cleared, online):\n%s", s)
	}
}

// TestInert: escape sequences, C1 controls and bidi overrides in
// others' messages, notes and drop reasons reach the screen as text.
// With colours off the chat itself writes no escape, so any ESC on the
// screen would be the attacker's.
func TestInert(t *testing.T) {
	f := world()
	evil := "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\u009b31m\u202eevil\rX"
	f.history = append(f.history, text(client.DirIn, "bob", now, evil))
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	tm.Send(tui.EventMsg{Dropped: &client.Dropped{Seq: 7, From: "ed25519:\x1b[31m", Reason: "bad\x1b]0;title\x07"}})
	waitScreen(t, tm, m, "dropped message 7")
	m = final(t, tm)
	v := m.View()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\u202e", "\r"} {
		if strings.Contains(v, bad) {
			t.Errorf("the screen carries %q:\n%q", bad, v)
		}
	}
	for _, want := range []string{`\u001b]52;c;cHduZWQ=\u0007`, `\u202eevil\u000d`, `bad\u001b]0;title\u0007`} {
		if !strings.Contains(v, want) {
			t.Errorf("the screen lacks %q:\n%s", want, v)
		}
	}
}

// TestHeldShown: a message held unread (its sender not identified) is
// told in the status line, with the reason as inert text (it quotes the
// home server).
func TestHeldShown(t *testing.T) {
	m := newModel(t, world(), tui.Options{Open: handle("bob")})
	tm := run(t, m)
	tm.Send(tui.EventMsg{Held: &client.Held{Seq: 8, From: "ed25519:ab", Reason: "lags\x1b]0;title\x07"}})
	waitScreen(t, tm, m, "message 8 from ed25519:ab left unread")
	v := final(t, tm).View()
	if strings.Contains(v, "\x1b]0") || !strings.Contains(v, `lags\u001b]0;`) {
		t.Errorf("the screen shows the reason as %q", v)
	}
}

// keyChanged runs the chat of a profile whose contact bob changed his
// key to nk and sent a message with it, and tries to send to bob.
func keyChanged(t *testing.T) (*fake, kez.PublicKey, *tui.Model, *teatest.TestModel) {
	t.Helper()
	f := world()
	nk := key('m')
	f.contacts[0].ChangedKey = &nk
	q := text(client.DirIn, "bob", now, "")
	q.PeerKey, q.Quarantined, q.Warning = nk, true, client.WarnKeyChanged
	f.history = append(f.history, q)
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	typeLine(tm, "are you there?")
	waitScreen(t, tm, m, "sending is disabled")
	return f, nk, m, tm
}

// TestKeyChange: a changed key shows both fingerprints, sending is
// refused, and /trust trusts the key the banner showed.
func TestKeyChange(t *testing.T) {
	f, nk, m, tm := keyChanged(t)
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlU}) // clear the refused text
	typeLine(tm, "/verify")
	waitScreen(t, tm, m, "the server now names another key")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlU})
	typeLine(tm, "/trust")
	waitScreen(t, tm, m, "now trusting @bob")
	m = final(t, tm)
	if len(f.trusted) != 1 || !f.trusted[0].Equal(nk) {
		t.Fatalf("trusted %v, want the key shown %v", f.trusted, nk)
	}
	if s := screen(m); strings.Contains(s, "key changed. pinned") {
		t.Errorf("the banner stays after /trust:\n%s", s)
	}
}

// TestTrustNeedsVerify: /trust pins nothing before /verify showed the
// changed key's safety number, nor after another key was recorded
// since (a hostile server naming yet another key): the user is asked to
// compare the number first.
func TestTrustNeedsVerify(t *testing.T) {
	f, _, m, tm := keyChanged(t)
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlU})
	typeLine(tm, "/trust")
	waitScreen(t, tm, m, "compare the safety number of @bob")
	typeLine(tm, "/verify")
	waitScreen(t, tm, m, "the server now names another key")
	// A listen records yet another key, which clears what was shown.
	f.mu.Lock()
	other := key('o')
	f.contacts[0].ChangedKey, f.contacts[0].ShownKey = &other, nil
	f.mu.Unlock()
	typeLine(tm, "/trust")
	waitScreen(t, tm, m, "compare the safety number of @bob")
	final(t, tm)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.trusted) != 0 {
		t.Fatalf("trusted %v without its number shown", f.trusted)
	}
}

// TestKeyChangeScreen is the golden screen of a changed key.
func TestKeyChangeScreen(t *testing.T) {
	f, _, m, tm := keyChanged(t)
	m = final(t, tm)
	s := screen(m)
	for _, want := range []string{"key changed. pinned: " + client.Fingerprint(key('b'))[:11], "? unverified key: [held back", "! @bob"} {
		if !strings.Contains(s, want) {
			t.Errorf("screen lacks %q:\n%s", want, s)
		}
	}
	if len(f.sent) != 0 {
		t.Fatalf("sent %q past the banner", f.sent)
	}
	golden.RequireEqual(t, []byte(s))
}

// TestBrokerBanner: the broker going away shows a banner, and its
// return removes it.
func TestBrokerBanner(t *testing.T) {
	m := newModel(t, world(), tui.Options{})
	tm := run(t, m)
	tm.Send(tui.ConnMsg{Err: fmt.Errorf("%w: connection refused", client.ErrUnreachable)})
	waitScreen(t, tm, m, "broker unreachable: server unreachable: connection refused; reconnecting")
	tm.Send(tui.ConnMsg{Up: true})
	waitScreen(t, tm, m, "connected")
	if s := screen(final(t, tm)); strings.Contains(s, "broker unreachable") {
		t.Errorf("banner after reconnecting:\n%s", s)
	}
}

// TestCompletionAndRecall: Tab completes commands and handles; Up and
// Down recall what was entered.
func TestCompletionAndRecall(t *testing.T) {
	f := world()
	m := newModel(t, f, tui.Options{})
	tm := run(t, m)
	tm.Type("/ver")
	tm.Send(tea.KeyMsg{Type: tea.KeyTab})
	tm.Type("@c")
	tm.Send(tea.KeyMsg{Type: tea.KeyTab})
	waitScreen(t, tm, m, "> /verify @carol")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitScreen(t, tm, m, "safety number with @carol")
	typeLine(tm, "one")
	typeLine(tm, "two")
	waitScreen(t, tm, m, "you: two")
	tm.Send(tea.KeyMsg{Type: tea.KeyUp})
	tm.Send(tea.KeyMsg{Type: tea.KeyUp})
	waitScreen(t, tm, m, "> one")
	tm.Send(tea.KeyMsg{Type: tea.KeyDown})
	waitScreen(t, tm, m, "> two")
	final(t, tm)
}

// TestFilter: / in the list filters the conversations.
func TestFilter(t *testing.T) {
	m := newModel(t, world(), tui.Options{})
	tm := run(t, m)
	tm.Send(tea.KeyMsg{Type: tea.KeyTab})
	tm.Type("/car")
	waitScreen(t, tm, m, "/car")
	s := screen(m)
	if strings.Contains(s, "○ @bob") || !strings.Contains(s, "@carol") {
		t.Errorf("filter /car:\n%s", s)
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitScreen(t, tm, m, "@carol · key")
	final(t, tm)
}

// TestScrollback: PgUp shows older messages, PgDn returns.
func TestScrollback(t *testing.T) {
	f := world()
	for i := range 100 {
		f.history = append(f.history, text(client.DirIn, "bob", now.Add(time.Duration(i)*time.Second), fmt.Sprintf("msg %03d", i)))
	}
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	waitScreen(t, tm, m, "msg 099")
	for range 4 {
		tm.Send(tea.KeyMsg{Type: tea.KeyPgUp})
	}
	tm.Send(tea.MouseMsg{Action: tea.MouseActionPress, Button: tea.MouseButtonWheelUp})
	waitScreen(t, tm, m, "scrolled (PgDn)")
	for range 10 {
		tm.Send(tea.KeyMsg{Type: tea.KeyPgDown})
	}
	waitScreen(t, tm, m, "msg 098")
	if s := screen(final(t, tm)); !strings.Contains(s, "msg 099") || strings.Contains(s, "scrolled") {
		t.Errorf("after PgDn:\n%s", s)
	}
}

// TestFetchWaiting: a fetch whose sender is offline says so in the pane.
func TestFetchWaiting(t *testing.T) {
	m := newModel(t, world(), tui.Options{Open: handle("bob"), FetchWait: time.Minute})
	tm := run(t, m)
	typeLine(tm, "/fetch 0123456789ab")
	waitScreen(t, tm, m, "fetching 0123456789ab: waiting for @bob to come online")
	final(t, tm)
}

// TestBrowsePicker: /browse lists a contact's files and opens a picker in
// the help bar; Down chooses the next, Enter fetches it.
func TestBrowsePicker(t *testing.T) {
	f := world()
	f.shared = []client.Offer{
		{ID: "aaaaaaaaaaaa", From: handle("bob"), File: share.File{Name: "notes.txt", FileSize: 10}},
		{ID: "bbbbbbbbbbbb", From: handle("bob"), File: share.File{Name: "photo.jpg", FileSize: 2048}},
	}
	m := newModel(t, f, tui.Options{Open: handle("bob"), FetchWait: time.Minute})
	tm := run(t, m)
	typeLine(tm, "/browse @bob")
	waitScreen(t, tm, m, "fetch 1/2: aaaaaaaaaaaa  notes.txt")
	tm.Send(tea.KeyMsg{Type: tea.KeyDown})
	waitScreen(t, tm, m, "fetch 2/2: bbbbbbbbbbbb  photo.jpg")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitScreen(t, tm, m, "fetching bbbbbbbbbbbb")
	final(t, tm)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fetched) != 1 || f.fetched[0] != "bbbbbbbbbbbb" {
		t.Fatalf("fetched %q, want the chosen file", f.fetched)
	}
}

// id is the message id i, as Entry.ID shows it.
func id(i byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{i}, 16)) }

func receipt(from, kind string, ids ...string) *client.Entry {
	r := client.Receipt{Kind: kind, IDs: ids}
	pt, err := r.Plaintext()
	if err != nil {
		panic(err)
	}
	e := text(client.DirIn, from, now, "")
	e.Type, e.Body, e.Plaintext = client.TypeReceipt, "", pt.Raw()
	return &e
}

// TestReceipts: own messages go stored, delivered, read as receipts
// arrive (never back); a message arriving in the open conversation is
// answered read, elsewhere delivered and read once opened.
func TestReceipts(t *testing.T) {
	f := world()
	mine := text(client.DirOut, "bob", now, "are we still on?")
	mine.ID = id(1)
	f.history = append(f.history, mine, *receipt("bob", client.ReceiptDelivered, id(1)))
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	waitScreen(t, tm, m, "you: are we still on?  · delivered")
	tm.Send(tui.EventMsg{Entry: receipt("bob", client.ReceiptRead, id(1))})
	tm.Send(tui.EventMsg{Entry: receipt("bob", client.ReceiptDelivered, id(1))})
	waitScreen(t, tm, m, "you: are we still on?  · read")
	in := text(client.DirIn, "bob", now, "yes")
	in.ID = id(2)
	tm.Send(tui.EventMsg{Entry: &in})
	other := text(client.DirIn, "carol", now, "psst")
	other.ID = id(3)
	tm.Send(tui.EventMsg{Entry: &other})
	waitScreen(t, tm, m, "psst")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlP})
	waitScreen(t, tm, m, "@carol: psst")
	// Receipts go in the background.
	for deadline := time.Now().Add(3 * time.Second); len(f.sentReceipts()) < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	m = final(t, tm)
	if s := screen(m); strings.Count(s, "· read") != 0 {
		t.Errorf("carol's conversation shows bob's states:\n%s", s)
	}
	want := []string{"read " + id(2) + " to bob", "delivered " + id(3) + " to carol", "read " + id(3) + " to carol"}
	got := f.sentReceipts()
	slices.Sort(got) // sent in the background, in any order
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("receipts sent:\n%q\nwant\n%q", got, want)
	}
}

// TestNoReceipts: with receipts off none is sent and none received
// changes a message's state.
func TestNoReceipts(t *testing.T) {
	f := world()
	mine := text(client.DirOut, "bob", now, "are we still on?")
	mine.ID = id(1)
	f.history = append(f.history, mine)
	m := newModel(t, f, tui.Options{Open: handle("bob"), NoReceipts: true})
	tm := run(t, m)
	tm.Send(tui.EventMsg{Entry: receipt("bob", client.ReceiptRead, id(1))})
	in := text(client.DirIn, "bob", now, "yes")
	in.ID = id(2)
	tm.Send(tui.EventMsg{Entry: &in})
	waitScreen(t, tm, m, "@bob: yes")
	m = final(t, tm)
	if s := screen(m); !strings.Contains(s, "you: are we still on?  · stored") {
		t.Errorf("a receipt changed the state with receipts off:\n%s", s)
	}
	if got := f.sentReceipts(); len(got) != 0 {
		t.Errorf("receipts sent with receipts off: %q", got)
	}
}

// TestProfile: /profile shows a contact's claims as their own word,
// inert.
func TestProfile(t *testing.T) {
	f := world()
	f.contacts[0].Chain.Claims = []sigchain.Claim{{Kind: "github", Value: "bob-gh", Proof: "https://x\x1b]8;;evil"}}
	m := newModel(t, f, tui.Options{Open: handle("bob")})
	tm := run(t, m)
	typeLine(tm, "/profile")
	waitScreen(t, tm, m, "claims made by @bob")
	m = final(t, tm)
	v := m.View()
	for _, want := range []string{"safety number:  11111", "kez verifies none", "github   bob-gh  proof: https://x\\u001b]8;;evil"} {
		if !strings.Contains(v, want) {
			t.Errorf("profile lacks %q:\n%s", want, v)
		}
	}
}

// TestViewAsksNoBackend: drawing the screen never calls the backend,
// whose calls may wait on its lock (a broker dial): a received file's
// offer, shown in the pane and as the conversation's preview, is read
// once, when its item is made.
func TestViewAsksNoBackend(t *testing.T) {
	f := world()
	f.history = append(f.history, client.Entry{Dir: client.DirIn, Peer: handle("bob"), PeerKey: key('b'),
		SentAt: now.Unix(), StoredAt: now.Unix(), Type: message.TypeFileShare, Body: "{}"})
	m := newModel(t, f, tui.Options{Open: handle("bob"), NoReceipts: true})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	before := f.announcements()
	if before == 0 {
		t.Fatal("the file announcement was never read")
	}
	for range 3 {
		if v := m.View(); !strings.Contains(v, "[a file announcement that cannot be read") {
			t.Fatalf("the announcement is not shown:\n%s", v)
		}
	}
	if n := f.announcements() - before; n != 0 {
		t.Errorf("View called Announcement %d times", n)
	}
}
