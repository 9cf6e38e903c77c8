package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/sigchain"
)

// completionProfile makes the profile "alice" under config (as
// $XDG_CONFIG_HOME) with an account at kez.test and two pinned contacts,
// @bob at home and @carol@other.example, plus an empty profile "work".
func completionProfile(t *testing.T, config string) {
	t.Helper()
	key := func(b byte) kez.PublicKey {
		k, err := kez.NewPrivateKey(bytes.Repeat([]byte{b}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	handle := func(s string) kez.Handle {
		h, err := kez.ParseHandle(s, "kez.test")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	profiles := filepath.Join(config, "kez-chat", "profiles")
	p, err := client.OpenProfile(filepath.Join(profiles, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SaveAccount(client.Account{Handle: handle("alice"), Primary: key(1), Chain: sigchain.State{Key: key(1)}}); err != nil {
		t.Fatal(err)
	}
	err = p.UpdateContacts(func([]client.Contact) ([]client.Contact, error) {
		return []client.Contact{
			{Handle: handle("bob"), Key: key(2), Chain: sigchain.State{Key: key(2)}},
			{Handle: handle("carol@other.example"), Key: key(3), Chain: sigchain.State{Key: key(3)}},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(profiles, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
}

// completionEnv sets up a profile and writes kez-chat's completion
// script for shell; it returns the environment of the shell and the
// script's path.
func completionEnv(t *testing.T, shell string) (env []string, script string) {
	t.Helper()
	if _, err := exec.LookPath(shell); err != nil {
		t.Skipf("%s is not installed (apt-get install -y %s): its completion is not tested", shell, shell)
	}
	bin, err := exec.LookPath("kez-chat") // this test binary, as testscript.Main put it on $PATH
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	config := filepath.Join(home, "config")
	completionProfile(t, config)
	env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + config, "PATH=" + filepath.Dir(bin) + ":/usr/bin:/bin",
		"TERM=xterm-256color", "KEZ_CHAT_PROFILE=alice", "HISTFILE=/dev/null"}
	out, err := exec.Command(bin, "completion", shell).Output()
	if err != nil {
		t.Fatalf("kez-chat completion %s: %v", shell, err)
	}
	script = filepath.Join(home, "kez-chat."+shell)
	if err := os.WriteFile(script, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return env, script
}

// TestCompletionBashZsh loads the script into an interactive bash and zsh
// in tmux and presses Tab: a subcommand, a flag, a profile and a
// contact's handle complete on the command line.
func TestCompletionBashZsh(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh"} {
		t.Run(shell, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath("tmux"); err != nil {
				t.Skip("tmux is not installed (apt-get install -y tmux): completion in an interactive shell is not tested")
			}
			env, script := completionEnv(t, shell)
			argv := map[string][]string{"bash": {"bash", "--norc", "--noprofile", "-i"}, "zsh": {"zsh", "-f", "-i"}}[shell]
			sock := filepath.Join(t.TempDir(), "tmux.sock")
			tmux := func(args ...string) string {
				t.Helper()
				out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			tmux(append([]string{"new-session", "-d", "-s", "sh", "-x", "120", "-y", "20", "env", "-i"}, append(env, argv...)...)...)
			t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
			await := func(re string) {
				t.Helper()
				rx := regexp.MustCompile(re)
				var screen string
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if screen = tmux("capture-pane", "-p", "-t", "sh"); rx.MatchString(screen) {
						return
					}
				}
				t.Fatalf("%s never showed %q:\n%s", shell, re, screen)
			}
			tmux("send-keys", "-t", "sh", "-l", "PS1='> '; source "+script+"; echo loaded")
			tmux("send-keys", "-t", "sh", "Enter")
			await(`(?m)^loaded`)
			for _, tt := range []struct{ typed, want string }{
				{"kez-chat whoa", `> kez-chat whoami`},
				{"kez-chat send --rel", `> kez-chat send --relay-only`},
				{"kez-chat -p wo", `> kez-chat -p work`},
				{"kez-chat send @b", `> kez-chat send @bob`},
				{"kez-chat -p alice history @car", `> kez-chat -p alice history @carol@other.example`},
			} {
				tmux("send-keys", "-t", "sh", "-l", tt.typed)
				tmux("send-keys", "-t", "sh", "Tab")
				await(`(?m)^` + regexp.QuoteMeta(tt.want) + `$`)
				tmux("send-keys", "-t", "sh", "C-u")
				tmux("send-keys", "-t", "sh", "C-l")
			}
		})
	}
}

// TestCompletionFish loads the script into fish and asks fish's own
// completion (complete -C, what Tab runs) for a subcommand, a flag, a
// profile and a contact's handle.
func TestCompletionFish(t *testing.T) {
	t.Parallel()
	env, script := completionEnv(t, "fish")
	for _, tt := range []struct{ line, want string }{
		{"kez-chat whoa", "whoami"},
		{"kez-chat send --rel", "--relay-only"},
		{"kez-chat -p wo", "work"},
		{"kez-chat send @b", "@bob"},
		{"kez-chat -p alice history @car", "@carol@other.example"},
	} {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C '"+tt.line+"'")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		if got := strings.Fields(string(out)); len(got) != 1 || got[0] != tt.want {
			t.Errorf("fish completes %q to %q, want %q", tt.line, out, tt.want)
		}
	}
}
