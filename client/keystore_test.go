package client_test

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// These tests replace the process's keyring with go-keyring's in-memory
// mock (a global): none of them runs in parallel.

func keyProfile(t *testing.T, store client.KeyStore) *client.Profile {
	t.Helper()
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), "profile"))
	if err != nil {
		t.Fatal(err)
	}
	p.KeyStore = store
	return p
}

// keyFileText returns the key file's content.
func keyFileText(t *testing.T, p *client.Profile) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func seedHex(k *kez.PrivateKey) string { return hex.EncodeToString(k.Seed()) }

// TestKeyringStore: with a keyring, the seed is stored there and not on
// disk; the key file names the item; a profile opened later (with any
// key-store preference) reads the key from the keyring; the mode rule
// still holds for the key file; RemoveKey deletes the item.
func TestKeyringStore(t *testing.T) {
	keyring.MockInit()
	p := keyProfile(t, client.KeyStoreKeyring)
	k, _ := kez.GenerateKey(nil)
	saved, err := p.SaveKey(k)
	if err != nil || saved.Store != client.KeyStoreKeyring || saved.Fallback != nil {
		t.Fatalf("SaveKey = %+v, %v", saved, err)
	}
	text := keyFileText(t, p)
	if strings.Contains(text, seedHex(k)) || !strings.HasPrefix(text, "kez-keyring-v1 ") {
		t.Fatalf("key file holds %q", text)
	}
	if fi, err := os.Stat(filepath.Join(p.Dir, "key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	user := k.Public().String() + " " + p.Dir
	secret, err := keyring.Get("kez-chat", user)
	if err != nil || !strings.Contains(secret, seedHex(k)) {
		t.Fatalf("keyring item %q: %v", user, err)
	}
	if !p.HasKey() {
		t.Fatal("HasKey false")
	}
	if _, err := p.SaveKey(k); !errors.Is(err, client.ErrAccountExists) {
		t.Errorf("second SaveKey: %v", err)
	}

	// Read back through a new profile value, as the next command does.
	for _, store := range []client.KeyStore{client.KeyStoreFile, client.KeyStoreAuto, ""} {
		q, _ := client.OpenProfile(p.Dir)
		q.KeyStore = store
		got, err := q.Key()
		if err != nil || !got.Public().Equal(k.Public()) {
			t.Fatalf("read back with preference %q: %v", store, err)
		}
		if s, err := q.KeyStoreInUse(); err != nil || s != client.KeyStoreKeyring {
			t.Fatalf("KeyStoreInUse = %q, %v", s, err)
		}
	}

	// A key file others can read is refused, even one that names an item.
	name := filepath.Join(p.Dir, "key")
	os.Chmod(name, 0o644)
	if _, err := p.Key(); !errors.Is(err, client.ErrKeyFileMode) {
		t.Errorf("mode 0644: %v", err)
	}
	os.Chmod(name, 0o600)

	if err := p.RemoveKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.Get("kez-chat", user); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("item left after RemoveKey: %v", err)
	}
	if p.HasKey() {
		t.Error("key file left after RemoveKey")
	}
}

// TestKeyringAuto: auto uses the keyring only with a session bus
// configured (on Linux and the BSDs), the file otherwise; file never
// touches the keyring.
func TestKeyringAuto(t *testing.T) {
	keyring.MockInit()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus")
	p := keyProfile(t, client.KeyStoreAuto)
	k, _ := kez.GenerateKey(nil)
	if saved, err := p.SaveKey(k); err != nil || saved.Store != client.KeyStoreKeyring {
		t.Fatalf("auto with a session bus: %+v, %v", saved, err)
	}

	p = keyProfile(t, client.KeyStoreFile)
	if saved, err := p.SaveKey(k); err != nil || saved.Store != client.KeyStoreFile || saved.Fallback != nil {
		t.Fatalf("file: %+v, %v", saved, err)
	}
	if _, err := keyring.Get("kez-chat", k.Public().String()+" "+p.Dir); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("file store wrote to the keyring: %v", err)
	}
	if !strings.Contains(keyFileText(t, p), seedHex(k)) {
		t.Error("file store: no seed in the key file")
	}

	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return // the keyring is always there
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	p = keyProfile(t, client.KeyStoreAuto)
	if saved, err := p.SaveKey(k); err != nil || saved.Store != client.KeyStoreFile || saved.Fallback != nil {
		t.Fatalf("auto without a session bus: %+v, %v", saved, err)
	}
}

