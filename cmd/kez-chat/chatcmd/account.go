package chatcmd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kong"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/mnemonic"
)

// confirmWords is how many words register makes the user re-type.
const confirmWords = 3

type registerCmd struct {
	Handle  string `arg:"" help:"The handle to register: alice, @alice or alice@domain."`
	Written bool   `name:"i-have-written-it-down" help:"Skip re-typing words of the backup (for scripts; you will not see the words again unless you run kez-chat mnemonic)."`
}

// Validate refuses --json without --i-have-written-it-down: the words
// are then never shown before the re-typing asks for three of them, so
// the command could not succeed. Printing them to stderr instead would
// put the key of the account into the logs scripts keep of stderr; a
// script that passes the flag gets them in the JSON ("mnemonic").
func (r *registerCmd) Validate(kctx *kong.Context) error {
	if r.Written {
		return nil
	}
	for _, f := range kctx.Flags() {
		if f.Name == "json" && kctx.FlagValue(f) == true {
			return &client.HintError{Err: errors.New("--json needs --i-have-written-it-down: the words cannot be shown and re-typed with --json"),
				Hints: []string{"run kez-chat register without --json to see the words and re-type three of them",
					"or, in a script, pass --i-have-written-it-down: the words are in the JSON output (\"mnemonic\")"}}
		}
	}
	return nil
}

func (r *registerCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		h, err := handleArg(c, r.Handle)
		if err != nil {
			return err
		}
		key, words, err := r.backup(a, c, h)
		if err != nil {
			return err
		}
		acct, chainErr, err := c.Register(ctx, h, key)
		if err != nil {
			return err
		}
		if chainErr != nil {
			a.errf("kez-chat: warning: registered, but the sigchain endpoints were not published: %v\nhint: kez-chat status retries\n", chainErr)
		}
		if a.g.JSON {
			return writeJSON(a.out, struct {
				whoami
				Mnemonic string `json:"mnemonic"`
			}{whoamiOf(c, acct), strings.Join(words, " ")})
		}
		fmt.Fprintf(a.out, "registered %s (%s)\n", show(c, acct.Handle), acct.Primary)
		return nil
	})
}

// backup returns the key to register and its words: a new key, once the
// user has seen its words and re-typed some (unless --i-have-written-it-down),
// or the key a register or recover that stopped before saving the account
// left in the profile, whose words were shown (or typed) then. Registering
// that key again under the same handle finishes the registration: the
// home server answers with the one it holds.
func (r *registerCmd) backup(a *app, c *client.Client, h kez.Handle) (*kez.PrivateKey, []string, error) {
	if c.Profile().HasKey() {
		key, err := c.UnfinishedKey()
		if errors.Is(err, client.ErrAccountExists) {
			return nil, nil, &client.HintError{Err: err, Hints: []string{"register into another profile: --profile NAME"}}
		}
		if err != nil {
			return nil, nil, err
		}
		seed := key.Seed()
		words, err := mnemonic.FromSeed(seed)
		clear(seed)
		if err != nil {
			return nil, nil, err
		}
		a.errf("kez-chat: note: this profile holds the key of a registration or recovery that did not finish: registering %s with that key (its words are the ones written down then)\n", show(c, h))
		return key, words, nil
	}
	key, words, err := c.NewBackup()
	if err != nil {
		return nil, nil, err
	}
	if !a.g.JSON {
		printBackup(a.out, words)
	}
	if !r.Written {
		if err := confirm(a, words); err != nil {
			return nil, nil, err
		}
	}
	return key, words, nil
}

// printBackup shows the words in four numbered columns.
func printBackup(w io.Writer, words []string) {
	fmt.Fprintf(w, "Your paper backup: %d words. Write them down, in order, and keep them offline.\n", len(words))
	fmt.Fprintf(w, "They are the only way back into your account; anyone who has them owns it.\n\n")
	rows := (len(words) + 3) / 4
	for r := range rows {
		var line strings.Builder
		for col := range 4 {
			if i := col*rows + r; i < len(words) {
				fmt.Fprintf(&line, "%4d. %-10s", i+1, words[i])
			}
		}
		fmt.Fprintln(w, strings.TrimRight(line.String(), " "))
	}
	fmt.Fprintln(w)
}

// confirm makes the user re-type confirmWords random words of the backup.
func confirm(a *app, words []string) error {
	var pos []int
	for len(pos) < confirmWords {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
		if err != nil {
			return err
		}
		if i := int(n.Int64()); !slices.Contains(pos, i) {
			pos = append(pos, i)
		}
	}
	slices.Sort(pos)
	in := bufio.NewReader(a.stdin)
	for _, i := range pos {
		a.errf("re-type word #%d: ", i+1)
		line, err := in.ReadString('\n')
		typed := strings.ToLower(strings.TrimSpace(line))
		if typed == "" && err != nil {
			return &client.HintError{Err: fmt.Errorf("%w: no answer for word #%d", client.ErrBackupNotConfirmed, i+1),
				Hints: []string{"nothing was registered", "type the words when asked, or pass --i-have-written-it-down in scripts"}}
		}
		if typed != words[i] {
			return &client.HintError{Err: fmt.Errorf("%w: word #%d", client.ErrBackupNotConfirmed, i+1),
				Hints: []string{"nothing was registered; run register again (new words) and write them down carefully"}}
		}
	}
	return nil
}

type recoverCmd struct{}

