package chatcmd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
)

// presenceFlags are listen's presence flags.
type presenceFlags struct {
	Invisible   bool          `env:"KEZ_CHAT_INVISIBLE" help:"Do not announce that you are online (nothing about you is published; an earlier entry is removed)."`
	Presence    bool          `help:"Print when a contact comes online or goes away."`
	PresenceTTL time.Duration `name:"presence-ttl" hidden:"" default:"60s" help:"How long one announcement counts (renewed every third of it)."`
}

// start announces the user while a long-running command runs (not with
// --once), and follows the contacts' presence if asked; the returned
// function stops both, saying goodbye.
func (f presenceFlags) start(ctx context.Context, a *app, cl *client.Client, once bool) (stop func()) {
	if once {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := cl.Announce(ctx, client.AnnounceOptions{TTL: f.PresenceTTL, Invisible: f.Invisible})
		if err != nil && ctx.Err() == nil {
			a.errf("kez-chat: note: presence not announced: %v\n", err)
		}
	})
	if f.Presence {
		var mu sync.Mutex
		first := map[kez.Handle]bool{}
		wg.Go(func() {
			err := cl.WatchPresence(ctx, func(p client.Presence) {
				mu.Lock()
				initial := !first[p.Handle]
				first[p.Handle] = true
				mu.Unlock()
				if initial && p.State != client.PresenceOnline {
					return // only changes, and who is online now
				}
				printPresence(a, cl, p)
			})
			if err != nil && ctx.Err() == nil {
				a.errf("kez-chat: note: cannot follow presence: %v\n", err)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func printPresence(a *app, cl *client.Client, p client.Presence) {
	if a.g.JSON {
		writeLine(a.out, struct {
			Event string `json:"event"`
			client.Presence
		}{"presence", p})
		return
	}
	who := show(cl, p.Handle)
	switch p.State {
	case client.PresenceOnline:
		fmt.Fprintf(a.out, "%s %s is online\n", time.Now().Format("2006-01-02 15:04:05"), who)
	default:
		fmt.Fprintf(a.out, "%s %s went away (%s)\n", time.Now().Format("2006-01-02 15:04:05"), who, display.Presence(p, time.Now()))
	}
}

// statusOf prints the presence of one handle: status @bob.
func statusOf(ctx context.Context, a *app, cl *client.Client, arg string) error {
	h, err := handleArg(cl, arg)
	if err != nil {
		return err
	}
	p, err := cl.Presence(ctx, h)
	if err != nil {
		return err
	}
	if a.g.JSON {
		return writeJSON(a.out, p)
	}
	fmt.Fprintf(a.out, "%s: %s\n", show(cl, h), display.Presence(p, time.Now()))
	return nil
}

// contactsPresence returns the contacts' presence by handle, or nil with
// a note when the broker cannot be asked.
func contactsPresence(ctx context.Context, a *app, cl *client.Client) map[kez.Handle]client.Presence {
	ps, err := cl.ContactsPresence(ctx)
	if err != nil {
		a.errf("kez-chat: note: presence unavailable: %v\n", err)
		return nil
	}
	out := make(map[kez.Handle]client.Presence, len(ps))
	for _, p := range ps {
		out[p.Handle] = p
	}
	return out
}
