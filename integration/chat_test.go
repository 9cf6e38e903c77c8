//go:build integration

package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/zalando/go-keyring"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/cmd/kez-chat/chatcmd"
	"kez.lat/kez/message"
	"kez.lat/kez/nats/natskeys"
)

// user is one CLI profile.
type user struct {
	t        *testing.T
	profile  string
	server   string
	keyStore string // --key-store: file, so that a test never reaches the real OS keyring
}

func newUser(t *testing.T, st *clienttest.Stack, name string) *user {
	return &user{t: t, profile: filepath.Join(t.TempDir(), name), server: st.URL(), keyStore: "file"}
}

// run runs kez-chat in-process with the user's profile and server and
// returns stdout, stderr (formatted as the binary prints it) and the exit
// code.
func (u *user) run(stdin string, args ...string) (string, string, int) {
	u.t.Helper()
	var out, errw bytes.Buffer
	return u.runWith(strings.NewReader(stdin), &out, &errw, args...)
}

func (u *user) runWith(stdin io.Reader, out, errw *bytes.Buffer, args ...string) (string, string, int) {
	u.t.Helper()
	full := append([]string{"--profile", u.profile, "--server", u.server, "--domain", clienttest.Domain, "--key-store", u.keyStore}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := chatcmd.Exit(chatcmd.Run(ctx, full, stdin, out, errw), errw)
	return out.String(), errw.String(), code
}

// ok runs kez-chat and fails the test unless it exits 0.
func (u *user) ok(stdin string, args ...string) (string, string) {
	u.t.Helper()
	out, errw, code := u.run(stdin, args...)
	if code != 0 {
		u.t.Fatalf("kez-chat %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errw)
	}
	return out, errw
}

// fails runs kez-chat and fails the test unless it exits non-zero with
// want in its stderr.
func (u *user) fails(want string, args ...string) string {
	u.t.Helper()
	out, errw, code := u.run("", args...)
	if code == 0 || !strings.Contains(errw, want) {
		u.t.Fatalf("kez-chat %s: exit %d, want failure with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errw)
	}
	return errw
}

// listened is what one listen --json printed.
type listened struct {
	Event   string `json:"event"`
	Body    string `json:"body"`
	Peer    string `json:"peer"`
	Warning string `json:"warning"`
	Reason  string `json:"reason"`
}

func (u *user) listenOnce() (msgs, dropped []listened, stderr string) {
	u.t.Helper()
	out, errw := u.ok("", "--json", "listen", "--once")
	msgs, dropped = parseListened(u.t, out)
	return msgs, dropped, errw
}

// parseListened reads the JSON lines of listen --json.
func parseListened(t *testing.T, out string) (msgs, dropped []listened) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l listened
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("listen printed %q: %v", sc.Text(), err)
		}
		if l.Event == "dropped" {
			dropped = append(dropped, l)
		} else {
			msgs = append(msgs, l)
		}
	}
	return msgs, dropped
}

func (u *user) whoami() (handle string, key kez.PublicKey) {
	u.t.Helper()
	out, _ := u.ok("", "--json", "whoami")
	var w struct{ Handle, Primary string }
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		u.t.Fatal(err)
	}
	k, err := kez.ParsePublicKey(w.Primary)
	if err != nil {
		u.t.Fatal(err)
	}
	return w.Handle, k
}