func (r *recoverCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		if isTerminal(a.stdin) {
			a.errf("enter the %d words of your backup (then Enter): ", mnemonic.Words)
		}
		words, err := readWords(a.stdin)
		if err != nil {
			return err
		}
		acct, chainErr, err := c.Recover(ctx, words)
		if err != nil {
			return err
		}
		if chainErr != nil {
			a.errf("kez-chat: warning: the sigchain endpoints were not republished: %v\n", chainErr)
		}
		if a.g.JSON {
			return writeJSON(a.out, whoamiOf(c, acct))
		}
		fmt.Fprintf(a.out, "recovered %s (%s)\n", show(c, acct.Handle), acct.Primary)
		return nil
	})
}

// readWords reads up to 24 words: from a terminal until enough were typed,
// from a pipe until its end.
func readWords(r io.Reader) (string, error) {
	var words []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for len(words) < mnemonic.Words && sc.Scan() {
		words = append(words, strings.Fields(sc.Text())...)
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read the words: %w", err)
	}
	return strings.Join(words, " "), nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// whoami is the JSON form of an account.
type whoami struct {
	Handle       string `json:"handle"`
	Primary      string `json:"primary"`
	Fingerprint  string `json:"fingerprint"`
	PeerID       string `json:"peer_id"`
	Server       string `json:"server"`
	NATSURL      string `json:"nats_url"`
	Inbox        string `json:"inbox"`
	SigchainURL  string `json:"sigchain_url"`
	ChainSeqno   uint64 `json:"chain_seqno"`
	RegisteredAt int64  `json:"registered_at"`
	Profile      string `json:"profile"`
	KeyStore     string `json:"key_store"` // keyring or file
}

func whoamiOf(c *client.Client, acct client.Account) whoami {
	ks, _ := c.Profile().KeyStoreInUse()
	return whoami{Handle: acct.Handle.String(), Primary: acct.Primary.String(), Fingerprint: client.Fingerprint(acct.Primary),
		PeerID: client.PeerID(acct.Primary), Server: acct.Server, NATSURL: acct.NATSURL, Inbox: acct.Inbox,
		SigchainURL: acct.SigchainURL, ChainSeqno: acct.Chain.Tail.Seqno, RegisteredAt: acct.RegisteredAt, Profile: c.Profile().Dir,
		KeyStore: string(ks)}
}

type whoamiCmd struct{}

func (w *whoamiCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		acct, err := c.Account()
		if err != nil {
			return err
		}
		v := whoamiOf(c, acct)
		if a.g.JSON {
			return writeJSON(a.out, v)
		}
		fmt.Fprintf(a.out, "%s\nkey:         %s\nfingerprint: %s\nserver:      %s\nprofile:     %s\nkey store:   %s\n",
			v.Handle, v.Primary, v.Fingerprint, display.Line(v.Server), v.Profile, keyStoreText(v.KeyStore))
		return nil
	})
}

type mnemonicCmd struct{}

func (m *mnemonicCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		key, err := c.Key()
		if err != nil {
			return err
		}
		seed := key.Seed()
		words, err := mnemonic.FromSeed(seed)
		clear(seed)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.errw, "kez-chat: anyone who sees these words owns the account")
		if a.g.JSON {
			return writeJSON(a.out, map[string]string{"mnemonic": strings.Join(words, " ")})
		}
		printBackup(a.out, words)
		return nil
	})
}

type statusCmd struct {
	Handle string `arg:"" optional:"" predictor:"contact" help:"Show this user's presence instead: online, or when last seen."`
}

func (s *statusCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		if s.Handle != "" {
			return statusOf(ctx, a, c, s.Handle)
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		// The endpoints are republished if an earlier attempt failed.
		if len(st.Account.Chain.NATS) == 0 || len(st.Account.Chain.P2P) == 0 {
			if acct, err := c.PublishEndpoints(ctx); err == nil {
				st.Account = acct
			}
		}
		if a.g.JSON {
			return writeJSON(a.out, struct {
				client.Status
				Account whoami `json:"account"`
			}{st, whoamiOf(c, st.Account)})
		}
		ok := func(e string) string {
			if e == "" {
				return "ok"
			}
			return "unreachable: " + display.Line(e)
		}
		fmt.Fprintf(a.out, "account:  %s (%s)\n", show(c, st.Account.Handle), st.Account.Primary)
		fmt.Fprintf(a.out, "profile:  %s\n", st.Profile)
		fmt.Fprintf(a.out, "server:   %s %s\n", st.Server, ok(st.ServerError))
		fmt.Fprintf(a.out, "broker:   %s %s\n", display.Line(st.Account.NATSURL), ok(st.NATSError))
		fmt.Fprintf(a.out, "sigchain: %d events, nats endpoint %t, p2p endpoint %t\n", st.Account.Chain.Tail.Seqno,
			len(st.Account.Chain.NATS) > 0, len(st.Account.Chain.P2P) > 0)
		if st.NATSError == "" {
			fmt.Fprintf(a.out, "unread:   %d\n", st.Unread)
		}
		fmt.Fprintf(a.out, "contacts: %d\n", st.Contacts)
		for _, h := range st.KeyChanged {
			fmt.Fprintf(a.out, "warning:  the key of @%s changed; kez-chat verify @%s, then kez-chat trust @%s\n", h, h, h)
		}
		return nil
	})
}

// writeJSON prints v as indented JSON.
// writeJSON writes v as indented JSON, with what a terminal would act on
// escaped (display.JSON).
func writeJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(display.JSON(b.Bytes()))
	return err
}

// keyStoreText describes where the key is.
func keyStoreText(s string) string {
	switch client.KeyStore(s) {
	case client.KeyStoreKeyring:
		return "OS keyring"
	case client.KeyStoreFile:
		return "key file (mode 0600)"
	}
	return "unknown"
}
