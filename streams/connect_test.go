package streams_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestConnectSeedFileMode: Connect signs in with a service user's seed
// file only if group and others cannot read it (natskeys.ReadSeedFile's
// rule, docs/operations.md), so a seed left world-readable on a shared
// host is refused at start rather than used.
func TestConnectSeedFileMode(t *testing.T) {
	ns := natstest.Start(t)
	seed, err := os.ReadFile(ns.KeyFile(natskeys.KeyChatServer))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "chat-server.nk")
			if err := os.WriteFile(p, seed, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			nc, err := streams.Connect(ns.ClientURL(), p, "test", log)
			if err == nil {
				defer nc.Close()
			}
			if tt.ok && err != nil {
				t.Fatalf("Connect with a %v seed file: %v", tt.mode, err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("Connect used a %v seed file, want it refused", tt.mode)
			}
			if tt.ok && !nc.IsConnected() {
				t.Fatalf("Connect with a %v seed file: not connected", tt.mode)
			}
		})
	}
}
