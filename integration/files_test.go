//go:build integration

package integration_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kez.lat/kez/blob"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/cmd/kez-chat/chatcmd"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
	"kez.lat/kez/share"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bg is a kez-chat command running in the background.
type bg struct {
	out, errw syncBuffer
	code      int
	cancel    context.CancelFunc
	done      chan struct{}
}

// background runs kez-chat until stop is called (or it ends by itself).
func (u *user) background(args ...string) *bg {
	u.t.Helper()
	full := append([]string{"--profile", u.profile, "--server", u.server, "--domain", clienttest.Domain, "--key-store", u.keyStore}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b := &bg{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.code = chatcmd.Exit(chatcmd.Run(ctx, full, strings.NewReader(""), &b.out, &b.errw), &b.errw)
	}()
	return b
}

// stop stops the command and returns its stdout, stderr and exit code.
func (b *bg) stop() (string, string, int) {
	b.cancel()
	<-b.done
	return b.out.String(), b.errw.String(), b.code
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// writeRandom writes a file of size pseudo-random bytes and returns its
// SHA-256, without holding it in memory.
func writeRandom(t *testing.T, path string, size int64, seed uint64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed+1))
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := 0; i < int(n); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		f.Write(buf[:n])
		h.Write(buf[:n])
		left -= n
	}
	return [32]byte(h.Sum(nil))
}

// shareID shares path with to and returns the file's ID.
func shareID(t *testing.T, from *user, to, path string) string {
	t.Helper()
	out, _ := from.ok("", "--json", "share", to, path)
	return sharedID(t, out)
}

// sharedID returns the file ID in what share --json printed.
func sharedID(t *testing.T, out string) string {
	t.Helper()
	var res struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.ID) != 12 {
		t.Fatalf("share printed %q: %v", out, err)
	}
	return res.ID
}

