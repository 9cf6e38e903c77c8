package chatcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
)

// contactJSON is the JSON form of a contact.
type contactJSON struct {
	Handle          string `json:"handle"`
	Key             string `json:"key"`
	Fingerprint     string `json:"fingerprint"`
	KeyChanged      bool   `json:"key_changed"`
	ChangedKey      string `json:"changed_key,omitempty"`
	ChangedKeyShown bool   `json:"changed_key_shown"` // verify showed its number: trust without --key pins it
	AddedAt         int64  `json:"added_at"`
	ChainSeqno      uint64 `json:"chain_seqno"`
	NATSEndpoint    bool   `json:"nats_endpoint"`
	P2PEndpoint     bool   `json:"p2p_endpoint"`
}

func contactOf(ct client.Contact) contactJSON {
	j := contactJSON{Handle: ct.Handle.String(), Key: ct.Key.String(), Fingerprint: client.Fingerprint(ct.Key),
		AddedAt: ct.AddedAt, ChainSeqno: ct.Chain.Tail.Seqno, NATSEndpoint: len(ct.Chain.NATS) > 0, P2PEndpoint: len(ct.Chain.P2P) > 0}
	if ct.ChangedKey != nil {
		j.KeyChanged, j.ChangedKey, j.ChangedKeyShown = true, ct.ChangedKey.String(), ct.ChangeShown()
	}
	return j
}

type addCmd struct {
	Handle string `arg:"" help:"Handle to add: @bob, or @bob@other.example (resolved at https://other.example)."`
}

func (c *addCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		ct, added, err := cl.Add(ctx, h)
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, contactOf(ct))
		}
		if added {
			fmt.Fprintf(a.out, "pinned %s: %s\n", show(cl, ct.Handle), ct.Key)
			a.errf("hint: compare the safety number with %s out of band: kez-chat verify %s\n", show(cl, ct.Handle), show(cl, ct.Handle))
		} else {
			fmt.Fprintf(a.out, "%s is already a contact: %s\n", show(cl, ct.Handle), ct.Key)
		}
		return nil
	})
}

type contactsCmd struct {
	NoPresence bool `help:"Do not ask the broker who is online."`
}

func (c *contactsCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		cs, err := cl.Contacts()
		if err != nil {
			return err
		}
		var pres map[kez.Handle]client.Presence
		if !c.NoPresence && len(cs) > 0 {
			pres = contactsPresence(ctx, a, cl)
		}
		if a.g.JSON {
			type withPresence struct {
				contactJSON
				Presence *client.Presence `json:"presence,omitempty"`
			}
			out := []withPresence{}
			for _, ct := range cs {
				j := withPresence{contactJSON: contactOf(ct)}
				if p, ok := pres[ct.Handle]; ok {
					j.Presence = &p
				}
				out = append(out, j)
			}
			return writeJSON(a.out, out)
		}
		for _, ct := range cs {
			state := "pinned"
			if ct.ChangedKey != nil {
				state = "KEY CHANGED (sending refused until trust)"
			}
			if p, ok := pres[ct.Handle]; ok {
				state += ", " + display.Presence(p, time.Now())
			}
			fmt.Fprintf(a.out, "%-24s %s  %s\n", show(cl, ct.Handle), ct.Key, state)
		}
		return nil
	})
}

type verifyCmd struct {
	Handle string `arg:"" predictor:"contact" help:"Contact to verify."`
}

