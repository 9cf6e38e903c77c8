package integrity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File keeps a checkpoint in a small file on the replica's own disk: the
// projection's checkpoint lives in a KV bucket on the same broker as the
// log, so a damaged broker could lose both; the file survives it.
type File struct{ Path string }

// Load returns the checkpoint in the file, the zero checkpoint if there
// is no file yet. A file that does not parse is an error (wrapping
// ErrCheckpoint): it is never ignored silently.
func (f File) Load() (Checkpoint, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint file: %w", err)
	}
	cp, err := ParseCheckpoint(b)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint file %s: %w", f.Path, err)
	}
	return cp, nil
}

// Save replaces the file with cp: written beside it, synced, renamed over
// it, so a crash leaves the old checkpoint or the new one.
func (f File) Save(cp Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	return nil
}
