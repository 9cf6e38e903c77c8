package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"kez.lat/kez/blob"
	"kez.lat/kez/client"
	"kez.lat/kez/filecrypt"
)

// sharedBlob encrypts plain under a fresh key into a store, as Share does,
// and returns the store, the blob's hash and size, and the key.
func sharedBlob(t *testing.T, plain []byte) (*blob.Store, blob.Hash, int64, filecrypt.Key) {
	t.Helper()
	k, err := filecrypt.NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, err := filecrypt.NewWriter(&ct, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := blob.Open(filepath.Join(t.TempDir(), "sender"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Import(bytes.NewReader(ct.Bytes()), int64(ct.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return s, h, int64(ct.Len()), k
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// cutSource serves slices of a Source and breaks each after cut bytes,
// as a connection lost mid-transfer.
type cutSource struct {
	src blob.Source
	cut int64
}

var errCut = errors.New("connection lost")

func (c cutSource) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	rc, err := c.src.Slice(ctx, h, off, n)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, c.cut), iotestErrReader{errCut}), rc}, nil
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// record reads the download record of h in dir (nil if none).
func record(t *testing.T, dir string, h blob.Hash) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, h.String()))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// partials returns the partial files in dir.
func partials(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.kez-*.part"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReceiveResume interrupts downloads at random points of the blob (in
// the header, inside a 16 KiB group, inside a 64 KiB chunk, on
// boundaries) over and over, as a lost connection or a crash does, and
// checks after each interruption that the partial file holds a verified
// prefix of the plaintext that covers at least the recorded length, that
// nothing else exists, and at the end that the file is whole.
func TestReceiveResume(t *testing.T) {
	cs := filecrypt.ChunkSize
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 5*cs + 12345, 40 * cs} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			plain := randomBytes(n, uint64(n))
			src, h, size, k := sharedBlob(t, plain)
			dir, out := t.TempDir(), t.TempDir()
			path := filepath.Join(out, "file.bin")
			r := rand.New(rand.NewPCG(uint64(n), 7))
			var lastResumed int64 = -1
			for attempt := 0; ; attempt++ {
				if attempt > 200 {
					t.Fatal("no progress after 200 interruptions")
				}
				// Cut anywhere in what is left to send; now and then at a
				// group or chunk boundary, or in the header.
				cut := r.Int64N(size + 1)
				switch r.IntN(4) {
				case 0:
					cut = cut / blob.GroupSize * blob.GroupSize
				case 1:
					cut = cut / filecrypt.EncChunkSize * filecrypt.EncChunkSize
				}
				if attempt == 0 {
					cut = 10 // inside the header
				}
				if attempt > 100 {
					cut = size + 1<<20 // let it finish
				}
				resumed, err := client.ReceiveFile(dir, h, size, k, path, func(get func(context.Context, blob.Source, func(int64)) error) error {
					return get(context.Background(), cutSource{src, cut}, nil)
				})
				if resumed < lastResumed {
					t.Fatalf("attempt %d resumed at %d, before %d", attempt, resumed, lastResumed)
				}
				lastResumed = resumed
				if err == nil {
					break
				}
				if !errors.Is(err, errCut) {
					t.Fatalf("attempt %d, cut at %d: %v", attempt, cut, err)
				}
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("an interrupted download created the output file: %v", err)
				}
				rec := record(t, dir, h)
				ps := partials(t, out)
				if rec == nil || len(ps) != 1 || rec["part"] != ps[0] {
					t.Fatalf("after attempt %d: record %v, partial files %v", attempt, rec, ps)
				}
				got, err := os.ReadFile(ps[0])
				if err != nil {
					t.Fatal(err)
				}
				done := int64(rec["done"].(float64))
				if int64(len(got)) < done || !bytes.Equal(got, plain[:len(got)]) {
					t.Fatalf("after attempt %d: partial file of %d bytes (record: %d) is not a prefix of the file", attempt, len(got), done)
				}
				if done%int64(cs) != 0 && done != int64(n) {
					t.Fatalf("record claims %d bytes, not whole chunks", done)
				}
				// A crash after writing, before syncing: bytes past the
				// record that the next attempt must not trust.
				if r.IntN(3) == 0 {
					f, err := os.OpenFile(ps[0], os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.Write(bytes.Repeat([]byte{0xee}, r.IntN(3*cs)))
					f.Close()
				}
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("downloaded file: %d bytes, %v; want the %d bytes shared", len(got), err, n)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode())
			}
			if ps := partials(t, out); len(ps) != 0 || record(t, dir, h) != nil {
				t.Errorf("left behind: %v, record %v", ps, record(t, dir, h))
			}
		})
	}
}

