package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/cmd/kez-chat/chatcmd"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"kez-chat": func() { os.Exit(chatcmd.Main()) },
	})
}

// TestScripts runs testdata/*.txt against one in-process stack (broker,
// sig-server, home server with the callout); scripts run in parallel, so
// each uses its own handles. $KEZ_SERVER and $KEZ_DOMAIN point at the
// stack, $XDG_CONFIG_HOME is the script's own, and $DOWN is a URL nobody
// answers at.
func TestScripts(t *testing.T) {
	st := clienttest.Start(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			env.Setenv("KEZ_SERVER", st.URL())
			env.Setenv("KEZ_DOMAIN", clienttest.Domain)
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "config"))
			env.Setenv("PROFILES", filepath.Join(env.WorkDir, "config", "kez-chat", "profiles"))
			env.Setenv("DOWN", "http://127.0.0.1:1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonfield":      jsonField,
			"jsonarrayfield": jsonArrayField,
			"repin":          repin,
		},
	})
}

// jsonField: jsonfield FILE FIELD OUT writes the string member FIELD of
// the JSON object in FILE ("stdout" for the last command's output) to OUT.
func jsonField(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonfield FILE FIELD OUT")
	}
	data := ts.ReadFile(args[0])
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	v, ok := m[args[1]].(string)
	if !ok {
		ts.Fatalf("%s has no string %q", args[0], args[1])
	}
	if err := os.WriteFile(ts.MkAbs(args[2]), []byte(v+"\n"), 0o600); err != nil {
		ts.Fatalf("%v", err)
	}
}

// jsonArrayField: jsonarrayfield FILE FIELD VAR sets $VAR to the string
// member FIELD of the first object of the JSON array in FILE.
func jsonArrayField(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonarrayfield FILE FIELD VAR")
	}
	var a []map[string]any
	if err := json.Unmarshal([]byte(ts.ReadFile(args[0])), &a); err != nil || len(a) == 0 {
		ts.Fatalf("%s: not a non-empty JSON array: %v", args[0], err)
	}
	v, ok := a[0][args[1]].(string)
	if !ok {
		ts.Fatalf("%s[0] has no string %q", args[0], args[1])
	}
	ts.Setenv(args[2], v)
}

// repin: repin PROFILE HANDLE pins contact HANDLE (name@domain) of
// profile PROFILE with a fresh key, as if the contact's home server had
// named another key for it since it was pinned.
func repin(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: repin PROFILE HANDLE")
	}
	p, err := client.OpenProfile(filepath.Join(ts.Getenv("PROFILES"), args[0]))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	k, err := kez.GenerateKey(nil)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	err = p.UpdateContacts(func(cs []client.Contact) ([]client.Contact, error) {
		for i := range cs {
			if cs[i].Handle.String() == args[1] {
				cs[i].Key = k.Public()
				return cs, nil
			}
		}
		return cs, fmt.Errorf("%s: %w", args[1], client.ErrNotContact)
	})
	if err != nil {
		ts.Fatalf("repin: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, chatcmd.ExitOK},
		{[]string{"no-such-command"}, chatcmd.ExitUsage},
		{[]string{"send"}, chatcmd.ExitUsage},
		{[]string{"whoami"}, chatcmd.ExitError},
		// --relay-only listens on nothing: --p2p-listen with it is a
		// contradiction, refused rather than ignored.
		{[]string{"--relay-only", "listen", "--p2p-listen", "/ip4/127.0.0.1/tcp/4001"}, chatcmd.ExitUsage},
		{[]string{"listen", "--relay-only", "--once", "--p2p-listen", "/ip4/127.0.0.1/tcp/4001"}, chatcmd.ExitUsage},
		{[]string{"fetch", "0123456789ab", "--min-rate", "64KiB"}, chatcmd.ExitUsage},
		{[]string{"fetch", "0123456789ab", "--min-rate", "64KiB/0s"}, chatcmd.ExitUsage},
		{[]string{"browse", "@bob", "--first-byte", "0s"}, chatcmd.ExitUsage},
	} {
		var out, errw bytes.Buffer
		err := chatcmd.Run(context.Background(), tt.args, strings.NewReader(""), &out, &errw)
		if got := chatcmd.Exit(err, &errw); got != tt.want {
			t.Errorf("kez-chat %v: exit %d, want %d (%s)", tt.args, got, tt.want, errw.String())
		}
	}
}

// TestRelayOnlyListenEnv: --p2p-listen and --relay-only set by their
// environment variables are refused together as the flags are, by listen
// only.
func TestRelayOnlyListenEnv(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("KEZ_CHAT_RELAY_ONLY", "1")
	t.Setenv("KEZ_CHAT_P2P_LISTEN", "/ip4/127.0.0.1/tcp/4001")
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"listen", "--once"}, chatcmd.ExitUsage},
		{[]string{"whoami"}, chatcmd.ExitError}, // no account; not a usage error
	} {
		var out, errw bytes.Buffer
		err := chatcmd.Run(context.Background(), tt.args, strings.NewReader(""), &out, &errw)
		if got := chatcmd.Exit(err, &errw); got != tt.want {
			t.Errorf("kez-chat %v: exit %d, want %d (%s)", tt.args, got, tt.want, errw.String())
		}
		if tt.want == chatcmd.ExitUsage && !strings.Contains(errw.String(), "--p2p-listen and --relay-only") {
			t.Errorf("kez-chat %v: %q does not name the two flags", tt.args, errw.String())
		}
	}
}

// TestStatusHostileServerText: what a hostile home server says in an
// error reaches the terminal without its escape sequences (a title
// change, a clipboard write).
func TestStatusHostileServerText(t *testing.T) {
	st := clienttest.Start(t)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	t.Setenv("KEZ_DOMAIN", clienttest.Domain)
	run := func(args ...string) (string, string, error) {
		var out, errw bytes.Buffer
		err := chatcmd.Run(context.Background(), args, strings.NewReader(""), &out, &errw)
		return out.String(), errw.String(), err
	}
	if _, e, err := run("--server", st.URL(), "-p", "r", "register", "hostile_bob", "--i-have-written-it-down"); err != nil {
		t.Fatalf("register: %v %s", err, e)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":"down \u001b]0;owned\u0007 \u001b]52;c;cHduZWQ=\u0007","code":"internal"}`))
	}))
	defer evil.Close()
	out, e, _ := run("--server", evil.URL, "-p", "r", "status")
	if strings.ContainsAny(out+e, "\x1b\a") || !strings.Contains(out+e, `\u001b]0;owned`) {
		t.Errorf("status printed %q and %q: want the server's words without their escapes", out, e)
	}
}
