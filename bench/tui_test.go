//go:build bench

package bench_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/cmd/kez-chat/tui"
	"kez.lat/kez/message"
)

func chatModel(t *testing.T, c *client.Client, open string) *tui.Model {
	t.Helper()
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	h, _ := c.ParseHandle(open)
	m, err := tui.New(context.Background(), c, tui.Options{Open: h, Renderer: r, NoReceipts: true})
	if err != nil {
		t.Fatal(err)
	}
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	return m
}

// TestBenchChatRender: the time from a message's publish (alice's
// SendText) to the frame of bob's chat model that shows it (bob's
// Listen delivers it, the model takes it and draws), p50 and p99; then
// the heap an open chat of 10,000 messages holds, and the time to open
// and draw it.
func TestBenchChatRender(t *testing.T) {
	st := clienttest.StartWith(t, func(c *chatserver.Config) {
		c.Streams.InboxMaxMsgs = 20000
		c.Streams.SenderMaxMsgs = 20000
		c.Streams.InboxMaxBytes = 1 << 30
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice, bob := registerChatUser(t, st, "alice"), registerChatUser(t, st, "bob")
	hb, _ := alice.c.ParseHandle("bob")
	if _, _, err := alice.c.Add(ctx, hb); err != nil {
		t.Fatal(err)
	}
	events := make(chan client.Event, 16)
	done := make(chan error, 1)
	go func() { done <- bob.c.Listen(ctx, client.ListenOptions{}, func(ev client.Event) { events <- ev }) }()
	m := chatModel(t, bob.c, "alice")

	const n = 500
	lat := make([]time.Duration, 0, n)
	var render time.Duration
	for i := range n {
		body := fmt.Sprintf("message %04d", i)
		start := time.Now()
		if _, err := alice.c.Send(ctx, hb, message.Text(body), client.SendOptions{NoRefresh: i > 0}); err != nil {
			t.Fatal(err)
		}
		ev := <-events
		r0 := time.Now()
		m.Update(tui.EventMsg(ev))
		if v := m.View(); !strings.Contains(v, body) {
			t.Fatalf("the frame after %q does not show it:\n%s", body, v)
		}
		render += time.Since(r0)
		lat = append(lat, time.Since(start))
	}
	cancel()
	<-done
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("BENCH chat publish-to-render, %d messages: p50 %v p99 %v (model update+draw alone: mean %v)",
		n, p(0.50).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), (render / n).Round(time.Microsecond))

	// 10,000 messages in alice's history with bob.
	ctx = context.Background()
	const big = 10000
	for i := range big {
		body := fmt.Sprintf("history message %05d: %s", i, strings.Repeat("lorem ipsum ", i%8))
		if _, err := alice.c.Send(ctx, hb, message.Text(body), client.SendOptions{NoRefresh: true}); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	open := time.Now()
	big10k := chatModel(t, alice.c, "bob")
	v := big10k.View()
	took := time.Since(open)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if !strings.Contains(v, fmt.Sprintf("history message %05d", big-1)) {
		t.Fatalf("the last message is not on screen:\n%s", v)
	}
	// Paging up to the first message renders every message once.
	p0 := time.Now()
	for range big / 10 {
		big10k.Update(tea.KeyMsg{Type: tea.KeyPgUp})
		big10k.View()
	}
	paging := time.Since(p0)
	var paged runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&paged)
	runtime.KeepAlive(big10k)
	mib := func(m runtime.MemStats) float64 { return float64(m.HeapAlloc-before.HeapAlloc) / (1 << 20) }
	t.Logf("BENCH chat with %d messages of history: heap %.1f MiB open, %.1f MiB with every message drawn; open and first frame %v, paging to the top %v",
		big+n, mib(after), mib(paged), took.Round(time.Millisecond), paging.Round(time.Millisecond))
}
