package tui_test

import (
	"fmt"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/tui"
)

// BenchmarkEventView is the model's share of a live message: take it,
// draw the frame.
func BenchmarkEventView(b *testing.B) {
	f := world()
	m := newModel(b, f, tui.Options{Open: handle("bob"), NoReceipts: true})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	for i := 0; b.Loop(); i++ {
		e := text(client.DirIn, "bob", now.Add(time.Duration(i)*time.Second), fmt.Sprintf("message %d", i))
		m.Update(tui.EventMsg{Entry: &e})
		m.View()
	}
}