// TestFiles is the whole file layer through the CLI: alice shares a large
// file with bob; bob's fetch, started while alice is offline, waits for
// her presence and completes once she listens; an interrupted fetch
// resumes; browse shows bob his entries and carol none; carol cannot fetch
// what is not shared with her; a corrupting sender is caught; a relay-only
// pair transfers through kez-relay.
func TestFiles(t *testing.T) {
	var homeURL atomic.Value
	relayAddr := startRelayOn(t, "127.0.0.1", &homeURL).Addrs()[0].String()
	st := clienttest.StartWith(t, func(c *chatserver.Config) { c.PublicRelays = []string{relayAddr} })
	homeURL.Store(st.URL())
	alice, bob, carol := newUser(t, st, "alice"), newUser(t, st, "bob"), newUser(t, st, "carol")
	for _, u := range []*user{alice, bob, carol} {
		u.ok("", "register", filepath.Base(u.profile), "--i-have-written-it-down")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	size := int64(bigFileSize)
	want := writeRandom(t, big, size, 1)
	id := shareID(t, alice, "@bob", big)

	// bob reads the announcement; alice is not listening: no wait fails
	// at once with the reason.
	msgs, _, _ := bob.listenOnce()
	if len(msgs) != 1 {
		t.Fatalf("bob received %+v", msgs)
	}
	if out, _ := bob.ok("", "history", "@alice"); !strings.Contains(out, "shared big.bin") || !strings.Contains(out, "kez-chat fetch "+id) {
		t.Fatalf("bob's history shows %q", out)
	}
	bob.fails("not reachable", "fetch", id, "--wait", "0", "-o", filepath.Join(dir, "nope"))

	// bob's fetch starts while alice is offline and completes by itself
	// once she runs listen.
	got := filepath.Join(dir, "got.bin")
	fetch := bob.background("--json", "fetch", id, "--wait", "3m", "-o", got)
	waitFor(t, 30*time.Second, "bob's fetch to wait for alice", func() bool {
		return strings.Contains(fetch.errw.String(), "waiting for @alice to come online")
	})
	listen := alice.background("listen")
	defer listen.stop()
	select {
	case <-fetch.done:
	case <-time.After(4 * time.Minute):
		t.Fatal("bob's fetch did not complete after alice came online")
	}
	out, errw, code := fetch.stop()
	if code != 0 {
		t.Fatalf("fetch: exit %d\n%s\n%s", code, out, errw)
	}
	if keztest.SumFile(t, got) != want {
		t.Fatal("fetched file differs from the shared one")
	}
	// Sent to bob alone: readable by bob alone.
	if fi, err := os.Stat(got); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("fetched file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	// A file announced as larger than --max-size is refused before any
	// byte is written.
	capped := filepath.Join(dir, "capped.bin")
	stderr := bob.fails("file too large", "fetch", id, "--max-size", strconv.FormatInt(size-1, 10), "-o", capped)
	if !strings.Contains(stderr, "nothing was written") || !strings.Contains(stderr, "hint: if you expect a file that large: kez-chat fetch --max-size ") {
		t.Errorf("no --max-size hint: %q", stderr)
	}
	bob.fails("want a positive size", "fetch", id, "--max-size", "0", "-o", capped)
	if _, err := os.Stat(capped); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused fetch left %s: %v", capped, err)
	}
	// Fetching again never overwrites.
	bob.fails("file exists", "fetch", id, "-o", got)

	// Resume: a fetch stopped half way continues from what it verified.
	small := filepath.Join(dir, "half.bin")
	wantHalf := writeRandom(t, small, 24<<20, 2)
	hid := shareID(t, alice, "@bob", small)
	bob.listenOnce()
	bc := bobClient(t, bob)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := bc.Fetch(ctx, hid, client.FetchOptions{Output: filepath.Join(dir, "half-unused"), Progress: func(p client.FetchProgress) {
		if p.Done >= p.Total/2 {
			cancel()
		}
	}})
	bc.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted fetch: %v", err)
	}
	out, _ = bob.ok("", "--json", "fetch", hid, "-o", filepath.Join(dir, "half-got.bin"))
	var res client.FetchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Resumed < 12<<20-filecrypt.EncChunkSize || res.Resumed >= 24<<20 {
		t.Fatalf("resumed after %d bytes, want about half of %d", res.Resumed, 24<<20)
	}
	if keztest.SumFile(t, filepath.Join(dir, "half-got.bin")) != wantHalf {
		t.Fatal("resumed file differs")
	}

	// browse: bob sees his two files, carol none.
	out, _ = bob.ok("", "browse", "@alice")
	if !strings.Contains(out, id) || !strings.Contains(out, hid) {
		t.Fatalf("bob's browse: %q", out)
	}
	out, errw = carol.ok("", "browse", "@alice")
	if out != "" || !strings.Contains(errw, "shares nothing with you") {
		t.Fatalf("carol's browse: %q %q", out, errw)
	}
	carol.fails("no such file", "fetch", "--from", "@alice", id)
	// Nor does alice's node serve carol the blob when asked directly.
	checkNotServed(t, carol, alice, id)

	// A file bob has not seen announced (his inbox is unread) is fetched
	// from alice's manifest with --from.
	unseen := filepath.Join(dir, "unseen.bin")
	wantUnseen := writeRandom(t, unseen, 1<<20, 5)
	uid := shareID(t, alice, "@bob", unseen)
	bob.fails("no such file", "fetch", uid, "-o", filepath.Join(dir, "unseen-got.bin"))
	bob.ok("", "fetch", "--from", "@alice", uid, "-o", filepath.Join(dir, "unseen-got.bin"))
	if keztest.SumFile(t, filepath.Join(dir, "unseen-got.bin")) != wantUnseen {
		t.Fatal("file fetched from the manifest differs")
	}
	bob.listenOnce()

	// A name starting with '.' (a shell's .zshenv) is saved with '_'
	// instead, and fetch says so, when the sender's name is used.
	dot := filepath.Join(dir, "dot", ".zshenv")
	os.MkdirAll(filepath.Dir(dot), 0o700)
	wantDot := writeRandom(t, dot, 1000, 6)
	did := shareID(t, alice, "@bob", dot)
	bob.listenOnce()
	dl := filepath.Join(dir, "bob-downloads")
	os.MkdirAll(dl, 0o700)
	out, errw = bob.ok("", "fetch", did, "-o", dl)
	if saved := filepath.Join(dl, "_zshenv"); strings.TrimSpace(out) != saved || !strings.Contains(errw, "saved as "+saved+", not .zshenv") {
		t.Fatalf("fetch of .zshenv into a directory: stdout %q, stderr %q; want it saved as %s, and told", out, errw, saved)
	}
	if keztest.SumFile(t, filepath.Join(dl, "_zshenv")) != wantDot {
		t.Fatal("fetched _zshenv differs")
	}
	if _, err := os.Lstat(filepath.Join(dl, ".zshenv")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fetch created .zshenv: %v", err)
	}

	// A sender whose blob is corrupted on disk is caught; nothing is saved.
	corrupt := filepath.Join(dir, "corrupt.bin")
	writeRandom(t, corrupt, 3<<20, 3)
	cid := shareID(t, alice, "@bob", corrupt)
	bob.listenOnce()
	flipByte(t, alice, cid, 2<<20+100)
	bob.fails("does not match", "fetch", cid, "-o", filepath.Join(dir, "corrupt-got"))
	if _, err := os.Stat(filepath.Join(dir, "corrupt-got")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a corrupt download left an output file")
	}
	listen.stop()

	// Relay only: alice serves and bob fetches through kez-relay; neither
	// learns the other's address.
	rel := filepath.Join(dir, "relayed.bin")
	wantRel := writeRandom(t, rel, 8<<20, 4)
	rid := shareID(t, alice, "@bob", rel)
	bob.listenOnce()
	relayed := alice.background("--relay-only", "listen")
	defer relayed.stop()
	out, errw = bob.ok("", "--relay-only", "--json", "fetch", rid, "--wait", "1m", "-o", filepath.Join(dir, "relayed-got.bin"))
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Route != "relayed" {
		t.Fatalf("relay-only fetch: %q %q %v", out, errw, err)
	}
	if keztest.SumFile(t, filepath.Join(dir, "relayed-got.bin")) != wantRel {
		t.Fatal("relayed file differs")
	}
}

