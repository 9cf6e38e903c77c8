//go:build integration

package integration_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/client/clienttest"
)

// tmux drives full-screen programs in a tmux server of the test's own.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install -y tmux): the full-screen chat is not driven")
	}
	tm := &tmux{t: t, socket: filepath.Join(t.TempDir(), "tmux.sock")}
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs argv in a new 100x30 window named name.
func (tm *tmux) start(name string, env []string, argv ...string) {
	tm.t.Helper()
	cmd := append([]string{"env"}, env...)
	cmd = append(cmd, argv...)
	var quoted []string
	for _, a := range cmd {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	// The shell stays, so that an exit message can be read.
	tm.run("new-session", "-d", "-s", name, "-x", "100", "-y", "30", strings.Join(quoted, " ")+"; sleep 30")
}

func (tm *tmux) screen(name string) string {
	tm.t.Helper()
	return tm.run("capture-pane", "-p", "-t", name)
}

// keys types text literally, then presses the named keys (Enter, C-c).
func (tm *tmux) keys(name, text string, keys ...string) {
	tm.t.Helper()
	if text != "" {
		tm.run("send-keys", "-t", name, "-l", text)
	}
	if len(keys) > 0 {
		tm.run(append([]string{"send-keys", "-t", name}, keys...)...)
	}
}

// await waits until the screen of name matches re, and returns it.
func (tm *tmux) await(name, re string) string {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		if s = tm.screen(name); rx.MatchString(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	tm.t.Fatalf("screen %s never matched %q:\n%s", name, re, s)
	return ""
}

// TestTUI drives the real kez-chat binary's full-screen chat in tmux
// against the reference stack: alice and bob chat both ways live, a
// read receipt comes back, a second chat on a profile is refused, an
// escape-sequence attack shows inert, a /share is fetched with /fetch, a
// key change shows its banner and blocks sending, and the broker going
// away shows a banner until the chat has reconnected by itself.
func TestTUI(t *testing.T) {
	tm := newTmux(t)
	bin := buildCLI(t)
	st := clienttest.Start(t)
	alice, bob := newUser(t, st, "alice"), newUser(t, st, "bob")
	alice.ok("", "register", "alice", "--i-have-written-it-down")
	bob.ok("", "register", "bob", "--i-have-written-it-down")
	alice.ok("", "add", "@bob")
	bob.ok("", "add", "@alice")
	bob.ok("", "send", "@alice", "before the chat")

	downloads := t.TempDir()
	env := []string{"TERM=xterm-256color", "NO_COLOR=1", "HOME=" + t.TempDir()}
	chat := func(u *user, session string, extra ...string) {
		args := []string{bin(), "--profile", u.profile, "--server", u.server, "--key-store", u.keyStore, "chat"}
		tm.start(session, env, append(args, extra...)...)
	}
	chat(alice, "alice", "@bob")
	chat(bob, "bob", "-o", downloads, "@alice")
	tm.await("alice", `kez-chat  @alice.*connected`)
	tm.await("alice", `@bob: before the chat`)
	tm.await("bob", `kez-chat  @bob.*connected`)

	// Both ways, live.
	tm.keys("alice", "hello bob", "Enter")
	tm.await("bob", `\d\d:\d\d @alice: hello bob`)
	// bob has the conversation open: his chat answers with a read receipt.
	tm.await("alice", `you: hello bob  · read`)
	tm.keys("bob", "hi alice", "Enter")
	tm.await("alice", `@bob: hi alice`)
	// A multi-line message (Ctrl-J is a new line).
	tm.keys("bob", "line one", "C-j")
	tm.keys("bob", "line two", "Enter")
	tm.await("alice", `@bob: line one *\n.*│ +line two`)

	// A contact added in the chat has its presence followed: carol
	// comes online while alice looks.
	carol := newUser(t, st, "carol")
	carol.ok("", "register", "carol", "--i-have-written-it-down")
	tm.keys("alice", "/add @carol", "Enter")
	tm.await("alice", `@carol pinned, key fingerprint`)
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		carol.run("", "listen", "--no-files", "--timeout", "5s")
	}()
	tm.await("alice", `● @carol`)
	<-listened
	tm.keys("alice", "", "C-p") // back to bob
	tm.await("alice", `>● @bob`)

	// One reader per inbox.
	if _, errw, code := alice.run("", "listen", "--once"); code == 0 || !strings.Contains(errw, "another kez-chat listen or chat is running") {
		t.Errorf("a listen beside the chat: exit %d, %q", code, errw)
	}

	// Escape sequences from a peer show as text: no clipboard write, no
	// link, no screen clear, no title.
	bob.ok("", "send", "@alice", "evil \x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[H \x1b]8;;http://x.example\x1b\\link\x1b]8;;\x1b\\ \x1b]0;title\x07 \u202eoverride")
	s := tm.await("alice", `@bob: evil \\u001b\]52;c;cHduZWQ=\\u0007\\u001b\[2J`)
	for _, want := range []string{`\u001b]8;;http://x.example\u001b\link`, `\u202eoverride`, "@bob: hi alice"} {
		if !strings.Contains(s, want) {
			t.Errorf("alice's screen lacks %q:\n%s", want, s)
		}
	}

	// A file: alice shares it, bob fetches it from alice's running chat.
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, []byte(strings.Repeat("kez file ", 20000)), 0o600); err != nil {
		t.Fatal(err)
	}
	tm.keys("alice", "/share "+src, "Enter")
	tm.await("alice", `shared notes.txt \(175\.8 KiB\) as [0-9a-f]{12}`)
	s = tm.await("bob", `\[file\] notes.txt \(175\.8 KiB\) · /fetch [0-9a-f]{12}`)
	id := regexp.MustCompile(`/fetch ([0-9a-f]{12})`).FindStringSubmatch(s)[1]
	tm.keys("bob", "/fetch "+id, "Enter")
	tm.await("bob", `fetched notes.txt \(175\.8 KiB\) from @alice, verified`)
	if got, err := os.ReadFile(filepath.Join(downloads, "notes.txt")); err != nil || len(got) != 9*20000 {
		t.Fatalf("fetched file: %d bytes, %v", len(got), err)
	}

	// A key change: alice's chat, on a home server that now names
	// mallory's key for bob, gets mallory's message as bob's.
	tm.keys("alice", "", "C-c")
	tm.await("alice", `\$|^\s*$`)
	mallory := newUser(t, st, "mallory")
	mallory.ok("", "register", "mallory", "--i-have-written-it-down")
	alice.server = lyingServer(t, st, mallory, "bob").URL
	// kez-chat with no command, on a terminal, is the chat.
	tm.start("alice2", env, bin(), "--profile", alice.profile, "--server", alice.server, "--key-store", alice.keyStore)
	tm.await("alice2", `connected`)
	mallory.ok("", "send", "@alice", "it is me, bob, new phone")
	s = tm.await("alice2", `(?s)@bob's key changed\. pinned: \d{5}[ \d]+new:.*Sending is disabled`)
	if strings.Contains(s, "new phone") || !strings.Contains(s, "? unverified key: [held back") {
		t.Errorf("the quarantined message shows:\n%s", s)
	}
	tm.keys("alice2", "to the wrong key?", "Enter")
	s = tm.await("alice2", `sending is disabled: @bob's key changed`)
	if strings.Contains(s, "you: to the wrong key?") {
		t.Errorf("a message was sent past the banner:\n%s", s)
	}

	// The broker goes away: a banner, then the chat reconnects by itself
	// and follows the inbox again.
	st.NATS.Stop()
	tm.await("alice2", `broker unreachable: .*reconnecting`)
	tm.await("alice2", `kez-chat  @alice +offline`)
	st.NATS.Restart()
	tm.await("alice2", `kez-chat  @alice +connected`)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		// The servers heal too, in their own time.
		_, errw, code := bob.run("", "send", "@alice", "after the outage")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob cannot send after the broker restarted: %s", errw)
		}
	}
	if s := tm.await("alice2", `@bob: after the outage`); strings.Contains(s, "broker unreachable") {
		t.Errorf("the banner stays after reconnecting:\n%s", s)
	}
}
