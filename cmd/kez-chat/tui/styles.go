package tui

import "github.com/charmbracelet/lipgloss"

// styles are the chat's colours and emphasis, made by one renderer so
// that NO_COLOR (and a terminal without colour) turns them all off.
type styles struct {
	header, banner, warn, dim, me, peer, selected, online, unread, sep, state, errText lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	s := r.NewStyle
	return styles{
		header:   s().Bold(true).Reverse(true),
		banner:   s().Bold(true).Foreground(lipgloss.Color("1")).Reverse(true),
		warn:     s().Bold(true).Foreground(lipgloss.Color("3")),
		dim:      s().Faint(true),
		me:       s().Bold(true).Foreground(lipgloss.Color("4")),
		peer:     s().Bold(true).Foreground(lipgloss.Color("5")),
		selected: s().Reverse(true),
		online:   s().Foreground(lipgloss.Color("2")),
		unread:   s().Bold(true).Foreground(lipgloss.Color("3")),
		sep:      s().Faint(true),
		state:    s().Faint(true),
		errText:  s().Foreground(lipgloss.Color("1")),
	}
}
