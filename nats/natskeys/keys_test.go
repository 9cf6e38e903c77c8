package natskeys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

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

// TestEnsureKeysAfterCrash: what a power cut during a first `keys` run can
// leave (an empty seed file from earlier releases, which wrote in place;
// empty or partial temporary files and a truncated kez-keys.conf) does not
// block the next run, and a seed already there is never replaced.
func TestEnsureKeysAfterCrash(t *testing.T) {
	dir := t.TempDir()
	kept, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	keptSeed, _ := kept.Seed()
	for name, data := range map[string]string{
		natskeys.KeySigServer + ".nk":          string(keptSeed) + "\n",
		natskeys.KeyChatServer + ".nk":         "",
		"." + natskeys.KeyIssuer + ".nk.tmp-1": "",
		"." + natskeys.KeyXKey + ".nk.tmp-2":   "SX",
		natskeys.KeysConfFile:                  "# Written by",
		"." + natskeys.KeysConfFile + ".tmp-3": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := natskeys.EnsureKeys(dir)
	if err != nil {
		t.Fatalf("EnsureKeys after a crash: %v", err)
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, natskeys.KeysConfFile))
	if !bytes.Equal(onDisk, conf) || !strings.Contains(string(conf), "KEZ_SYS_NKEY") {
		t.Errorf("kez-keys.conf = %q, want the whole config", onDisk)
	}
	for _, name := range []string{natskeys.KeyIssuer, natskeys.KeyXKey, natskeys.KeyChatServer, natskeys.KeySigServer} {
		if _, err := natskeys.ReadSeedFile(filepath.Join(dir, name+".nk")); err != nil {
			t.Errorf("ReadSeedFile(%s): %v", name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, natskeys.KeySigServer+".nk")); string(b) != string(keptSeed)+"\n" {
		t.Error("EnsureKeys replaced an existing seed")
	}
	pub, _ := kept.PublicKey()
	if !strings.Contains(string(conf), pub) {
		t.Errorf("kez-keys.conf lacks the kept key %s", pub)
	}
}

// TestInstallGivesOnlyTheNamedSeeds: a service's folder gets copies of its
// own seeds and nothing else, a second run keeps them, and a seed there
// that holds another key is refused, not overwritten.
func TestInstallGivesOnlyTheNamedSeeds(t *testing.T) {
	tmp := t.TempDir()
	dir, dst := filepath.Join(tmp, "keys"), filepath.Join(tmp, "sig-server")
	if _, err := natskeys.EnsureKeys(dir); err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		if err := natskeys.Install(dir, dst, natskeys.SigServerKeys...); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != natskeys.KeySigServer+".nk" {
			t.Fatalf("run %d: %s holds %v, want only sig-server.nk", run, dst, ents)
		}
		want, _ := natskeys.ReadSeedFile(filepath.Join(dir, "sig-server.nk"))
		got, err := natskeys.ReadSeedFile(filepath.Join(dst, "sig-server.nk"))
		if err != nil {
			t.Fatal(err)
		}
		wp, _ := want.PublicKey()
		gp, _ := got.PublicKey()
		if wp != gp {
			t.Fatalf("copy holds %s, want %s", gp, wp)
		}
		if fi, _ := os.Stat(filepath.Join(dst, "sig-server.nk")); fi.Mode().Perm() != 0o600 {
			t.Fatalf("copy mode %v, want 0600", fi.Mode().Perm())
		}
	}

	other, _ := nkeys.CreateUser()
	seed, _ := other.Seed()
	path := filepath.Join(dst, "sig-server.nk")
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := natskeys.Install(dir, dst, natskeys.SigServerKeys...); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Install over another key: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(bytes.TrimSpace(b), seed) {
		t.Fatal("Install overwrote a seed")
	}
}

func TestInstallChatServerKeys(t *testing.T) {
	tmp := t.TempDir()
	dir, dst, nats := filepath.Join(tmp, "keys"), filepath.Join(tmp, "chat-server"), filepath.Join(tmp, "nats")
	conf, err := natskeys.EnsureKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := natskeys.Install(dir, dst, natskeys.ChatServerKeys...); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dst)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "callout.nk chat-server.nk issuer.nk xkey.nk" {
		t.Fatalf("chat-server's folder holds %v", names)
	}
	if err := natskeys.WriteConf(nats, conf); err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(nats)
	if len(ents) != 1 || ents[0].Name() != natskeys.KeysConfFile {
		t.Fatalf("nats folder holds %v, want only %s", ents, natskeys.KeysConfFile)
	}
	if b, _ := os.ReadFile(filepath.Join(nats, natskeys.KeysConfFile)); !bytes.Equal(b, conf) {
		t.Fatal("kez-keys.conf differs")
	}
}
