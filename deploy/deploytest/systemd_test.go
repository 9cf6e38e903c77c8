package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// systemdDir holds the units, env files and install guide of deploy/systemd.
var systemdDir = filepath.Join("..", "systemd")

// directives returns the values of every `key=value` line of a unit or env
// file, by key, in order (a key may repeat).
func directives(t *testing.T, name string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(systemdDir, name))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// one is a key's single value.
func one(t *testing.T, file string, m map[string][]string, key string) string {
	t.Helper()
	if len(m[key]) != 1 {
		t.Fatalf("%s: %s= given %d times", file, key, len(m[key]))
	}
	return m[key][0]
}

// TestSystemdSeedsSeparated: under systemd, kez-sig-server cannot read
// kez-chat-server's seeds (the callout issuer signs any user in) nor the
// folder of every seed (the admin and sys seeds), and the other way round:
// each server runs as a user of its own, declared in kez-sysusers.conf,
// whose seeds the install guide copies into a folder it gives that user
// alone, and each unit makes the other folders inaccessible.
func TestSystemdSeedsSeparated(t *testing.T) {
	chatUnit, sigUnit := directives(t, "kez-chat-server.service"), directives(t, "kez-sig-server.service")
	chatUser := one(t, "kez-chat-server.service", chatUnit, "User")
	sigUser := one(t, "kez-sig-server.service", sigUnit, "User")
	if chatUser == sigUser {
		t.Fatalf("kez-chat-server and kez-sig-server both run as %s", chatUser)
	}
	for _, u := range []string{chatUser, sigUser} {
		if u == "root" || u == "nats" || u == "kez-relay" {
			t.Errorf("a kez server runs as %s", u)
		}
	}
	if g := one(t, "kez-chat-server.service", chatUnit, "Group"); g != chatUser {
		t.Errorf("kez-chat-server runs in group %s, want its own %s", g, chatUser)
	}
	if g := one(t, "kez-sig-server.service", sigUnit, "Group"); g != sigUser {
		t.Errorf("kez-sig-server runs in group %s, want its own %s", g, sigUser)
	}
	users, err := os.ReadFile(filepath.Join(systemdDir, "kez-sysusers.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{chatUser, sigUser} {
		if !regexp.MustCompile(`(?m)^u ` + regexp.QuoteMeta(u) + `\s`).Match(users) {
			t.Errorf("kez-sysusers.conf does not declare the user %s", u)
		}
	}

	chatKeys := one(t, "kez-chat-server.env", directives(t, "kez-chat-server.env"), "KEYS_DIR")
	sigKeys := filepath.Dir(one(t, "kez-sig-server.env", directives(t, "kez-sig-server.env"), "NATS_NKEY_FILE"))
	if chatKeys == sigKeys {
		t.Fatalf("both servers read their seeds from %s", chatKeys)
	}

	// The install guide: the keys command that fills each folder, and the
	// owners it gives them.
	guide, err := os.ReadFile(filepath.Join(systemdDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(guide), "\\\n", " ")
	keysCmd := regexp.MustCompile(`kez-chat-server keys (.*)`).FindStringSubmatch(text)
	if keysCmd == nil {
		t.Fatal("README.md runs no kez-chat-server keys")
	}
	flag := func(name string) string {
		m := regexp.MustCompile(`--` + name + `[ =](\S+)`).FindStringSubmatch(keysCmd[1])
		if m == nil {
			t.Fatalf("README.md: kez-chat-server keys without --%s: %s", name, keysCmd[0])
		}
		return m[1]
	}
	all := flag("dir")
	if got := flag("chat-server-dir"); got != chatKeys {
		t.Errorf("README.md copies kez-chat-server's seeds into %s, its env file reads %s", got, chatKeys)
	}
	if got := flag("sig-server-dir"); got != sigKeys {
		t.Errorf("README.md copies kez-sig-server's seed into %s, its env file reads %s", got, sigKeys)
	}
	for dir, user := range map[string]string{chatKeys: chatUser, sigKeys: sigUser} {
		if !strings.Contains(text, "chown -R "+user+":"+user+" "+dir+"\n") {
			t.Errorf("README.md does not give %s to %s alone", dir, user)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		for _, u := range []string{chatUser, sigUser} {
			if slices.Contains(strings.Fields(l), all) && (strings.Contains(l, "-o "+u) || strings.Contains(l, "chown -R "+u)) {
				t.Errorf("README.md gives %s, every seed, to %s: %s", all, u, l)
			}
		}
	}

	for _, u := range []struct {
		file    string
		unit    map[string][]string
		foreign []string
	}{
		{"kez-chat-server.service", chatUnit, []string{all, sigKeys}},
		{"kez-sig-server.service", sigUnit, []string{all, chatKeys}},
	} {
		var hidden []string
		for _, v := range u.unit["InaccessiblePaths"] {
			for _, p := range strings.Fields(v) {
				hidden = append(hidden, strings.TrimPrefix(p, "-"))
			}
		}
		for _, f := range u.foreign {
			if !slices.Contains(hidden, f) {
				t.Errorf("%s: %s is not in InaccessiblePaths (%q)", u.file, f, hidden)
			}
		}
	}
}
