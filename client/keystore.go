package client

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// KeyStore says where a profile's private key is kept.
type KeyStore string

const (
	// KeyStoreAuto keeps a new key in the OS keyring when one is
	// available (on Linux and the BSDs: when a D-Bus session bus is
	// configured, $DBUS_SESSION_BUS_ADDRESS, for the Secret Service; on
	// macOS and Windows: the Keychain and the Credential Manager), and in
	// the key file otherwise or if the keyring fails.
	KeyStoreAuto KeyStore = "auto"
	// KeyStoreKeyring tries the OS keyring even without a session bus in
	// the environment; if it fails, the key goes to the file, with a note.
	KeyStoreKeyring KeyStore = "keyring"
	// KeyStoreFile keeps the key in the profile's 0600 key file and never
	// touches the keyring.
	KeyStoreFile KeyStore = "file"
)

// ParseKeyStore parses auto, keyring or file.
func ParseKeyStore(s string) (KeyStore, error) {
	switch k := KeyStore(s); k {
	case KeyStoreAuto, KeyStoreKeyring, KeyStoreFile:
		return k, nil
	}
	return "", fmt.Errorf("key store %q: want auto, keyring or file", s)
}

// keyringService is the service name of kez-chat's keyring items; the
// item's user names the key and the profile (see keyringUser).
const keyringService = "kez-chat"

// keyRefHeader starts a key file whose key is in the OS keyring: the file
// holds the item's name, not the seed.
const keyRefHeader = "kez-keyring-v1 "

// DefaultKeyringTimeout bounds every keyring call: the keyring may wait
// for the user to unlock it, but a bus that never answers must not hang
// the command.
const DefaultKeyringTimeout = 30 * time.Second

// ErrKeyring: the OS keyring that holds the profile's key could not be
// read (locked, no Secret Service, no answer in time, or the item is
// gone).
var ErrKeyring = errors.New("OS keyring")

// keyringCalls are the OS keyring calls of a profile; tests replace them
// with ones that block (Profile.keyring).
type keyringCalls struct {
	set func(service, user, secret string) error
	get func(service, user string) (string, error)
	del func(service, user string) error
}

// keyringCalls returns p's keyring calls: the OS keyring's unless a test
// set others.
func (p *Profile) keyringCalls() keyringCalls {
	if p.keyring != nil {
		return *p.keyring
	}
	return keyringCalls{set: keyring.Set, get: keyring.Get, del: keyring.Delete}
}

// keyringAvailable reports whether auto should try the keyring: on the
// Secret Service platforms only with a session bus configured, since
// without one godbus would try to autolaunch a bus (dbus-launch).
func keyringAvailable() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return true
	}
	return os.Getenv("DBUS_SESSION_BUS_ADDRESS") != ""
}

// keyringCall runs the keyring call fn, giving up after d. A call that
// does not return in time is left running (go-keyring takes no context);
// its result is dropped.
func keyringCall[T any](d time.Duration, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-t.C:
		var zero T
		return zero, fmt.Errorf("no answer in %v", d)
	}
}

// keyringErr describes a keyring failure without any secret: the text of
// an error that contains secret (the seed's hex) is dropped.
func keyringErr(err error, secret string) error {
	switch {
	case errors.Is(err, keyring.ErrNotFound):
		return errors.New("no such item")
	case secret != "" && strings.Contains(err.Error(), secret):
		return errors.New("the keyring refused the item")
	}
	return err
}