func (c *verifyCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		v, err := cl.Verify(h)
		if err != nil {
			return err
		}
		if v.ChangedSafetyNumber != "" {
			// What a later `trust` without --key may pin: this key, as
			// long as no other is recorded in the meantime.
			if err := cl.MarkShown(h, *v.Contact.ChangedKey); err != nil {
				return err
			}
			v.Contact.ShownKey = v.Contact.ChangedKey // as marked, for --json
		}
		if a.g.JSON {
			return writeJSON(a.out, struct {
				Contact             contactJSON `json:"contact"`
				SafetyNumber        string      `json:"safety_number"`
				ChangedSafetyNumber string      `json:"changed_safety_number,omitempty"`
			}{contactOf(v.Contact), v.SafetyNumber, v.ChangedSafetyNumber})
		}
		who := show(cl, v.Contact.Handle)
		fmt.Fprintf(a.out, "safety number with %s (pinned key %s):\n%s\n", who, v.Contact.Key, blocks(v.SafetyNumber))
		if v.ChangedSafetyNumber != "" {
			fmt.Fprintf(a.out, "\nthe server now names another key for %s (%s); with it the number would be:\n%s\n",
				who, v.Contact.ChangedKey, blocks(v.ChangedSafetyNumber))
			a.errf("hint: if %s reads you this second number, accept it: kez-chat trust %s\n", who, who)
		} else {
			a.errf("hint: %s sees the same number; compare it in person or on a call\n", who)
		}
		return nil
	})
}

// blocks lays twelve groups out as three lines of four.
func blocks(num string) string {
	g := strings.Fields(num)
	var lines []string
	for i := 0; i < len(g); i += 4 {
		lines = append(lines, "  "+strings.Join(g[i:min(i+4, len(g))], " "))
	}
	return strings.Join(lines, "\n")
}

type trustCmd struct {
	Handle string `arg:"" predictor:"contact" help:"Contact whose changed key to accept."`
	Key    string `help:"The key to trust (ed25519:<hex>), as compared out of band; default: the changed key kez-chat verify showed, refused if another was recorded since (run verify again). Refused if the server now names another, and while another changed key is recorded that verify has not shown: trusting KEY sets that key aside, and the messages it signed stay quarantined." placeholder:"KEY"`
}

func (c *trustCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		var key kez.PublicKey
		if c.Key != "" {
			if key, err = kez.ParsePublicKey(c.Key); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
		}
		ct, changed, err := cl.Trust(ctx, h, key)
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, struct {
				contactJSON
				Changed bool `json:"changed"`
			}{contactOf(ct), changed})
		}
		if changed {
			fmt.Fprintf(a.out, "now trusting %s with key %s\n", show(cl, ct.Handle), ct.Key)
		} else {
			fmt.Fprintf(a.out, "%s: key unchanged (%s)\n", show(cl, ct.Handle), ct.Key)
		}
		return nil
	})
}

type sendCmd struct {
	Handle string   `arg:"" predictor:"contact" help:"Recipient, e.g. @bob."`
	Text   []string `arg:"" optional:"" help:"The message; read from stdin when absent."`
}

// maxStdinText bounds a message read from stdin (an envelope is at most
// 64 KiB, base64 included).
const maxStdinText = 46 << 10

func (c *sendCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		text := strings.Join(c.Text, " ")
		if len(c.Text) == 0 {
			b, err := io.ReadAll(io.LimitReader(a.stdin, maxStdinText+1))
			if err != nil {
				return fmt.Errorf("read the message from stdin: %w", err)
			}
			if len(b) > maxStdinText {
				return fmt.Errorf("message over %d bytes", maxStdinText)
			}
			text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		}
		if strings.TrimSpace(text) == "" {
			return &client.HintError{Err: errors.New("empty message"), Hints: []string{`kez-chat send @bob "text", or pipe the text to kez-chat send @bob`}}
		}
		e, err := cl.SendText(ctx, h, text)
		if errors.Is(err, client.ErrSentNotRecorded) {
			// Delivered: a failure (exit 1) would have a script or the
			// user send it again, and the recipient get it twice.
			a.errf("kez-chat: warning: %v\n", err)
			for _, hint := range client.Hints(err) {
				a.errf("hint: %s\n", hint)
			}
			err = nil
		}
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, e)
		}
		return nil
	})
}

