package client

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"kez.lat/kez"
)

// Files of a profile directory.
const (
	keyFile      = "key"           // the 32-byte seed, hex, mode 0600
	accountFile  = "account.json"  // Account
	contactsFile = "contacts.json" // contactsDoc
	historyFile  = "history.jsonl" // Entry per line, append-only
	lockFile     = "lock"          // flock: exclusive for writes, shared for reads
	listenLock   = "listen.lock"   // flock held by the one running listen
)

// keyFileHeader starts the key file, so that a stray file is not taken
// for a key.
const keyFileHeader = "kez-seed-v1 "

// Profile is a local profile directory: the user's key, account, contacts
// and history. Every write of a shared file happens under an exclusive
// lock on the profile and replaces the file atomically (write, fsync,
// rename), history is appended under the same lock, so a listen and any
// number of sends can run at the same time on one profile.
type Profile struct {
	// Dir is the profile directory (mode 0700).
	Dir string
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

// OpenProfile opens the profile directory dir, creating it (mode 0700) if
// it does not exist.
func OpenProfile(dir string) (*Profile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return &Profile{Dir: dir}, nil
}

func (p *Profile) path(name string) string { return filepath.Join(p.Dir, name) }

// HasKey reports whether the profile holds a key.
func (p *Profile) HasKey() bool {
	_, err := os.Lstat(p.path(keyFile))
	return err == nil
}

// SaveKey stores key's seed in the profile's key file, mode 0600. It
// refuses to replace an existing key ([ErrAccountExists]).
func (p *Profile) SaveKey(key *kez.PrivateKey) error {
	unlock, err := p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	if p.HasKey() {
		return ErrAccountExists
	}
	seed := key.Seed()
	data := []byte(keyFileHeader + hex.EncodeToString(seed) + "\n")
	clear(seed)
	return writeAtomic(p.path(keyFile), data, 0o600)
}

// RemoveKey deletes the key file (after a registration that was refused).
func (p *Profile) RemoveKey() error {
	unlock, err := p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p.path(keyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Key reads the profile's key. Like ssh it refuses a key file that other
// users can read or write ([ErrKeyFileMode]); [ErrNoAccount] if there is
// none. Errors never show the file's content.
func (p *Profile) Key() (*kez.PrivateKey, error) {
	name := p.path(keyFile)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoAccount
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, withHint(fmt.Errorf("%w: %s has mode %04o", ErrKeyFileMode, name, perm),
			"chmod 600 "+name+" (and check nobody copied it)")
	}
	b := make([]byte, 256)
	n, _ := f.Read(b)
	b = b[:n]
	defer clear(b)
	h, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(keyFileHeader))
	seed := make([]byte, 32)
	defer clear(seed)
	if !ok || len(h) != 64 {
		return nil, fmt.Errorf("key file %s is not a kez key file", name)
	}
	if _, err := hex.Decode(seed, h); err != nil {
		return nil, fmt.Errorf("key file %s is not a kez key file", name)
	}
	return kez.NewPrivateKey(seed)
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
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
