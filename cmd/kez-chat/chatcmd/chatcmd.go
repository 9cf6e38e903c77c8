// Package chatcmd holds the commands of kez-chat: kong parsing, prompts
// and output. Every command parses its input and calls package client;
// [Run] is what main and the tests call.
package chatcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/mnemonic"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed
	ExitUsage = 2 // bad command line
)

// Main runs kez-chat with the process's arguments and standard streams
// and returns the exit code.
func Main() int {
	if completing() {
		return completeLine(os.Stdout)
	}
	if stop := startProfile(os.Getenv("KEZ_CPU_PROFILE"), os.Stderr); stop != nil {
		defer stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Exit(Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr)
}

// startProfile writes a CPU profile of the process to path until the
// returned function is called, if path is not empty: KEZ_CPU_PROFILE, for
// finding where a command (a fetch, a listen) spends its time with go
// tool pprof. Not a user interface; a profile that cannot start is
// reported and the command runs anyway.
func startProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kez-chat: KEZ_CPU_PROFILE: %v\n", err)
		return nil
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "kez-chat: KEZ_CPU_PROFILE: %v\n", err)
		}
	}
}

// Exit prints err (if any) to stderr as "kez-chat: ..." followed by its
// hints, and returns the exit code for it. Both are made safe for a
// terminal (display.Text): an error often quotes what a server or the
// broker said, and that may hold escape sequences.
func Exit(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	printSafe(stderr, "kez-chat: %v\n", err)
	for _, h := range hints(err) {
		printSafe(stderr, "hint: %s\n", h)
	}
	var pe *kong.ParseError
	if errors.As(err, &pe) {
		return ExitUsage
	}
	return ExitError
}

// hints returns the client's hints for err, and the ones this layer adds
// for errors that are not the client's.
func hints(err error) []string {
	hs := client.Hints(err)
	var uw *mnemonic.UnknownWordsError
	switch {
	case errors.As(err, &uw):
		for _, w := range uw.Words {
			if len(w.Suggestions) > 0 {
				hs = append(hs, fmt.Sprintf("word %d: did you mean %s?", w.Position, strings.Join(w.Suggestions, ", ")))
			} else {
				hs = append(hs, fmt.Sprintf("word %d: no word of the list is close", w.Position))
			}
		}
	case errors.Is(err, mnemonic.ErrChecksum):
		hs = append(hs, "every word is in the list, but one is wrong or two are swapped: check them in order")
	case errors.Is(err, mnemonic.ErrWordCount):
		hs = append(hs, "a kez backup is exactly 24 words")
	case errors.Is(err, kez.ErrInvalidHandle):
		hs = append(hs, "a handle is 2 to 30 of a-z, 0-9 and _, starting with a letter (e.g. @alice, or @alice@other.example)")
	case len(hs) == 0 && errors.Is(err, client.ErrUnreachable):
		hs = append(hs, "is the server running? choose it with --server URL (or KEZ_SERVER)")
	}
	return hs
}

// app is what every command gets besides its own flags.
type app struct {
	g     *grammar
	stdin io.Reader
	out   io.Writer
	errw  io.Writer
	// cols reports the width of the terminal stdout is (nil if it is
	// not one), for fit.
	cols func() int
}

// errf prints to stderr what format and args say, made safe for a
// terminal (printSafe).
func (a *app) errf(format string, args ...any) { printSafe(a.errw, format, args...) }

// printSafe prints what format and args say to w, made safe for a
// terminal (display.Text): what kez-chat prints to stderr often quotes a
// server, a peer or the broker.
func printSafe(w io.Writer, format string, args ...any) {
	io.WriteString(w, display.Text(fmt.Sprintf(format, args...)))
}

type appKey struct{}

func appFrom(ctx context.Context) *app { return ctx.Value(appKey{}).(*app) }

