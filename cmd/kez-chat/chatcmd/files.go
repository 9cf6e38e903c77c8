package chatcmd

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/p2p"
	"kez.lat/kez/share"
)

type shareCmd struct {
	Handle string `arg:"" predictor:"contact" help:"Who to share with (@bob)."`
	Path   string `arg:"" predictor:"file" type:"existingfile" help:"The file to share."`
}

func (c *shareCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		var size int64
		if fi, err := os.Stat(c.Path); err == nil {
			size = fi.Size()
		}
		bar := newBar(a, size, "encrypting")
		res, err := cl.Share(ctx, h, c.Path, bar.set)
		bar.finish()
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, res)
		}
		fmt.Fprintf(a.out, "%s  %s  %s  shared with %s\n", res.ID, sanitize(res.File.Name), display.Size(res.File.FileSize), show(cl, h))
		if isTerminalWriter(a.errw) {
			a.errf("hint: %s downloads it from this device while `kez-chat listen` runs here\n", show(cl, h))
		}
		return nil
	})
}

type filesCmd struct{}

func (c *filesCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		fs, err := cl.Files()
		if err != nil {
			return err
		}
		if a.g.JSON {
			if fs == nil {
				fs = []client.Shared{}
			}
			return writeJSON(a.out, fs)
		}
		if len(fs) == 0 && isTerminalWriter(a.errw) {
			fmt.Fprintln(a.errw, "kez-chat: you share no files; kez-chat share @bob ./file shares one")
		}
		for _, f := range fs {
			var with []string
			for _, r := range f.With {
				with = append(with, show(cl, r.Handle))
			}
			fmt.Fprintf(a.out, "%s  %s  %s  %s  with %s\n", f.ID, time.Unix(f.File.SharedAt, 0).Format("2006-01-02 15:04"),
				sanitize(f.File.Name), display.Size(f.File.FileSize), strings.Join(with, ", "))
		}
		return nil
	})
}

type unshareCmd struct {
	ID     string `arg:"" help:"The file's ID, as kez-chat files shows it."`
	Handle string `arg:"" optional:"" predictor:"contact" help:"Stop sharing with this user only (default: with everyone, and delete the encrypted copy)."`
}

func (c *unshareCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := optionalHandle(cl, c.Handle)
		if err != nil {
			return err
		}
		f, err := cl.Unshare(ctx, c.ID, h)
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, f)
		}
		who := "anyone"
		if !h.IsZero() {
			who = show(cl, h)
		}
		fmt.Fprintf(a.out, "%s  %s  no longer shared with %s\n", f.ID, sanitize(f.File.Name), who)
		return nil
	})
}

// fetchFlags are the flags of fetch, browse and chat that tune a
// download.
type fetchFlags struct {
	Wait      time.Duration `default:"10m" help:"How long to wait for the sender to come online when their device cannot be reached (0: fail at once)."`
	MinRate   minRate       `name:"min-rate" default:"64KiB/30s" help:"Stop a download (it resumes next time) once the sender's device sends less than SIZE in any DURATION, given as SIZE/DURATION: a frozen or hostile device would otherwise hold it for ever."`
	FirstByte time.Duration `name:"first-byte" default:"15s" help:"Stop a download once the sender's device, reached, has sent nothing this long after being asked."`
}

func (f fetchFlags) options(a *app, cl *client.Client) client.FetchOptions {
	return client.FetchOptions{Wait: f.Wait, MinRate: f.minRate(), Waiting: func(h kez.Handle, until time.Time) {
		a.errf("kez-chat: waiting for %s to come online (until %s; Ctrl-C stops, and the download resumes next time)\n",
			show(cl, h), until.Format("15:04:05"))
	}}
}

// minRate returns the rule the flags set.
func (f fetchFlags) minRate() p2p.MinRate {
	return p2p.MinRate{FirstByte: f.FirstByte, Bytes: f.MinRate.Bytes, Window: f.MinRate.Window}
}

// Validate refuses a --first-byte that is not positive.
func (f fetchFlags) Validate() error {
	if f.FirstByte <= 0 {
		return fmt.Errorf("--first-byte %s: must be more than 0", f.FirstByte)
	}
	return nil
}

// minRate is the --min-rate flag: a size and a duration, 64KiB/30s.
type minRate struct {
	Bytes  int64
	Window time.Duration
}

func (r *minRate) UnmarshalText(b []byte) error {
	size, window, ok := strings.Cut(string(b), "/")
	var n byteSize
	d, err := time.ParseDuration(strings.TrimSpace(window))
	if !ok || n.UnmarshalText([]byte(size)) != nil || err != nil || d <= 0 {
		return fmt.Errorf("%q: want a size and a positive duration, such as 64KiB/30s", b)
	}
	r.Bytes, r.Window = int64(n), d
	return nil
}