// TestKeyringFallback: a keyring that fails, or does not answer in time,
// leaves the key in the 0600 file with the reason, which never shows the
// seed.
func TestKeyringFallback(t *testing.T) {
	k, _ := kez.GenerateKey(nil)
	keyring.MockInitWithError(errors.New("org.freedesktop.DBus.Error.ServiceUnknown: no secret service; item " + seedHex(k)))
	for _, store := range []client.KeyStore{client.KeyStoreKeyring, client.KeyStoreAuto} {
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus")
		p := keyProfile(t, store)
		saved, err := p.SaveKey(k)
		if err != nil || saved.Store != client.KeyStoreFile || !errors.Is(saved.Fallback, client.ErrKeyring) {
			t.Fatalf("%s: SaveKey = %+v, %v", store, saved, err)
		}
		if strings.Contains(saved.Fallback.Error(), seedHex(k)) {
			t.Fatalf("fallback reason shows the seed: %v", saved.Fallback)
		}
		if !strings.Contains(keyFileText(t, p), seedHex(k)) {
			t.Fatal("no seed in the key file")
		}
		got, err := p.Key()
		if err != nil || !got.Public().Equal(k.Public()) {
			t.Fatalf("read back: %v", err)
		}
	}

	// A keyring that never answers.
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	p := keyProfile(t, client.KeyStoreKeyring)
	p.SetKeyringCalls(
		func(string, string, string) error { <-block; return nil },
		func(string, string) (string, error) { <-block; return "", nil })
	p.KeyringTimeout = 50 * time.Millisecond
	start := time.Now()
	saved, err := p.SaveKey(k)
	if err != nil || saved.Store != client.KeyStoreFile || saved.Fallback == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("blocked keyring: %+v, %v after %v", saved, err, time.Since(start))
	}
}

// TestKeyringRead: a key the keyring does not give (gone, failing, not
// answering, another key) is ErrKeyring with hints, never the seed.
func TestKeyringRead(t *testing.T) {
	keyring.MockInit()
	p := keyProfile(t, client.KeyStoreKeyring)
	p.KeyringTimeout = 50 * time.Millisecond
	k, _ := kez.GenerateKey(nil)
	if _, err := p.SaveKey(k); err != nil {
		t.Fatal(err)
	}
	user := k.Public().String() + " " + p.Dir
	check := func(what string) {
		t.Helper()
		_, err := p.Key()
		if !errors.Is(err, client.ErrKeyring) || len(client.Hints(err)) == 0 {
			t.Errorf("%s: %v", what, err)
		}
		if err != nil && strings.Contains(err.Error(), seedHex(k)) {
			t.Errorf("%s: error shows the seed", what)
		}
	}

	other, _ := kez.GenerateKey(nil)
	keyring.Set("kez-chat", user, "kez-seed-v1 "+seedHex(other))
	check("another key")
	keyring.Set("kez-chat", user, "not a key")
	check("garbage")
	keyring.MockInit()
	check("item gone")
	keyring.MockInitWithError(errors.New("org.freedesktop.Secret.Error.IsLocked"))
	check("locked")

	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	p.SetKeyringCalls(nil, func(string, string) (string, error) { <-block; return "", nil })
	check("no answer")
}

// TestRegisterRecoverKeyring: Register and Recover write the key to the
// keyring when asked, the client reads it back from there, and a failing
// keyring makes a note, not an error.
func TestRegisterRecoverKeyring(t *testing.T) {
	keyring.MockInit()
	st := clienttest.Start(t)
	ctx := context.Background()
	open := func(store client.KeyStore, notes *[]string) *client.Client {
		p := keyProfile(t, store)
		c := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain,
			Note: func(m string) { *notes = append(*notes, m) }})
		t.Cleanup(c.Close)
		return c
	}
	var notes []string
	c := open(client.KeyStoreKeyring, &notes)
	key, words, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Register(ctx, handle(t, "kr_alice"), key); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Profile().KeyStoreInUse(); s != client.KeyStoreKeyring || len(notes) != 0 {
		t.Fatalf("after register: store %q, notes %q", s, notes)
	}
	if strings.Contains(keyFileText(t, c.Profile()), seedHex(key)) {
		t.Fatal("seed on disk")
	}
	// A new client of the profile (the next command) signs with it.
	c2 := client.New(c.Profile(), client.Config{Domain: clienttest.Domain})
	t.Cleanup(c2.Close)
	if _, err := c2.PublishEndpoints(ctx); err != nil {
		t.Fatal(err)
	}

	r := open(client.KeyStoreKeyring, &notes)
	if _, _, err := r.Recover(ctx, strings.Join(words, " ")); err != nil {
		t.Fatal(err)
	}
	if k, err := r.Key(); err != nil || !k.Public().Equal(key.Public()) {
		t.Fatalf("recovered key: %v", err)
	}
	if s, _ := r.Profile().KeyStoreInUse(); s != client.KeyStoreKeyring {
		t.Fatalf("recover stored in %q", s)
	}

	keyring.MockInitWithError(errors.New("org.freedesktop.DBus.Error.ServiceUnknown"))
	f := open(client.KeyStoreKeyring, &notes)
	if _, _, err := f.Recover(ctx, strings.Join(words, " ")); err != nil {
		t.Fatal(err)
	}
	if s, _ := f.Profile().KeyStoreInUse(); s != client.KeyStoreFile || len(notes) != 1 ||
		!strings.Contains(notes[0], "key file") || strings.Contains(notes[0], seedHex(key)) {
		t.Fatalf("fallback: store %q, notes %q", s, notes)
	}
	if _, err := f.Key(); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeyStore(t *testing.T) {
	for _, s := range []string{"auto", "keyring", "file"} {
		if k, err := client.ParseKeyStore(s); err != nil || string(k) != s {
			t.Errorf("ParseKeyStore(%q) = %q, %v", s, k, err)
		}
	}
	if _, err := client.ParseKeyStore("vault"); err == nil {
		t.Error("ParseKeyStore(vault) accepted")
	}
}
