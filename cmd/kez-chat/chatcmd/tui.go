package chatcmd

import (
	"context"
	"errors"
	"io"
	"os"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/tui"
)

type chatCmd struct {
	Handle    string `arg:"" optional:"" predictor:"contact" help:"Conversation to open first (default: the most recent)."`
	Output    string `short:"o" type:"path" help:"Directory where /fetch saves files (default: the current directory)."`
	NoFiles   bool   `name:"no-files" env:"KEZ_CHAT_NO_FILES" help:"Do not serve your shared files while the chat runs (contacts cannot fetch them)."`
	Invisible bool   `env:"KEZ_CHAT_INVISIBLE" help:"Do not announce that you are online."`
	// NoReceipts works both ways, as in Signal: who does not say what
	// they read does not learn what others read.
	NoReceipts bool `name:"no-receipts" env:"KEZ_CHAT_NO_RECEIPTS" help:"Turn delivery and read receipts off both ways: send none, and ignore those received."`
	fetchFlags `embed:""`
}

// errNoTerminal: the chat needs a terminal on stdin and stdout.
var errNoTerminal = errors.New("the chat needs a terminal (stdin and stdout); scripts use send, listen and history")

func (c *chatCmd) Run(ctx context.Context) error {
	a := appFrom(ctx)
	if !interactive(a.stdin, a.out) {
		return errNoTerminal
	}
	feed := tui.NewFeed()
	cl, err := a.client(func(cfg *client.Config) {
		cfg.NATSOptions = append(cfg.NATSOptions, feed.NATSOptions()...)
		cfg.Note = feed.Note
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.Account(); err != nil {
		return err
	}
	h, err := optionalHandle(cl, c.Handle)
	if err != nil {
		return err
	}
	return tui.Run(ctx, cl, feed, tui.RunOptions{
		Options:   tui.Options{Open: h, DownloadDir: c.Output, FetchWait: c.Wait, FetchMinRate: c.minRate(), NoReceipts: c.NoReceipts},
		NoFiles:   c.NoFiles,
		Invisible: c.Invisible,
	}, a.stdin, a.out)
}

// interactive reports whether both stdin and stdout are terminals.
func interactive(stdin io.Reader, stdout io.Writer) bool {
	out, ok := stdout.(*os.File)
	return ok && isTerminal(stdin) && isTerminal(out)
}
