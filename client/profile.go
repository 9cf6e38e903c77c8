package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zalando/go-keyring"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/keyfile"
)

// Files of a profile directory.
const (
	keyFile      = "key"           // the 32-byte seed, hex, or the keyring item holding it; mode 0600
	accountFile  = "account.json"  // Account
	contactsFile = "contacts.json" // contactsDoc
	historyFile  = "history.jsonl" // Entry per line, append-only
	lockFile     = "lock"          // flock: exclusive for writes, shared for reads
	listenLock   = "listen.lock"   // flock held by the one running listen
)

// Profile is a local profile directory: the user's key, account, contacts
// and history. Every write of a shared file happens under an exclusive
// lock on the profile and replaces the file atomically (write, fsync,
// rename), history is appended under the same lock, so a listen and any
// number of sends can run at the same time on one profile.
type Profile struct {
	// Dir is the profile directory (mode 0700).
	Dir string
	// KeyStore is where SaveKey puts a new key: KeyStoreAuto,
	// KeyStoreKeyring or KeyStoreFile (also the zero value). Reading
	// always goes where the key file says the key is.
	KeyStore KeyStore
	// KeyringTimeout bounds each OS keyring call;
	// DefaultKeyringTimeout if zero.
	KeyringTimeout time.Duration

	// keyring replaces the OS keyring calls in tests (nil: the OS's).
	keyring *keyringCalls
}

// DefaultProfile is the name of the profile used when none is chosen.
const DefaultProfile = "default"

