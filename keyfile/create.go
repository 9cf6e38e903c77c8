package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// link is os.Link, the way Create puts a file in place; a variable so
// that tests can make it fail as on a file system without hard links.
var link = os.Link

// Create writes data to the new file name, mode 0600, atomically and
// never over a file that holds something: it writes a temporary file
// beside name (".<name>.tmp-*"), syncs it, links it to name and syncs the
// directory. A crash leaves no name or the whole file, never an empty or
// partial one that blocks every later start; at worst a stray temporary
// file, which no reader looks at. If name exists, Create returns an error
// matching [fs.ErrExist] and leaves it alone, except a regular file of
// zero length (what a crash left behind the create-then-write of earlier
// releases), which it replaces. On a file system without hard links it
// falls back to creating name exclusively and writing it in place.
func Create(name string, data []byte) error {
	dir := filepath.Dir(name)
	tmp, err := writeTemp(name, data, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = link(tmp, name)
	switch {
	case errors.Is(err, fs.ErrExist):
		fi, serr := os.Lstat(name)
		if serr != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			return err
		}
		// An empty file holds no secret: replace it, atomically.
		if err := os.Rename(tmp, name); err != nil {
			return err
		}
	case noLinks(err):
		if err := createInPlace(name, data); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	return syncDir(dir)
}

// createInPlace is Create's fallback for a file system without hard
// links: exclusive create, write, sync; a file it could not finish is
// removed.
func createInPlace(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := writeClose(f, data); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// Replace writes data to name, mode perm, atomically, replacing any file
// there: a temporary file beside name, synced, renamed over it, and the
// directory synced.
func Replace(name string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(name, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// writeTemp writes data, synced and with mode perm (whatever the umask),
// to a new temporary file beside name (".<name>.tmp-*"), and returns its
// name; a file it could not finish is removed.
func writeTemp(name string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(perm)
	if err != nil {
		f.Close()
	} else {
		err = writeClose(f, data)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeClose writes data to f, syncs and closes it.
func writeClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
