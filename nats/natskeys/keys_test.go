package natskeys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez/nats/natskeys"
)

func TestEnsureKeysKeepsSeeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	first, err := natskeys.EnsureKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"KEZ_CALLOUT_ISSUER: \"A", "KEZ_CALLOUT_XKEY: \"X", "KEZ_CHAT_SERVER_NKEY: \"U", "KEZ_CALLOUT_NKEY: \"U", "KEZ_SIG_SERVER_NKEY: \"U", "KEZ_ADMIN_NKEY: \"U", "KEZ_SYS_NKEY: \"U"} {
		if !strings.Contains(string(first), v) {
			t.Errorf("kez-keys.conf lacks %s...", v)
		}
	}
	seed, _ := os.ReadFile(filepath.Join(dir, natskeys.KeyIssuer+".nk"))
	second, err := natskeys.EnsureKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("second run changed the keys")
	}
	again, _ := os.ReadFile(filepath.Join(dir, natskeys.KeyIssuer+".nk"))
	if !bytes.Equal(seed, again) {
		t.Fatal("second run rewrote a seed")
	}
	for _, name := range []string{natskeys.KeyIssuer, natskeys.KeyXKey, natskeys.KeyChatServer} {
		fi, err := os.Stat(filepath.Join(dir, name+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.nk mode %v, want 0600", name, fi.Mode().Perm())
		}
		if _, err := natskeys.ReadSeedFile(filepath.Join(dir, name+".nk")); err != nil {
			t.Errorf("ReadSeedFile(%s): %v", name, err)
		}
	}
}

func TestReadSeedFileRefusesReadableFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := natskeys.EnsureKeys(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, natskeys.KeyCallout+".nk")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natskeys.ReadSeedFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("ReadSeedFile of a 0644 seed: %v", err)
	}
	if _, err := natskeys.EnsureKeys(dir); err == nil {
		t.Fatal("EnsureKeys accepted a world-readable seed")
	}
}