// TestReceiveCorruptSender: a sender whose blob has one byte changed on
// disk sends data that does not verify. Not one plaintext byte of the
// chunk holding it, or after it, reaches the partial file, and nothing
// reaches the output; an honest sender then completes the download from
// where it stopped.
func TestReceiveCorruptSender(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(20*cs+500, 1)
	honest, h, size, k := sharedBlob(t, plain)
	bad, err := blob.Open(filepath.Join(t.TempDir(), "bad"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := honest.Open(h)
	if _, err := bad.Import(f, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	flip := int64(filecrypt.HeaderSize) + 11*filecrypt.EncChunkSize + 3*blob.GroupSize + 7 // chunk 11
	bf, err := os.OpenFile(filepath.Join(bad.Dir(), h.String()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	bf.ReadAt(b, flip)
	bf.WriteAt([]byte{^b[0]}, flip)
	bf.Close()

	dir, out := t.TempDir(), t.TempDir()
	path := filepath.Join(out, "file.bin")
	get := func(src blob.Source) func(func(context.Context, blob.Source, func(int64)) error) error {
		return func(g func(context.Context, blob.Source, func(int64)) error) error {
			return g(context.Background(), src, nil)
		}
	}
	if _, err := client.ReceiveFile(dir, h, size, k, path, get(bad)); !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("download from a corrupting sender: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output file after a corrupt download: %v", err)
	}
	ps := partials(t, out)
	if len(ps) != 1 {
		t.Fatalf("partial files: %v", ps)
	}
	got, _ := os.ReadFile(ps[0])
	if len(got) > 11*cs || !bytes.Equal(got, plain[:len(got)]) {
		t.Fatalf("partial file holds %d bytes (chunk 11 starts at %d), or bytes that are not the file's", len(got), 11*cs)
	}
	if len(got) < 11*cs-batchBytes(cs) {
		t.Errorf("partial file holds %d bytes: the verified chunks before the bad one were not kept", len(got))
	}
	resumed, err := client.ReceiveFile(dir, h, size, k, path, get(honest))
	if err != nil || resumed == 0 {
		t.Fatalf("resume from an honest sender: resumed at %d, %v", resumed, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, plain) {
		t.Fatal("resumed download differs")
	}
}

// batchBytes is how much plaintext the receiver may hold back at most
// before a bad chunk: whole batches of chunks are written at once.
func batchBytes(cs int) int { return 16 * cs }

// TestReceiveBadChunk: a sender who announced the hash of a stream with
// one chunk altered (so every group verifies) and the file's key. The
// chunk does not authenticate: the download fails with ErrDecrypt, and
// no plaintext is left anywhere, neither of that chunk nor of the others.
func TestReceiveBadChunk(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(40*cs, 2)
	honest, h, size, k := sharedBlob(t, plain)
	f, _ := honest.Open(h)
	ct, _ := io.ReadAll(f)
	f.Close()
	ct[filecrypt.HeaderSize+33*filecrypt.EncChunkSize+100] ^= 1 // chunk 33
	evil, err := blob.Open(filepath.Join(t.TempDir(), "evil"))
	if err != nil {
		t.Fatal(err)
	}
	eh, err := evil.Import(bytes.NewReader(ct), size)
	if err != nil {
		t.Fatal(err)
	}
	dir, out := t.TempDir(), t.TempDir()
	path := filepath.Join(out, "file.bin")
	var sawPartial []byte
	_, err = client.ReceiveFile(dir, eh, size, k, path, func(g func(context.Context, blob.Source, func(int64)) error) error {
		err := g(context.Background(), evil, nil)
		// Before the receiver cleans up: what did it write?
		if ps := partials(t, out); len(ps) == 1 {
			sawPartial, _ = os.ReadFile(ps[0])
		}
		return err
	})
	if !errors.Is(err, filecrypt.ErrDecrypt) {
		t.Fatalf("download of a stream with a forged chunk: %v, want ErrDecrypt", err)
	}
	if len(sawPartial) > 33*cs || !bytes.Equal(sawPartial, plain[:len(sawPartial)]) {
		t.Fatalf("the partial file held %d bytes (chunk 33 starts at %d)", len(sawPartial), 33*cs)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output file: %v", err)
	}
	if ps := partials(t, out); len(ps) != 0 || record(t, dir, eh) != nil {
		t.Fatalf("left behind: %v, record %v", ps, record(t, dir, eh))
	}
}

// TestReceiveRecordChecks: a record whose partial file was replaced by a
// symbolic link, or lies in another directory, is not resumed: the
// download starts over in a new partial file and never writes through
// the link.
func TestReceiveRecordChecks(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(10*cs, 3)
	src, h, size, k := sharedBlob(t, plain)
	dir, out, path, run := interrupted(t, src, h, size, k)
	part := partials(t, out)[0]
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	os.Remove(part)
	if err := os.Symlink(victim, part); err != nil {
		t.Fatal(err)
	}
	resumed, err := client.ReceiveFile(dir, h, size, k, path, run(1<<40))
	if err != nil || resumed != 0 {
		t.Fatalf("download after the partial file became a link: resumed at %d, %v", resumed, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("wrote through a symbolic link: %q", b)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, plain) {
		t.Fatal("download differs")
	}

	// The record names a partial file in another directory than the
	// output's: started over here, the other one removed.
	path2 := filepath.Join(out, "again.bin")
	if _, err := client.ReceiveFile(dir, h, size, k, path2, run(3*int64(filecrypt.EncChunkSize))); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "elsewhere.bin")
	resumed, err = client.ReceiveFile(dir, h, size, k, other, run(1<<40))
	if err != nil || resumed != 0 {
		t.Fatalf("download to another directory: resumed at %d, %v", resumed, err)
	}
	if ps := partials(t, out); len(ps) != 0 {
		t.Errorf("the first directory keeps %v", ps)
	}
	// Never over an existing file.
	if _, err := client.ReceiveFile(dir, h, size, k, other, run(1<<40)); !errors.Is(err, client.ErrFileExists) {
		t.Errorf("download over an existing file: %v, want ErrFileExists", err)
	}
	if got, _ := os.ReadFile(other); !bytes.Equal(got, plain) {
		t.Fatal("download differs")
	}
}

func FuzzFetchState(f *testing.F) {
	f.Add([]byte(`{"v":1,"part":"/tmp/.x.kez-00.part","done":65536,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="}`), int64(1<<20))
	f.Add([]byte(`{"v":1,"part":"/tmp/.x.kez-00.part","done":0}`), int64(0))
	f.Add([]byte(`{"v":2}`), int64(5))
	f.Fuzz(func(t *testing.T, b []byte, plain int64) {
		if plain < 0 {
			return
		}
		if err := client.ParseFetchState(b, plain); err != nil {
			return
		}
		var st struct {
			V    int
			Part string
			Done int64
			Salt []byte
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("accepted a record that does not parse: %v", err)
		}
		if st.Done < 0 || st.Done > plain || (st.Done%filecrypt.ChunkSize != 0 && st.Done != plain) || !filepath.IsAbs(st.Part) {
			t.Fatalf("accepted %+v for a file of %d bytes", st, plain)
		}
	})
}

// TestReceiveForeignPartial: the partial file a record names was removed
// (a reboot cleared /tmp, the record stayed) and someone made one of
// that name with their own bytes: writable by others, or owned by
// another user. The download does not resume into it (which would keep
// their bytes as the file's start, in a file they can read), says why,
// starts over, and leaves another user's file alone.
func TestReceiveForeignPartial(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(10*cs, 4)
	src, h, size, k := sharedBlob(t, plain)
	for _, tt := range []struct {
		name string
		mode os.FileMode
		uid  int // -1: the current user
	}{
		{"group and others may write", 0o666, -1},
		{"group may write", 0o620, -1},
		{"another user's", 0o600, 65534},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.uid >= 0 && os.Geteuid() != 0 {
				t.Skip("making a file of another user needs root")
			}
			dir, out, path, run := interrupted(t, src, h, size, k)
			part := partials(t, out)[0]
			if err := os.Remove(part); err != nil {
				t.Fatal(err)
			}
			evil := bytes.Repeat([]byte("attacker"), 5*cs/8)
			if err := os.WriteFile(part, evil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(part, tt.mode); err != nil {
				t.Fatal(err)
			}
			if tt.uid >= 0 {
				if err := os.Chown(part, tt.uid, tt.uid); err != nil {
					t.Fatal(err)
				}
			}
			var notices []string
			resumed, err := client.ReceiveFileNotice(dir, h, size, k, path, func(s string) { notices = append(notices, s) }, run(1<<40))
			if err != nil || resumed != 0 {
				t.Fatalf("download after a foreign partial file: resumed at %d, %v; want a fresh start", resumed, err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, plain) {
				t.Fatalf("downloaded file differs from the file shared (starts %q)", got[:min(len(got), 16)])
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("output file: %v, %v; want mode 0600", fi, err)
			}
			if len(notices) != 1 || !strings.Contains(notices[0], "not yours alone") {
				t.Errorf("notices %q, want one saying the partial file is not yours alone", notices)
			}
			if tt.uid >= 0 {
				if b, err := os.ReadFile(part); err != nil || !bytes.Equal(b, evil) {
					t.Errorf("another user's file was removed or changed: %v", err)
				}
			}
		})
	}
}

// pauseSource serves slices of a Source, each blocking once after
// `after` bytes until release is closed (paused is closed then).
type pauseSource struct {
	src     blob.Source
	after   int64
	paused  chan struct{}
	release chan struct{}
}

type pauseReader struct {
	r    io.Reader
	n    int64
	s    *pauseSource
	done bool
}

func (p *pauseReader) Read(b []byte) (int, error) {
	if !p.done && p.n >= p.s.after {
		p.done = true
		close(p.s.paused)
		<-p.s.release
	}
	if !p.done && int64(len(b)) > p.s.after-p.n {
		b = b[:p.s.after-p.n]
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

func (s *pauseSource) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	rc, err := s.src.Slice(ctx, h, off, n)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&pauseReader{r: rc, s: s}, rc}, nil
}

// errUnreachable is the error of unreachableSource.
var errUnreachable = errors.New("peer unreachable")

type unreachableSource struct{}

func (unreachableSource) Slice(context.Context, blob.Hash, int64, int64) (io.ReadCloser, error) {
	return nil, errUnreachable
}

// TestReceiveConcurrent: while a resumed fetch of a file is under way, a
// second fetch of the same file (another terminal, a --wait in the
// background) fails at once with ErrFetchRunning and touches nothing: it
// used to cut the shared partial file back to the recorded length under
// the first, which then left zeros in the output. Once the first is done,
// its lock is gone.
func TestReceiveConcurrent(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(80*cs, 7)
	src, h, size, k := sharedBlob(t, plain)
	dir, out := t.TempDir(), t.TempDir()
	path := filepath.Join(out, "file.bin")
	run := func(s blob.Source) (int64, error) {
		return client.ReceiveFile(dir, h, size, k, path, func(get func(context.Context, blob.Source, func(int64)) error) error {
			return get(context.Background(), s, nil)
		})
	}
	if _, err := run(cutSource{src, int64(5 * filecrypt.EncChunkSize)}); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	ps := &pauseSource{src: src, after: 3 << 20, paused: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { _, err := run(ps); done <- err }()
	<-ps.paused
	// Until the first has written past the recorded length, which the
	// second would cut back to.
	var before os.FileInfo
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if before, err = os.Stat(partials(t, out)[0]); err != nil {
			t.Fatal(err)
		}
		if before.Size() > 5*int64(cs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first fetch wrote %d bytes, not past the recorded %d", before.Size(), 5*cs)
		}
	}
	_, errB := run(unreachableSource{})
	if !errors.Is(errB, client.ErrFetchRunning) || !strings.Contains(errB.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second fetch of the same file: %v, want ErrFetchRunning naming pid %d", errB, os.Getpid())
	}
	if after, err := os.Stat(partials(t, out)[0]); err != nil {
		t.Error(err)
	} else if after.Size() < before.Size() {
		t.Errorf("the second fetch cut the partial file from %d to %d bytes", before.Size(), after.Size())
	}
	close(ps.release)
	if err := <-done; err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, plain) {
		t.Fatal("the first fetch saved a file that differs from the file shared")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left in the downloads directory: %v", left)
	}
}

// TestReceiveLongName: a name as long as a file name may be (255 bytes,
// what share.CheckName allows) is saved under that name: the partial
// file's name, which adds its own 27 bytes, is cut short to fit, at a
// character boundary.
func TestReceiveLongName(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(3*cs, 5)
	src, h, size, k := sharedBlob(t, plain)
	for _, tt := range []struct{ desc, name string }{
		{"228 bytes, fits as it is", strings.Repeat("a", 228)},
		{"229 bytes", strings.Repeat("a", 229)},
		{"255 bytes", strings.Repeat("n", 251) + ".txt"},
		{"255 bytes of two-byte characters", strings.Repeat("é", 127) + "x"},
		{"255 bytes of three-byte characters", "x" + strings.Repeat("€", 84) + "yz"},
	} {
		name := tt.name
		t.Run(tt.desc, func(t *testing.T) {
			dir, out := t.TempDir(), t.TempDir()
			path := filepath.Join(out, name)
			run := cutRun(src)
			if _, err := client.ReceiveFile(dir, h, size, k, path, run(2*int64(filecrypt.EncChunkSize))); !errors.Is(err, errCut) {
				t.Fatalf("interrupted download of a %d-byte name: %v, want the cut", len(name), err)
			}
			ps := partials(t, out)
			if len(ps) != 1 {
				t.Fatalf("partial files: %q", ps)
			}
			if b := filepath.Base(ps[0]); len(b) > 255 || !utf8.ValidString(b) {
				t.Fatalf("partial file name of %d bytes, valid UTF-8: %v", len(b), utf8.ValidString(b))
			}
			resumed, err := client.ReceiveFile(dir, h, size, k, path, run(1<<40))
			if err != nil || resumed == 0 {
				t.Fatalf("resumed download: resumed at %d, %v", resumed, err)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("saved file: %v, or differs", err)
			}
		})
	}
}

// cutRun returns the run function of a ReceiveFile whose source is src
// cut after cut bytes.
// interrupted downloads the blob to file.bin in new folders, cut after
// five encrypted chunks, and returns the folders, the output's path and
// the run that downloads it again (cutRun).
func interrupted(t *testing.T, src blob.Source, h blob.Hash, size int64, k filecrypt.Key) (dir, out, path string, run func(int64) func(func(context.Context, blob.Source, func(int64)) error) error) {
	t.Helper()
	dir, out = t.TempDir(), t.TempDir()
	path = filepath.Join(out, "file.bin")
	run = cutRun(src)
	if _, err := client.ReceiveFile(dir, h, size, k, path, run(5*int64(filecrypt.EncChunkSize))); !errors.Is(err, errCut) {
		t.Fatal(err)
	}
	return dir, out, path, run
}

func cutRun(src blob.Source) func(cut int64) func(func(context.Context, blob.Source, func(int64)) error) error {
	return func(cut int64) func(func(context.Context, blob.Source, func(int64)) error) error {
		return func(g func(context.Context, blob.Source, func(int64)) error) error {
			return g(context.Background(), cutSource{src, cut}, nil)
		}
	}
}

// TestReceiveNoHardLinks: on a file system without hard links (FAT, exFAT
// and vfat USB drives, where link fails with EPERM on Linux, ENOTSUP or
// EOPNOTSUPP elsewhere), a finished download still takes the output's
// name, whole, and leaves no partial file or record; an existing file
// still stops it, untouched, and the download finishes once that file is
// gone. Another link error is reported as it is.
func TestReceiveNoHardLinks(t *testing.T) {
	cs := filecrypt.ChunkSize
	plain := randomBytes(3*cs+7, 6)
	src, h, size, k := sharedBlob(t, plain)
	run := cutRun(src)
	// failLink makes finish's hard link fail with errno, after before
	// (if set), counting the calls in links.
	failLink := func(t *testing.T, errno syscall.Errno, links *int, before func(oldname string)) {
		client.SetLink(t, func(oldname, newname string) error {
			*links++
			if before != nil {
				before(oldname)
			}
			return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errno}
		})
	}
	// download runs a whole download to file.bin in new folders.
	download := func() (dir, out, path string, err error) {
		dir, out = t.TempDir(), t.TempDir()
		path = filepath.Join(out, "file.bin")
		_, err = client.ReceiveFile(dir, h, size, k, path, run(1<<40))
		return dir, out, path, err
	}
	for _, tt := range []struct {
		desc string
		err  syscall.Errno
	}{
		{"EPERM", syscall.EPERM},
		{"EOPNOTSUPP", syscall.EOPNOTSUPP},
		{"ENOSYS", syscall.ENOSYS},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			if tt.err == syscall.EPERM && runtime.GOOS == "windows" {
				t.Skip("EPERM is not a Windows error")
			}
			links := 0
			failLink(t, tt.err, &links, nil)
			dir, out, path, err := download()
			if err != nil {
				t.Fatalf("download: %v", err)
			}
			if links != 1 {
				t.Errorf("link called %d times, want 1", links)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("saved file: %v, or differs", err)
			}
			if fi, err := os.Stat(path); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
				t.Errorf("saved file mode %04o, want 0600", fi.Mode().Perm())
			}
			if ps := partials(t, out); len(ps) != 0 {
				t.Errorf("partial files left: %q", ps)
			}
			if rec := record(t, dir, h); rec != nil {
				t.Errorf("record left: %v", rec)
			}

			// An existing file is never overwritten; the complete partial
			// file and its record wait for it to go.
			dir, out = t.TempDir(), t.TempDir()
			path = filepath.Join(out, "file.bin")
			if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := client.ReceiveFile(dir, h, size, k, path, run(1<<40)); !errors.Is(err, client.ErrFileExists) {
				t.Fatalf("download over an existing file: %v, want ErrFileExists", err)
			}
			if b, _ := os.ReadFile(path); string(b) != "precious" {
				t.Fatalf("existing file overwritten: now %d bytes", len(b))
			}
			if ps := partials(t, out); len(ps) != 1 || record(t, dir, h) == nil {
				t.Fatalf("after ErrFileExists: partial files %q, record %v; want one and one", ps, record(t, dir, h))
			}
			os.Remove(path)
			if _, err := client.ReceiveFile(dir, h, size, k, path, run(0)); err != nil {
				t.Fatalf("download once the file is gone: %v", err)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("saved file: %v, or differs", err)
			}
			if ps := partials(t, out); len(ps) != 0 || record(t, dir, h) != nil {
				t.Errorf("partial files %q, record %v left", ps, record(t, dir, h))
			}
		})
	}

	// A link that fails otherwise (here, I/O) is the error: nothing is
	// saved, the partial file and its record stay to resume.
	t.Run("EIO", func(t *testing.T) {
		failLink(t, syscall.EIO, new(int), nil)
		dir, out, path, err := download()
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("download: %v, want EIO", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output: %v, want none", err)
		}
		if ps := partials(t, out); len(ps) != 1 || record(t, dir, h) == nil {
			t.Errorf("partial files %q, record %v; want one and one", ps, record(t, dir, h))
		}
	})

	// A rename that fails (here the partial file vanished) leaves no
	// empty file under the output's name.
	t.Run("rename fails", func(t *testing.T) {
		failLink(t, syscall.EOPNOTSUPP, new(int), func(oldname string) { os.Remove(oldname) })
		_, _, path, err := download()
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("download: %v, want the rename's ErrNotExist", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output: %v, want none", err)
		}
	})
}
