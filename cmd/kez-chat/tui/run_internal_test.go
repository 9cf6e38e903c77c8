package tui

import (
	"errors"
	"io"
	"strings"
	"testing"

	"kez.lat/kez/client"
)

// TestListenFailure: a Listen that could not store on this device shows
// as a note that says so, not as the broker down.
func TestListenFailure(t *testing.T) {
	if m, ok := listenFailure(errors.Join(client.ErrStore, io.ErrShortWrite)).(NoteMsg); !ok || !strings.Contains(string(m), "this device") {
		t.Errorf("a store failure shows as %#v", m)
	}
	if m, ok := listenFailure(client.ErrUnreachable).(ConnMsg); !ok || m.Up {
		t.Errorf("the broker unreachable shows as %#v", m)
	}
}