// Run parses args and runs the command. stdin feeds prompts, recover and
// send.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const about = "kez-chat: end-to-end encrypted chat on verified handles."
	if noCommand(args) {
		if interactive(stdin, stdout) {
			// kez-chat alone, on a terminal, is the full-screen chat.
			args = append(args, "chat")
		} else {
			// Piped, it prints the usage to stderr (stdout is for
			// results), then fails as a bad command line (exit 2).
			_ = cli.Run(ctx, &grammar{}, "kez-chat", about, append(slices.Clone(args), "--help"), stderr, stderr)
		}
	}
	g := &grammar{}
	ctx = context.WithValue(ctx, appKey{}, &app{g: g, stdin: stdin, out: stdout, errw: stderr, cols: termCols(stdout)})
	return cli.Run(ctx, g, "kez-chat", about, args, stdout, stderr)
}

// globals are the flags every command takes.
type globals struct {
	Profile string `short:"p" env:"KEZ_CHAT_PROFILE" predictor:"profile" default:"default" help:"Profile: a name (kept under the user config dir, $XDG_CONFIG_HOME/kez-chat/profiles/NAME) or a directory path."`
	Server  string `env:"KEZ_SERVER" help:"Home server URL, e.g. http://127.0.0.1:8080 (default: the account's; https://kez.lat before one exists)."`
	Domain  string `env:"KEZ_DOMAIN" help:"Domain of bare handles before an account exists (default: the server's host name, kez.lat for an address)."`
	JSON    bool   `help:"Print data as JSON (stable: fields are added, never changed)."`
	// Insecure allows plaintext to remote hosts (loopback never needs TLS).
	Insecure bool `env:"KEZ_INSECURE" help:"Allow plaintext http:// and nats:// to hosts other than this machine (a test server on a trusted network); without it they are refused, since anyone on the path could rewrite what the servers say."`
	// RelayOnly applies to every command that starts the P2P node.
	RelayOnly bool `name:"relay-only" env:"KEZ_CHAT_RELAY_ONLY" help:"Send and fetch files only through the home server's relays, so that contacts never see your IP address (slower)."`
	// KeyStore is where register and recover keep a new key; later
	// commands read it where the profile says it is.
	KeyStore string `name:"key-store" env:"KEZ_CHAT_KEY_STORE" enum:"auto,keyring,file" default:"auto" help:"Where register and recover keep the key: the OS keyring (the Secret Service over D-Bus on Linux, the Keychain on macOS, the Credential Manager on Windows), or the profile's 0600 key file. auto uses the keyring when one is available (on Linux: DBUS_SESSION_BUS_ADDRESS is set) and falls back to the file with a note; keyring tries it regardless; file never uses it. (${enum})"`
}