// ProfileDir returns the directory of the profile called name:
// <user config dir>/kez-chat/profiles/<name> ($XDG_CONFIG_HOME on Linux).
// A name containing a path separator is used as a directory as it is.
func ProfileDir(name string) (string, error) {
	if name == "" {
		name = DefaultProfile
	}
	if strings.ContainsRune(name, os.PathSeparator) {
		return filepath.Abs(name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || name[0] == '.' {
			return "", fmt.Errorf("profile name %q: use letters, digits, '-', '_' and '.', or a path", name)
		}
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (set XDG_CONFIG_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "kez-chat", "profiles", name), nil
}

// OpenProfile opens the profile directory dir. A directory that does not
// exist is an empty profile ([ErrNoAccount]); it is created (mode 0700)
// when something is first written to it (register, recover), so that a
// command that fails, on a mistyped profile name say, leaves no profile
// behind.
func OpenProfile(dir string) (*Profile, error) {
	return &Profile{Dir: dir}, nil
}

// mkdir creates the profile directory, mode 0700, if it does not exist:
// before the first write.
func (p *Profile) mkdir() error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}

// exists reports whether the profile directory exists (an error other
// than its absence counts as existing: the caller meets it there).
func (p *Profile) exists() bool {
	_, err := os.Stat(p.Dir)
	return !errors.Is(err, fs.ErrNotExist)
}

func (p *Profile) path(name string) string { return filepath.Join(p.Dir, name) }

// HasKey reports whether the profile holds a key: its key file, or the
// key file's reference to the OS keyring.
func (p *Profile) HasKey() bool {
	_, err := os.Lstat(p.path(keyFile))
	return err == nil
}

// SavedKey tells where [Profile.SaveKey] put a key.
type SavedKey struct {
	// Store is KeyStoreKeyring or KeyStoreFile.
	Store KeyStore
	// Fallback is why the key is in the file although the keyring was
	// tried (it failed or did not answer in time); nil otherwise. It never
	// contains key material.
	Fallback error
}

// keyRef is what the key file holds when the key is in the OS keyring.
type keyRef struct {
	Service string        `json:"service"`
	User    string        `json:"user"`
	Key     kez.PublicKey `json:"key"`
}

func (p *Profile) keyringTimeout() time.Duration {
	if p.KeyringTimeout > 0 {
		return p.KeyringTimeout
	}
	return DefaultKeyringTimeout
}

// useKeyring reports whether SaveKey tries the OS keyring.
func (p *Profile) useKeyring() bool {
	switch p.KeyStore {
	case KeyStoreKeyring:
		return true
	case KeyStoreAuto:
		return keyringAvailable()
	}
	return false
}

// SaveKey stores key's seed where p.KeyStore says: in the OS keyring, the
// key file then naming the keyring item (no key material on disk), or in
// the key file, mode 0600. When the keyring was tried and failed, the key
// goes to the file and [SavedKey.Fallback] says why. It refuses to replace
// an existing key ([ErrAccountExists]).
func (p *Profile) SaveKey(key *kez.PrivateKey) (SavedKey, error) {
	unlock, err := p.lock(false)
	if err != nil {
		return SavedKey{}, err
	}
	defer unlock()
	if p.HasKey() {
		return SavedKey{}, ErrAccountExists
	}
	text := key.MarshalSeed() // kez.SeedTextPrefix, then the seed in hex
	defer clear(text)
	seedHex := string(text[len(kez.SeedTextPrefix):]) // kept out of keyring errors
	var saved SavedKey
	if p.useKeyring() {
		ref := keyRef{Service: keyringService, User: p.keyringUser(key.Public()), Key: key.Public()}
		kc := p.keyringCalls()
		set, del := kc.set, kc.del
		_, err := keyringCall(p.keyringTimeout(), func() (struct{}, error) {
			return struct{}{}, set(ref.Service, ref.User, string(text))
		})
		if err == nil {
			b, err := json.Marshal(ref)
			if err == nil {
				err = writeAtomic(p.path(keyFile), append([]byte(keyRefHeader), append(b, '\n')...), 0o600)
			}
			if err != nil {
				keyringCall(p.keyringTimeout(), func() (struct{}, error) {
					return struct{}{}, del(ref.Service, ref.User)
				})
				return SavedKey{}, err
			}
			return SavedKey{Store: KeyStoreKeyring}, nil
		}
		saved.Fallback = fmt.Errorf("%w: %w", ErrKeyring, keyringErr(err, seedHex))
	}
	data := append(text, '\n')
	defer clear(data)
	if err := writeAtomic(p.path(keyFile), data, 0o600); err != nil {
		return SavedKey{}, err
	}
	saved.Store = KeyStoreFile
	return saved, nil
}

// keyringUser names the keyring item of key in this profile: the key and
// the profile directory, so that two profiles of one account (a recovery
// into a new profile) keep separate items.
func (p *Profile) keyringUser(k kez.PublicKey) string {
	dir, err := filepath.Abs(p.Dir)
	if err != nil {
		dir = p.Dir
	}
	return k.String() + " " + dir
}

// RemoveKey deletes the key file and, if the key is in the OS keyring,
// its keyring item (after a registration that was refused).
func (p *Profile) RemoveKey() error {
	unlock, err := p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	if data, err := p.readKeyFile(); err == nil {
		if ref, ok, err := parseKeyRef(data); ok && err == nil {
			del := p.keyringCalls().del
			_, err := keyringCall(p.keyringTimeout(), func() (struct{}, error) {
				return struct{}{}, del(ref.Service, ref.User)
			})
			if err != nil && !errors.Is(err, keyring.ErrNotFound) {
				return fmt.Errorf("%w: delete the key: %w", ErrKeyring, keyringErr(err, ""))
			}
		}
		clear(data)
	}
	if err := os.Remove(p.path(keyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// readKeyFile returns the content of the key file. Like ssh it refuses a
// key file that other users can read or write ([ErrKeyFileMode]), even
// one that only names a keyring item; [ErrNoAccount] if there is none.
// Errors never show the file's content.
func (p *Profile) readKeyFile() ([]byte, error) {
	name := p.path(keyFile)
	b, err := keyfile.Read(name, 8<<10)
	var me *keyfile.ModeError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrNoAccount
	case errors.Is(err, keyfile.ErrNotRegular):
		return nil, fmt.Errorf("key file %s is not a regular file", name)
	case errors.As(err, &me):
		return nil, withHint(fmt.Errorf("%w: %v", ErrKeyFileMode, me),
			"chmod 600 "+name+" (and check nobody copied it)")
	case err != nil:
		return nil, fmt.Errorf("key file: %w", err)
	}
	return b, nil
}

// parseKeyRef reads a key file that names a keyring item; ok is false for
// a key file that holds the seed (or anything else).
func parseKeyRef(data []byte) (ref keyRef, ok bool, err error) {
	j, ok := bytes.CutPrefix(bytes.TrimSpace(data), []byte(keyRefHeader))
	if !ok {
		return ref, false, nil
	}
	if err := json.Unmarshal(j, &ref); err != nil || ref.Service == "" || ref.User == "" || ref.Key.IsZero() {
		return ref, true, errors.New("bad keyring reference")
	}
	return ref, true, nil
}

// KeyStoreInUse returns where the profile's key is: KeyStoreKeyring or
// KeyStoreFile; [ErrNoAccount] if there is none.
func (p *Profile) KeyStoreInUse() (KeyStore, error) {
	data, err := p.readKeyFile()
	if err != nil {
		return "", err
	}
	defer clear(data)
	if _, ok, _ := parseKeyRef(data); ok {
		return KeyStoreKeyring, nil
	}
	return KeyStoreFile, nil
}

// Key reads the profile's key, from the key file or from the OS keyring
// item the key file names. It refuses a key file others can read or
// write ([ErrKeyFileMode]); [ErrNoAccount] if there is none; [ErrKeyring]
// if the keyring does not give the key. Errors never show key material.
func (p *Profile) Key() (*kez.PrivateKey, error) {
	data, err := p.readKeyFile()
	if err != nil {
		return nil, err
	}
	defer clear(data)
	name := p.path(keyFile)
	ref, ok, err := parseKeyRef(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	if ok {
		return p.keyringKey(ref)
	}
	k, err := kez.ParseSeed(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s is not a kez key file", name)
	}
	return k, nil
}

// keyringKey reads the key of ref from the OS keyring.
func (p *Profile) keyringKey(ref keyRef) (*kez.PrivateKey, error) {
	hints := []string{
		"unlock the keyring (the Secret Service: gnome-keyring, KeePassXC, ...; with DBUS_SESSION_BUS_ADDRESS set) and try again",
		"the 24 words of the backup restore the account into a new profile: kez-chat --profile NAME recover",
	}
	get := p.keyringCalls().get
	secret, err := keyringCall(p.keyringTimeout(), func() (string, error) {
		return get(ref.Service, ref.User)
	})
	if err != nil {
		return nil, withHint(fmt.Errorf("%w: the profile's key is in the keyring (service %q, item %q): %w",
			ErrKeyring, ref.Service, ref.User, keyringErr(err, "")), hints...)
	}
	// The string from the keyring cannot be cleared; this copy can.
	b := []byte(secret)
	defer clear(b)
	k, err := kez.ParseSeed(b)
	if err != nil {
		return nil, withHint(fmt.Errorf("%w: keyring item %q does not hold a kez key", ErrKeyring, ref.User), hints[1:]...)
	}
	if !k.Public().Equal(ref.Key) {
		return nil, withHint(fmt.Errorf("%w: keyring item %q holds another key than the profile's", ErrKeyring, ref.User), hints[1:]...)
	}
	return k, nil
}

// Account reads the profile's account; [ErrNoAccount] if there is none.
func (p *Profile) Account() (Account, error) {
	var a Account
	err := readJSON(p.path(accountFile), &a)
	if errors.Is(err, fs.ErrNotExist) {
		return a, ErrNoAccount
	}
	return a, err
}

// SaveAccount replaces the profile's account.
func (p *Profile) SaveAccount(a Account) error {
	unlock, err := p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	return writeJSON(p.path(accountFile), a)
}

// readJSON decodes the JSON file name into v.
func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// writeJSON replaces name with v's indented JSON, atomically.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(name), err)
	}
	return writeAtomic(name, append(b, '\n'), 0o600)
}

// writeAtomic replaces name with data: it writes a temporary file in the
// same directory, syncs it, renames it over name and syncs the directory,
// so a reader sees the old or the new file, never a mix, and a crash
// leaves one of the two.
func writeAtomic(name string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil { // a profile's first write
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	return blob.SyncDir(dir)
}
