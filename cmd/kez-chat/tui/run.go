package tui

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/nats-io/nats.go"

	"kez.lat/kez/client"
)

// Feed carries what the client library reports through callbacks (the
// broker connection's state, notes) to the running chat. Make it before
// the client, whose configuration takes [Feed.NATSOptions] and
// [Feed.Note], so that nothing is printed over the screen.
type Feed struct{ ch chan tea.Msg }

// NewFeed returns an empty feed.
func NewFeed() *Feed { return &Feed{ch: make(chan tea.Msg, 64)} }

// put queues msg, dropping it if the chat is not reading (a burst of
// reconnect attempts while the screen is stuck must not block the
// connection's callbacks).
func (f *Feed) put(msg tea.Msg) {
	select {
	case f.ch <- msg:
	default:
	}
}

// Note is a [client.Config.Note].
func (f *Feed) Note(msg string) { f.put(NoteMsg(msg)) }

// NATSOptions report the connection's state as [ConnMsg] and its
// asynchronous errors as notes, instead of nats.go printing them to
// stderr, over the screen.
func (f *Feed) NATSOptions() []nats.Option {
	up := func(*nats.Conn) { f.put(ConnMsg{Up: true}) }
	return []nats.Option{
		nats.ConnectHandler(up),
		nats.ReconnectHandler(up),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				err = errors.New("disconnected")
			}
			f.put(ConnMsg{Err: err})
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			f.put(NoteMsg("broker: " + err.Error()))
		}),
	}
}

// RunOptions are what [Run] does besides the chat.
type RunOptions struct {
	Options
	// NoFiles does not serve the user's shared files.
	NoFiles bool
	// Invisible announces no presence.
	Invisible bool
}

// Run runs the chat of c on the terminal in/out until the user quits or
// ctx ends, with what `kez-chat listen` runs: the inbox (Listen,
// restarted after a failure), the file-serving node and the presence
// announcement, and it follows the contacts' presence. It refuses to
// start, with [client.ErrListening], while another listen or chat runs
// on the profile.
func Run(ctx context.Context, c *client.Client, feed *Feed, opt RunOptions, in io.Reader, out io.Writer) error {
	release, err := c.HoldListener()
	if err != nil {
		return err
	}
	defer release()
	if opt.Renderer == nil {
		opt.Renderer = lipgloss.NewRenderer(out)
	}
	m, err := New(ctx, c, opt.Options)
	if err != nil {
		return err
	}
	// A contact pinned while the chat runs (by /add, or by a first
	// message) has its presence followed from then on.
	contactsChanged := make(chan struct{}, 1)
	filter := func(_ tea.Model, msg tea.Msg) tea.Msg {
		switch msg := msg.(type) {
		case EventMsg:
			if msg.Entry != nil && msg.Entry.Warning == client.WarnNewContact {
				signal(contactsChanged)
			}
		case resultMsg:
			if msg.open {
				signal(contactsChanged)
			}
		}
		return msg
	}
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithAltScreen(), tea.WithMouseCellMotion(),
		tea.WithInput(in), tea.WithOutput(out), tea.WithFilter(filter))
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case msg := <-feed.ch:
				p.Send(msg)
			case <-lctx.Done():
				return
			}
		}
	})
	wg.Go(func() { listen(lctx, c, p.Send) })
	served := make(chan struct{})
	if opt.NoFiles {
		close(served)
	} else {
		wg.Go(func() {
			once := sync.OnceFunc(func() { close(served) })
			defer once()
			err := c.Serve(lctx, client.ServeOptions{Ready: func(_ []string, err error) {
				if err != nil {
					p.Send(NoteMsg("your sigchain does not list this device's addresses yet: " + err.Error()))
				}
				once()
			}})
			if err != nil && lctx.Err() == nil {
				p.Send(NoteMsg("not serving shared files: " + err.Error()))
			}
		})
	}
	wg.Go(func() {
		// Online only once files can be fetched.
		select {
		case <-served:
		case <-lctx.Done():
			return
		}
		if err := c.Announce(lctx, client.AnnounceOptions{Invisible: opt.Invisible}); err != nil && lctx.Err() == nil {
			p.Send(NoteMsg("presence not announced: " + err.Error()))
		}
	})
	wg.Go(func() { watchPresence(lctx, c, p.Send, contactsChanged) })
	_, err = p.Run()
	cancel()
	wg.Wait()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// watchPresence follows the contacts' presence until ctx ends: again
// at once when the contacts change, and after a growing pause when the
// watch fails.
func watchPresence(ctx context.Context, c *client.Client, send func(tea.Msg), changed <-chan struct{}) {
	pause := time.Second
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		watched := make(chan error, 1)
		go func() { watched <- c.WatchPresence(wctx, func(pr client.Presence) { send(PresenceMsg(pr)) }) }()
		select {
		case <-watched:
			select {
			case <-ctx.Done():
			case <-changed:
			case <-time.After(pause):
			}
			pause = min(2*pause, 10*time.Second)
		case <-changed:
			cancel()
			<-watched
			pause = time.Second
		}
		cancel()
	}
}

// signal notes an event on ch without blocking (one pending is enough).
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen follows the inbox until ctx ends, starting again after a
// failure (the broker unreachable at the start, the connection closed)
// with a growing pause; each failure shows as the connection down.
func listen(ctx context.Context, c *client.Client, send func(tea.Msg)) {
	retry(ctx, func() error {
		err := c.Listen(ctx, client.ListenOptions{}, func(ev client.Event) { send(EventMsg(ev)) })
		if err != nil && ctx.Err() == nil {
			send(listenFailure(err))
		}
		return err
	})
}

// listenFailure is how a failed Listen shows: the connection down, or,
// when the messages could not be stored on this device, a note that
// says so (the broker is fine; the disk is not).
func listenFailure(err error) tea.Msg {
	if errors.Is(err, client.ErrStore) {
		return NoteMsg(err.Error() + ": messages cannot be stored on this device (disk full or failing?); they wait in your inbox, and the chat tries again")
	}
	return ConnMsg{Err: err}
}

// retry runs fn until ctx ends, pausing 1 s, 2 s, ... up to 10 s after
// each return.
func retry(ctx context.Context, fn func() error) {
	pause := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		_ = fn()
		if time.Since(start) > time.Minute {
			pause = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}