type grammar struct {
	globals
	Register    registerCmd   `cmd:"" help:"Create an account: a new key, its 24-word paper backup and a handle."`
	Recover     recoverCmd    `cmd:"" help:"Restore an account from its 24 words (from stdin, or prompted)."`
	Whoami      whoamiCmd     `cmd:"" help:"Show the account's handle, key and fingerprint."`
	Mnemonic    mnemonicCmd   `cmd:"" help:"Show the 24 words of the paper backup again."`
	Status      statusCmd     `cmd:"" help:"Check the home server and the broker; count unread messages."`
	Add         addCmd        `cmd:"" help:"Look a handle up, verify its sigchain and pin its key."`
	Contacts    contactsCmd   `cmd:"" help:"List the pinned contacts."`
	Verify      verifyCmd     `cmd:"" help:"Show the safety number to compare with a contact out of band."`
	Trust       trustCmd      `cmd:"" help:"Accept a contact's changed key."`
	Send        sendCmd       `cmd:"" help:"Send an encrypted message (the text from the arguments, or stdin)."`
	Listen      listenCmd     `cmd:"" help:"Receive messages: store, print, then acknowledge them."`
	History     historyCmd    `cmd:"" help:"Show the messages exchanged with a contact."`
	Share       shareCmd      `cmd:"" help:"Share a file with a contact: encrypt it here and announce it; they fetch it from this device while listen runs."`
	Files       filesCmd      `cmd:"" help:"List the files you share, and with whom."`
	Unshare     unshareCmd    `cmd:"" help:"Stop sharing a file (with one contact, or with everyone)."`
	Fetch       fetchCmd      `cmd:"" help:"Download a file shared with you, straight from the sender's device, verified as it arrives; resumes if interrupted."`
	Browse      browseCmd     `cmd:"" help:"List what a contact shares with you (their signed manifest)."`
	ShowProfile profileCmd    `cmd:"" name:"profile" help:"Show a contact's profile: key, safety number, sigchain summary and the identity claims they make."`
	Claim       claimCmd      `cmd:"" help:"Your identity claims (github, dns, nostr, ...), published in your sigchain for contacts to see."`
	Doctor      doctorCmd     `cmd:"" help:"Check each hop from this profile to its contacts (home server, TLS, clock, registration, sigchain, key store, broker, relays, direct connections, disk) and say how to fix what fails."`
	Completion  completionCmd `cmd:"" help:"Print the script that makes bash, zsh or fish complete kez-chat's commands, flags, profiles and contacts (docs/install.md, \"Shell completion\")."`
	Chat        chatCmd       `cmd:"" help:"The full-screen chat (what kez-chat alone opens on a terminal): conversations, live messages, files; /help inside."`
}

// noCommand reports whether args name no command but would parse with
// one: kez-chat alone, or with global flags only.
func noCommand(args []string) bool {
	return cli.Parse(&grammar{}, args) != nil && cli.Parse(&grammar{}, append(slices.Clone(args), "chat")) == nil
}

// client opens the profile and returns its client; adjust, if not nil,
// changes its configuration.
func (a *app) client(adjust ...func(*client.Config)) (*client.Client, error) {
	dir, err := client.ProfileDir(a.g.Profile)
	if err != nil {
		return nil, err
	}
	p, err := client.OpenProfile(dir)
	if err != nil {
		return nil, err
	}
	if p.KeyStore, err = client.ParseKeyStore(a.g.KeyStore); err != nil {
		return nil, err
	}
	cfg := client.Config{Server: strings.TrimRight(serverOf(p, a.g.Server), "/"), Domain: a.g.Domain, RelayOnly: a.g.RelayOnly, Insecure: a.g.Insecure,
		Note: func(msg string) { a.errf("kez-chat: note: %s\n", msg) }}
	for _, f := range adjust {
		f(&cfg)
	}
	return client.New(p, cfg), nil
}

// serverOf returns the home server URL for profile p: flag, the
// --server flag, if set; else none for a profile with an account (the
// account names its server), and https://kez.lat before one exists,
// also when a register or recover stopped after saving the key, so that
// running it again finishes it.
func serverOf(p *client.Profile, flag string) string {
	if flag != "" {
		return flag
	}
	if _, err := p.Account(); errors.Is(err, client.ErrNoAccount) {
		return "https://" + kez.DefaultDomain
	}
	return ""
}

// withClient runs fn with the profile's client and closes it.
func withClient(ctx context.Context, fn func(*app, *client.Client) error) error {
	a := appFrom(ctx)
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(a, c)
}

// handle parses a handle argument.
func handleArg(c *client.Client, s string) (kez.Handle, error) {
	h, err := c.ParseHandle(s)
	if err != nil {
		return h, fmt.Errorf("%q: %w", s, err)
	}
	return h, nil
}

// optionalHandle parses an optional handle argument: the zero handle if
// it was not given.
func optionalHandle(c *client.Client, s string) (kez.Handle, error) {
	if s == "" {
		return kez.Handle{}, nil
	}
	return handleArg(c, s)
}

// show returns the handle as the UI shows it: @name at home, @name@domain
// elsewhere.
func show(c *client.Client, h kez.Handle) string { return display.Handle(c.Domain(), h) }