func TestChat(t *testing.T) {
	st := clienttest.Start(t)
	alice, bob := newUser(t, st, "alice"), newUser(t, st, "bob")

	// Register: alice re-types her words, bob's script skips it.
	if _, _, code := alice.run("", "register", "alice"); code == 0 {
		t.Fatal("register without the re-typed words succeeded")
	}
	var tout, terr bytes.Buffer
	if _, _, code := alice.runWith(&typist{out: &tout, errw: &terr}, &tout, &terr, "register", "alice"); code != 0 {
		t.Fatalf("register: exit %d\n%s\n%s", code, tout.String(), terr.String())
	}
	if !strings.Contains(tout.String(), "registered @alice") || strings.Count(terr.String(), "re-type word #") != 3 {
		t.Fatalf("register printed %q, %q", tout.String(), terr.String())
	}
	out, _ := bob.ok("", "--json", "register", "bob", "--i-have-written-it-down")
	var reg struct{ Mnemonic string }
	if err := json.Unmarshal([]byte(out), &reg); err != nil || len(strings.Fields(reg.Mnemonic)) != 24 {
		t.Fatalf("register --json: %q, %v", out, err)
	}
	alice.ok("", "add", "@bob")
	bob.ok("", "add", "@alice")

	// 100 messages while bob is offline.
	const n = 100
	for i := range n {
		alice.ok("", "send", "@bob", fmt.Sprintf("message %03d", i))
	}
	msgs, dropped, _ := bob.listenOnce()
	if len(msgs) != n || len(dropped) != 0 {
		t.Fatalf("bob received %d, dropped %d; want %d, 0", len(msgs), len(dropped), n)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("message %03d", i); m.Body != want || m.Peer != "alice@kez.test" || m.Warning != "" {
			t.Fatalf("message %d = %+v, want %q from alice", i, m, want)
		}
	}
	if msgs, _, _ := bob.listenOnce(); len(msgs) != 0 {
		t.Fatalf("a second listen received %d messages again", len(msgs))
	}
	out, _ = bob.ok("", "--json", "history", "@alice")
	var hist []client.Entry
	if err := json.Unmarshal([]byte(out), &hist); err != nil || len(hist) != n {
		t.Fatalf("bob's history: %d entries, %v", len(hist), err)
	}

	// Recover bob from his words into a fresh profile, whose key goes to
	// the OS keyring (go-keyring's in-memory mock): nothing of it on disk,
	// and every later command reads it from there.
	keyring.MockInit()
	bob2 := newUser(t, st, "bob2")
	bob2.keyStore = "keyring"
	out, _ = bob2.ok(reg.Mnemonic+"\n", "recover")
	if !strings.Contains(out, "recovered @bob") {
		t.Fatalf("recover printed %q", out)
	}
	bob2.keyStore = "file" // where new keys would go; this one stays in the keyring
	if out, _ := bob2.ok("", "--json", "whoami"); !strings.Contains(out, `"key_store": "keyring"`) {
		t.Fatalf("recovered key not in the keyring: %s", out)
	}
	if kf, err := os.ReadFile(filepath.Join(bob2.profile, "key")); err != nil || !strings.HasPrefix(string(kf), "kez-keyring-v1 ") {
		t.Fatalf("bob2's key file: %q, %v", kf, err)
	}
	alice.ok("", "send", "@bob", "after recovery")
	msgs, _, _ = bob2.listenOnce()
	if len(msgs) != 1 || msgs[0].Body != "after recovery" {
		t.Fatalf("recovered bob received %+v", msgs)
	}

	// Forgeries are dropped with a warning and acked.
	mallory := newUser(t, st, "mallory")
	mallory.ok("", "register", "mallory", "--i-have-written-it-down")
	_, aliceKey := alice.whoami()
	_, bobKey := bob.whoami()
	forge(t, st, mallory, aliceKey, bobKey)
	alice.ok("", "send", "@bob", "genuine")
	msgs, dropped, stderr := bob2.listenOnce()
	if len(msgs) != 1 || msgs[0].Body != "genuine" || len(dropped) != 2 {
		t.Fatalf("after forgeries bob received %+v, dropped %+v", msgs, dropped)
	}
	if !strings.Contains(dropped[0].Reason, "bad signature") || !strings.Contains(dropped[1].Reason, "addressed to another key") {
		t.Errorf("drop reasons: %q, %q", dropped[0].Reason, dropped[1].Reason)
	}
	if !strings.Contains(stderr, "warning: dropped message") {
		t.Errorf("no warning on stderr: %q", stderr)
	}
	out, _ = bob2.ok("", "status")
	if !strings.Contains(out, "unread:   0") {
		t.Fatalf("the forgeries block the inbox:\n%s", out)
	}

	// A key change: alice's home server now names mallory's key for bob.
	_, malloryKey := mallory.whoami()
	liar := lyingServer(t, st, mallory, "bob")
	alice.server = liar.URL
	stderr = alice.fails("key changed", "send", "@bob", "to the wrong key?")
	if !strings.Contains(stderr, "hint: compare the safety number") || !strings.Contains(stderr, "kez-chat trust @bob") {
		t.Errorf("key change hints: %q", stderr)
	}
	out, _ = alice.ok("", "contacts")
	if !strings.Contains(out, "KEY CHANGED") {
		t.Errorf("contacts: %q", out)
	}
	alice.fails("key changed", "send", "@bob", "still refused")
	out, _ = alice.ok("", "--json", "verify", "@bob")
	if !strings.Contains(out, `"changed_safety_number"`) || !strings.Contains(out, malloryKey.String()) {
		t.Errorf("verify: %s", out)
	}
	// A message signed by the new key is quarantined: not shown as bob's.
	mallory.ok("", "send", "@alice", "it is me, bob, new phone")
	msgs, _, stderr = alice.listenOnce()
	if len(msgs) != 1 || msgs[0].Event != "quarantined" || msgs[0].Body != "" || msgs[0].Peer != "bob@kez.test" {
		t.Fatalf("alice received %+v", msgs)
	}
	if !strings.Contains(stderr, "quarantined a message signed by "+malloryKey.String()) || strings.Contains(stderr, "new phone") {
		t.Errorf("quarantine notice: %q", stderr)
	}
	out, _ = alice.ok("", "history", "@bob")
	if !strings.Contains(out, "[quarantined: signed by "+malloryKey.String()) || strings.Contains(out, "new phone") {
		t.Errorf("history shows the quarantined message: %q", out)
	}

	// The server switches keys between verify and trust: nothing is
	// trusted, and the key it names now is the one to verify next.
	eve := newUser(t, st, "eve")
	eve.ok("", "register", "eve", "--i-have-written-it-down")
	_, eveKey := eve.whoami()
	alice.server = lyingServer(t, st, eve, "bob").URL
	alice.fails("nothing was trusted", "trust", "@bob")
	out, _ = alice.ok("", "--json", "verify", "@bob")
	if !strings.Contains(out, eveKey.String()) || !strings.Contains(out, `"key": "`+bobKey.String()) {
		t.Errorf("after a refused trust, verify: %s", out)
	}
	alice.fails("key changed", "send", "@bob", "still refused")
	// The key alice compared out of band, named explicitly, is pinned
	// once the server names it; the quarantined message is released.
	alice.server = liar.URL
	alice.fails("nothing was trusted", "trust", "@bob", "--key", eveKey.String())
	// That refusal recorded mallory's key again, whose number verify
	// showed before eve's: trust without --key wants it shown anew.
	if stderr = alice.fails("changed key not shown", "trust", "@bob"); !strings.Contains(stderr, "kez-chat verify @bob") {
		t.Errorf("trust after the change was replaced: %q", stderr)
	}
	out, _ = alice.ok("", "trust", "@bob", "--key", malloryKey.String())
	if !strings.Contains(out, "now trusting @bob with key "+malloryKey.String()) {
		t.Errorf("trust: %q", out)
	}
	out, _ = alice.ok("", "history", "@bob")
	if !strings.Contains(out, "it is me, bob, new phone") || strings.Contains(out, "quarantined") {
		t.Errorf("history after trust: %q", out)
	}
	alice.ok("", "send", "@bob", "ok then")
	// Trusting the same key again keeps it (and its chain pin).
	if out, _ = alice.ok("", "trust", "@bob"); !strings.Contains(out, "key unchanged") {
		t.Errorf("trust again: %q", out)
	}
}

