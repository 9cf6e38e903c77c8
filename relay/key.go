package relay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"kez.lat/kez"
)

// keyFileHeader starts a key file, as in a kez-chat profile's key file.
const keyFileHeader = "kez-seed-v1 "

// LoadKey reads the relay's key from path, or generates one and writes it
// there (mode 0600, never overwriting) if the file does not exist. Like
// ssh it refuses a key file that group or others can access. Errors never
// show the file's content.
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
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("relay key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("relay key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("relay key %s has mode %04o: others may read it; chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<10))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("relay key: %w", err)
	}
	h, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(keyFileHeader))
	seed := make([]byte, 32)
	defer clear(seed)
	if !ok || len(h) != 64 {
		return nil, fmt.Errorf("relay key %s: not a kez key file", path)
	}
	if _, err := hex.Decode(seed, h); err != nil {
		return nil, fmt.Errorf("relay key %s: not a kez key file", path)
	}
	return kez.NewPrivateKey(seed)
}

func writeKey(path string, k *kez.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	seed := k.Seed()
	data := []byte(keyFileHeader + hex.EncodeToString(seed) + "\n")
	clear(seed)
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