type listenCmd struct {
	Once          bool          `help:"Receive what is waiting, then exit."`
	Timeout       time.Duration `help:"Exit after this long (0: follow until interrupted)."`
	Count         int           `help:"Exit after this many messages (0: no limit)."`
	NoFiles       bool          `name:"no-files" env:"KEZ_CHAT_NO_FILES" help:"Do not serve your shared files while listening (contacts cannot fetch them)."`
	P2PListen     []string      `name:"p2p-listen" env:"KEZ_CHAT_P2P_LISTEN" placeholder:"MULTIADDR" help:"Where this device's node listens for contacts fetching files (repeatable; default: TCP and QUIC on every interface, the port of the last run). Refused with --relay-only, which listens on none."`
	presenceFlags `embed:""`
}

// errListenRelayOnly: --p2p-listen asks for the very sockets --relay-only
// keeps the node from opening. Taking one over the other silently left a
// user believing their node listened where they said, or that it hid
// their address.
var errListenRelayOnly = errors.New("--p2p-listen and --relay-only exclude each other: a relay-only node listens on no address of its own (KEZ_CHAT_P2P_LISTEN and KEZ_CHAT_RELAY_ONLY set them too)")

// Validate refuses --p2p-listen with --relay-only (a bad command line).
func (c *listenCmd) Validate(kctx *kong.Context) error {
	if g, ok := kctx.Model.Target.Addr().Interface().(*grammar); ok && g.RelayOnly && len(c.P2PListen) > 0 {
		return errListenRelayOnly
	}
	return nil
}

func (c *listenCmd) Run(ctx context.Context) error {
	if err := errors.Join(notNegative("--timeout", c.Timeout), notNegative("--count", c.Count)); err != nil {
		return err
	}
	return withClient(ctx, func(a *app, cl *client.Client) error {
		if c.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.Timeout)
			defer cancel()
		}
		if !c.Once && !a.g.JSON && isTerminalWriter(a.errw) {
			fmt.Fprintln(a.errw, "kez-chat: listening; Ctrl-C stops")
		}
		if !c.Once && !c.NoFiles {
			defer serveFiles(ctx, a, cl, c.P2PListen)()
		}
		defer c.presenceFlags.start(ctx, a, cl, c.Once)()
		err := cl.Listen(ctx, client.ListenOptions{Once: c.Once, Max: c.Count}, func(ev client.Event) {
			printEvent(a, cl, ev)
		})
		if err != nil && ctx.Err() != nil {
			return nil // a timeout or Ctrl-C ends listening normally
		}
		return err
	})
}

// serveFiles runs the user's P2P node while listen runs, so that
// contacts can fetch the files shared with them; it returns once the
// node listens (so that presence says online only when files can be
// fetched), and the returned function stops it.
func serveFiles(ctx context.Context, a *app, cl *client.Client, listen []string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := cl.Serve(ctx, client.ServeOptions{Listen: listen, Ready: func(addrs []string, err error) {
			if err != nil {
				a.errf("kez-chat: note: your sigchain does not list this device's addresses yet: %v\n", err)
			}
			close(ready)
		}})
		if err != nil && ctx.Err() == nil {
			a.errf("kez-chat: note: not serving shared files: %v\n", err)
		}
	}()
	select {
	case <-ready:
	case <-done:
	case <-ctx.Done():
	}
	return func() {
		cancel()
		<-done
	}
}

