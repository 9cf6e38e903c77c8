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
// (mode 0600, atomically, never overwriting a key: [keyfile.Create]) if
// the file does not exist or is empty (a crash of an earlier release
// while it wrote the key). Like ssh it refuses a key file that group or
// others can access. Errors never show the file's content.
func LoadKey(path string) (*kez.PrivateKey, error) {
	k, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errEmptyKey) {
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

// errEmptyKey: the key file has no content, which holds no key to keep.
var errEmptyKey = errors.New("empty")

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
	case len(b) == 0:
		return nil, fmt.Errorf("relay key %s: %w", path, errEmptyKey)
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
	return keyfile.Create(path, data)
}