// bobClient opens u's profile as a client library user.
func bobClient(t *testing.T, u *user) *client.Client {
	t.Helper()
	p, err := client.OpenProfile(u.profile)
	if err != nil {
		t.Fatal(err)
	}
	p.KeyStore = client.KeyStoreFile
	return client.New(p, client.Config{Server: u.server})
}

// checkNotServed asks owner's node for blob id with u's key, directly.
func checkNotServed(t *testing.T, u, owner *user, id string) {
	t.Helper()
	uc, oc := bobClient(t, u), bobClient(t, owner)
	defer uc.Close()
	defer oc.Close()
	key, err := uc.Key()
	if err != nil {
		t.Fatal(err)
	}
	oa, err := oc.Account()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := oc.Files()
	if err != nil {
		t.Fatal(err)
	}
	var f share.File
	for _, x := range fs {
		if strings.HasPrefix(x.File.Blob.String(), id) {
			f = x.File
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := p2p.New(ctx, p2p.Config{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var addrs []string
	for _, ep := range oa.Chain.P2P {
		addrs = append(addrs, ep.Addrs...)
	}
	src, err := n.Peer(oa.Primary, addrs)
	if err != nil {
		t.Fatal(err)
	}
	store, err := blob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Fetch(ctx, f.Blob, f.Size, src, nil); !errors.Is(err, p2p.ErrNotShared) {
		t.Fatalf("direct fetch of a blob not shared: %v, want ErrNotShared", err)
	}
}

// flipByte corrupts byte off of u's shared blob id on disk.
func flipByte(t *testing.T, u *user, id string, off int64) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(u.profile, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), id) && len(e.Name()) == 64 {
			f, err := os.OpenFile(filepath.Join(u.profile, "blobs", e.Name()), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			f.ReadAt(b, off)
			b[0] ^= 0xff
			f.WriteAt(b, off)
			f.Close()
			return
		}
	}
	t.Fatalf("no blob %s in %s's store", id, u.profile)
}