func printEvent(a *app, cl *client.Client, ev client.Event) {
	if h := ev.Held; h != nil {
		if a.g.JSON {
			writeLine(a.out, struct {
				Event string `json:"event"`
				*client.Held
			}{"held", h})
		}
		a.errf("kez-chat: warning: message %d from %s left unread: %s\nhint: it and the sender's later messages are read again later; the other senders' messages go on\n", h.Seq, h.From, h.Reason)
		return
	}
	if d := ev.Dropped; d != nil {
		if a.g.JSON {
			writeLine(a.out, struct {
				Event string `json:"event"`
				*client.Dropped
			}{"dropped", d})
		}
		from := d.From
		if from == "" {
			from = "an unparsable sender"
		}
		a.errf("kez-chat: warning: dropped message %d from %s: %s\n", d.Seq, from, d.Reason)
		return
	}
	e := ev.Entry
	who := show(cl, e.Peer)
	event := "message"
	switch {
	case e.Quarantined:
		event = "quarantined"
		a.errf("kez-chat: warning: quarantined a message signed by %s, a key %s's server names but you have not trusted; it is not shown as %s's\nhint: kez-chat verify %s, then kez-chat trust %s shows it; sending is refused until then\n", e.PeerKey, who, who, who, who)
	case e.Warning == client.WarnNewContact:
		a.errf("kez-chat: new contact %s pinned with key %s\nhint: compare the safety number: kez-chat verify %s\n", who, e.PeerKey, who)
	}
	if a.g.JSON {
		writeLine(a.out, struct {
			Event string `json:"event"`
			*client.Entry
		}{event, e})
		return
	}
	if !e.Quarantined && e.Type != client.TypeReceipt {
		fmt.Fprintf(a.out, "%s\n", a.fit(fmt.Sprintf("%s %s: %s", time.Unix(e.SentAt, 0).Format("2006-01-02 15:04:05"), who, text(cl, e))))
	}
}

// text returns what to show for an entry's plaintext.
func text(cl *client.Client, e *client.Entry) string {
	if e.Quarantined {
		return fmt.Sprintf("[quarantined: signed by %s, which you have not trusted for %s; kez-chat verify, then kez-chat trust, shows it]", e.PeerKey, show(cl, e.Peer))
	}
	switch e.Type {
	case "text":
		return sanitize(e.Body)
	case "file_share":
		return fileText(cl, e)
	}
	return fmt.Sprintf("[a message of type %q this version cannot show]", e.Type)
}

// sanitize makes a message from someone else safe to print on a
// terminal (see display.Text), and indents lines after the first, so
// that no line of a message can pass for a message of its own.
func sanitize(s string) string {
	return strings.ReplaceAll(display.Text(s), "\n", "\n"+contIndent)
}

func writeLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", display.JSON(b))
}

func isTerminalWriter(w io.Writer) bool {
	r, ok := w.(io.Reader)
	return ok && isTerminal(r)
}

type historyCmd struct {
	Handle string `arg:"" optional:"" predictor:"contact" help:"Contact (all conversations when absent)."`
	Last   int    `short:"n" help:"Show only the last N messages."`
}

func (c *historyCmd) Run(ctx context.Context) error {
	if err := notNegative("--last", c.Last); err != nil {
		return err
	}
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := optionalHandle(cl, c.Handle)
		if err != nil {
			return err
		}
		es, err := cl.History(h)
		if err != nil {
			return err
		}
		if !h.IsZero() && len(es) == 0 {
			if _, err := cl.Verify(h); errors.Is(err, client.ErrNotContact) {
				return err
			}
		}
		if !a.g.JSON {
			// A receipt shows as the state of the message it names, in the chat.
			es = slices.DeleteFunc(es, func(e client.Entry) bool { return e.Type == client.TypeReceipt })
		}
		if c.Last > 0 && len(es) > c.Last {
			es = es[len(es)-c.Last:]
		}
		if a.g.JSON {
			if es == nil {
				es = []client.Entry{}
			}
			return writeJSON(a.out, es)
		}
		for i := range es {
			e := &es[i]
			arrow := "<-"
			if e.Dir == client.DirOut {
				arrow = "->"
			}
			warn := ""
			if e.Warning == client.WarnKeyChanged && !e.Quarantined {
				warn = " (signed by a key trusted later)"
			}
			fmt.Fprintf(a.out, "%s\n", a.fit(fmt.Sprintf("%s %s %s%s: %s", time.Unix(e.SentAt, 0).Format("2006-01-02 15:04:05"), arrow, show(cl, e.Peer), warn, text(cl, e))))
		}
		return nil
	})
}

// notNegative refuses a negative value of a limit flag, which would
// otherwise read as its 0, "no limit".
func notNegative[T int | time.Duration](flag string, v T) error {
	if v < 0 {
		return fmt.Errorf("%s %v: must be 0 (no limit) or more", flag, v)
	}
	return nil
}