// typist answers register's prompts as a user would: each read answers
// the last "re-type word #N" prompt with word N of the backup printed.
type typist struct{ out, errw *bytes.Buffer }

func (ty *typist) Read(p []byte) (int, error) {
	prompt := ty.errw.String()
	i := strings.LastIndex(prompt, "re-type word #")
	if i < 0 {
		return 0, io.EOF
	}
	var n int
	fmt.Sscanf(prompt[i:], "re-type word #%d:", &n)
	words := map[int]string{}
	for _, f := range strings.Split(ty.out.String(), "\n") {
		fs := strings.Fields(f)
		for j := 0; j+1 < len(fs); j += 2 {
			var pos int
			if _, err := fmt.Sscanf(fs[j], "%d.", &pos); err == nil {
				words[pos] = fs[j+1]
			}
		}
	}
	return copy(p, words[n]+"\n"), nil
}

// forge tries to put two forgeries of mallory's into bob's inbox: a
// message claiming to be from alice (mallory's signature), and one
// encrypted to another key. The door refuses both; then a compromised
// home server stores them anyway, and bob's client must drop them.
func forge(t *testing.T, st *clienttest.Stack, mallory *user, alice, bob kez.PublicKey) {
	t.Helper()
	p, err := client.OpenProfile(mallory.profile)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	id := message.NewIdentity(mk)
	defer id.Close()
	env, _, err := message.Seal(id, bob, message.Text("I am alice, send money"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	env.From = alice // the signature is mallory's
	claimed, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	other, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, notForBob, err := message.Seal(id, other.Public(), message.Text("not for bob"), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := client.ConnectNATS(st.NATS.ClientURL(), mk)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	for m, code := range map[string]string{string(claimed): kez.DoorSenderMismatch, string(notForBob): kez.DoorUnknownRecipient} {
		var de *client.DoorError
		if _, err := (client.Inbox{NC: nc, Me: mk.Public()}).Send(ctx, []byte(m)); !errors.As(err, &de) || de.Code != code {
			t.Fatalf("the door took a forgery: %v, want %s", err, code)
		}
	}
	admin := st.NATS.Connect(natskeys.KeyAdmin)
	defer admin.Close()
	js, _ := jetstream.New(admin)
	for _, m := range [][2]string{{kez.InboxMsgSubject(bob, alice), string(claimed)}, {kez.InboxMsgSubject(bob, mk.Public()), string(notForBob)}} {
		if _, err := js.Publish(ctx, m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
}

// lyingServer proxies the home server but answers mallory's record,
// re-signed by mallory for handle victim, for victim's handle and for
// mallory's key: a compromised server swapping a key.
func lyingServer(t *testing.T, st *clienttest.Stack, mallory *user, victim string) *httptest.Server {
	t.Helper()
	p, _ := client.OpenProfile(mallory.profile)
	mk, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(st.URL() + "/v1/k/" + mk.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	h, _ := kez.ParseHandle(victim, clienttest.Domain)
	ts := int64(rec["registered_at"].(float64))
	rec["handle"] = h.String()
	rec["registration_sig"] = mk.Sign(kez.PurposeRegistration, kez.RegistrationMessage(h, mk.Public(), ts))
	forged, _ := json.Marshal(rec)

	target, _ := url.Parse(st.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/u/"+h.String() || r.URL.Path == "/v1/u/"+victim || r.URL.Path == "/v1/k/"+mk.Public().String() {
			w.Header().Set("Content-Type", "application/json")
			w.Write(forged)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}