type fetchCmd struct {
	ID         string   `arg:"" help:"The file's ID, from the announcement (kez-chat history) or kez-chat browse."`
	From       string   `help:"Whose file: needed for a file listed by kez-chat browse @user but never announced to you."`
	Output     string   `short:"o" type:"path" help:"Where to save it: a path, or a directory (default: its name in the current directory). Nothing is ever overwritten."`
	MaxSize    byteSize `name:"max-size" default:"64GiB" help:"Refuse a file the sender announces as larger than this (bytes, or with a KiB, MiB, GiB or TiB suffix), before anything is written."`
	fetchFlags `embed:""`
}

// byteSize is a size flag: a number of bytes, with an optional binary
// suffix (64GiB).
type byteSize int64

func (s *byteSize) UnmarshalText(b []byte) error {
	t := strings.TrimSuffix(strings.TrimSpace(string(b)), "B")
	shift := 0
	for i, u := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if v, ok := strings.CutSuffix(t, u); ok {
			t, shift = v, 10*(i+1)
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return fmt.Errorf("%q: want a positive size such as 5000000, 500MiB or 64GiB", b)
	}
	*s = byteSize(n << shift)
	return nil
}

func (c *fetchCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		opts := c.options(a, cl)
		opts.Output, opts.MaxSize = c.Output, int64(c.MaxSize)
		var err error
		if opts.From, err = optionalHandle(cl, c.From); err != nil {
			return err
		}
		var bar *bar
		opts.Notice = func(msg string) { a.errf("kez-chat: %s\n", sanitize(msg)) }
		opts.Progress = func(p client.FetchProgress) {
			if bar == nil {
				bar = newBar(a, p.Total, "fetching ("+p.Route+")")
			}
			bar.set(p.Done)
		}
		res, err := cl.Fetch(ctx, c.ID, opts)
		bar.finish()
		if err != nil {
			return err
		}
		if res.Renamed {
			why := "a received name starting with '.' would be a hidden file"
			if !strings.HasPrefix(res.Offer.File.Name, ".") {
				why = "Windows cannot create a file by the received name"
			}
			a.errf("kez-chat: saved as %s, not %s: %s (-o chooses the name)\n",
				sanitize(res.Path), sanitize(res.Offer.File.Name), why)
		}
		if a.g.JSON {
			return writeJSON(a.out, res)
		}
		fmt.Fprintln(a.out, res.Path)
		if isTerminalWriter(a.errw) {
			how := ""
			if res.Route != "" {
				how = ", " + res.Route
			}
			if res.Resumed > 0 {
				how += fmt.Sprintf(", resumed after %s", display.Size(res.Resumed))
			}
			a.errf("kez-chat: %s from %s (%s%s), verified and decrypted\n", sanitize(res.Offer.File.Name),
				show(cl, res.Offer.From), display.Size(res.Offer.File.FileSize), how)
		}
		return nil
	})
}

type browseCmd struct {
	Handle     string `arg:"" predictor:"contact" help:"Whose shared files to list (@alice)."`
	fetchFlags `embed:""`
}

func (c *browseCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		l, err := cl.Browse(ctx, h, c.options(a, cl))
		if err != nil {
			return err
		}
		if a.g.JSON {
			return writeJSON(a.out, l)
		}
		if l.Problem != "" {
			a.errf("kez-chat: warning: some of %s's entries for you do not open: %s\n", show(cl, h), l.Problem)
		}
		if len(l.Files) == 0 {
			a.errf("kez-chat: %s shares nothing with you\n", show(cl, h))
		}
		for _, o := range l.Files {
			fmt.Fprintf(a.out, "%s  %s  %s  %s\n", o.ID, time.Unix(o.File.SharedAt, 0).Format("2006-01-02 15:04"), sanitize(o.File.Name), display.Size(o.File.FileSize))
		}
		if len(l.Files) > 0 && isTerminalWriter(a.errw) {
			a.errf("hint: kez-chat fetch --from %s ID downloads one\n", show(cl, h))
		}
		return nil
	})
}

// bar is a progress bar on stderr when it is a terminal (and not
// --json); otherwise it does nothing. A nil bar does nothing too.
type bar struct{ pb *progressbar.ProgressBar }

func newBar(a *app, total int64, what string) *bar {
	if a.g.JSON || !isTerminalWriter(a.errw) {
		return nil
	}
	return &bar{pb: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(a.errw),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)}
}

func (b *bar) set(n int64) {
	if b != nil {
		_ = b.pb.Set64(n)
	}
}

func (b *bar) finish() {
	if b != nil {
		_ = b.pb.Finish()
		_ = b.pb.Exit()
	}
}

// fileText is how a file announcement reads: a received one with the
// command that fetches it.
func fileText(cl *client.Client, e *client.Entry) string {
	if e.Dir == client.DirOut {
		ann, err := share.ParseAnnouncement(e.Plaintext)
		if err != nil {
			return "[a file announcement]"
		}
		return fmt.Sprintf("shared %s (%s): %s", sanitize(ann.Name), display.Size(ann.FileSize), ann.Blob.String()[:12])
	}
	o, err := cl.Announcement(*e)
	if err != nil {
		return fmt.Sprintf("[a file announcement that cannot be read: %v]", err)
	}
	return fmt.Sprintf("shared %s (%s): kez-chat fetch %s", sanitize(o.File.Name), display.Size(o.File.FileSize), o.ID)
}
