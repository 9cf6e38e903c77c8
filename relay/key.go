package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"kez.lat/kez"
	"kez.lat/kez/keyfile"
)

// LoadKey reads the relay's key from path, a key file as in a kez-chat
// profile (see [kez.ParseSeed]), or generates one and writes it there
// (mode 0600, never overwriting) if the file does not exist. Like ssh it
// refuses a key file that group or others can access. Errors never show
// the file's content.
func LoadKey(path string) (*kez.PrivateKey, error) {
	k, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = kez.GenerateKey(nil); err != nil {
		return nil, err
	}
	if err := writeKey(path, k); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it first
			return readKey(path)
		}
		return nil, fmt.Errorf("create relay key %s: %w", path, err)
	}
	return k, nil
}

func readKey(path string) (*kez.PrivateKey, error) {
	b, err := keyfile.Read(path, 1<<10)
	defer clear(b)
	var me *keyfile.ModeError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	case errors.Is(err, keyfile.ErrNotRegular):
		return nil, fmt.Errorf("relay key %s is not a regular file", path)
	case errors.As(err, &me):
		return nil, fmt.Errorf("relay key %v: others may read it; chmod 600 it", me)
	case err != nil:
		return nil, fmt.Errorf("relay key: %w", err)
	}
	k, err := kez.ParseSeed(b)
	if err != nil {
		return nil, fmt.Errorf("relay key %s: not a kez key file", path)
	}
	return k, nil
}

func writeKey(path string, k *kez.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	text := k.MarshalSeed()
	defer clear(text)
	data := append(text, '\n')
	defer clear(data)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
