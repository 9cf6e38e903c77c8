package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kez.lat/kez/blob"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/keztest"
	"kez.lat/kez/p2p"
	"kez.lat/kez/sigchain"
)

// TestShareUnshare: sharing records the file, publishes a manifest named
// in the sigchain and opens the node to the recipients only; unsharing
// with one keeps it for the others, with the last deletes the blob.
func TestShareUnshare(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	carol, _ := newUser(t, st, "carol")
	dave, _ := newUser(t, st, "dave")
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("the plan"), 0o600)

	res, err := alice.Share(ctx, handle(t, "bob"), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	if _, err := alice.Share(ctx, handle(t, "carol"), path, nil); err != nil {
		t.Fatal(err)
	}
	fs, err := alice.Files()
	if err != nil || len(fs) != 2 {
		t.Fatalf("files: %d, %v", len(fs), err)
	}
	allow := alice.Allow()
	ak, _ := alice.Account()
	bk, _ := bob.Account()
	ck, _ := carol.Account()
	dk, _ := dave.Account()
	f := res.File
	if !allow(bk.Primary, f.Blob) || allow(ck.Primary, f.Blob) || allow(dk.Primary, f.Blob) {
		t.Fatal("the node's access rule does not follow the recipients")
	}
	ptr := ak.Chain.SharedFiles
	if ptr == nil {
		t.Fatal("no set_shared_files in alice's chain")
	}
	mh, _ := blob.ParseHash(ptr.Manifest)
	if !allow(dk.Primary, mh) {
		t.Fatal("the manifest is not served to everyone")
	}

	// Alice's node is not running: browsing without waiting fails at once.
	if _, err := bob.Browse(ctx, handle(t, "alice"), client.FetchOptions{}); !errors.Is(err, client.ErrSenderOffline) {
		t.Fatalf("browse with alice offline: %v", err)
	}

	// Unshare with bob: bob's file had one recipient, so it is gone,
	// blob and all; carol's copy stays.
	if _, err := alice.Unshare(ctx, id, handle(t, "carol")); err == nil {
		t.Fatal("unshare with someone the file is not shared with succeeded")
	}
	if _, err := alice.Unshare(ctx, id, handle(t, "bob")); err != nil {
		t.Fatal(err)
	}
	if fs, _ := alice.Files(); len(fs) != 1 {
		t.Fatalf("after unshare: %d files", len(fs))
	}
	if allow(bk.Primary, f.Blob) {
		t.Fatal("bob still allowed after unshare")
	}
	blobPath := filepath.Join(alice.Profile().Dir, "blobs", f.Blob.String())
	if _, err := os.Stat(blobPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the blob of a file shared with no one is still there: %v", err)
	}
	ak2, _ := alice.Account()
	if ak2.Chain.SharedFiles == nil || *ak2.Chain.SharedFiles == *ptr {
		t.Fatal("unshare did not publish a new manifest")
	}
	if allow(dk.Primary, mh) {
		t.Fatal("the old manifest is still served")
	}
	if _, err := alice.Unshare(ctx, "zz", handle(t, "bob")); !errors.Is(err, client.ErrNoSuchFile) {
		t.Fatalf("unshare of a bad ID: %v", err)
	}
}

// TestConcurrentChainAppends: two processes of one user appending to the
// sigchain at once (listen publishing addresses, share publishing a
// manifest) both succeed; the loser of each race retries on the new tail.
func TestConcurrentChainAppends(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	p, err := client.OpenProfile(alice.Profile().Dir)
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain})
	defer other.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 5 {
		wg.Go(func() { errs <- alice.PublishAddrs(ctx, []string{fmt.Sprintf("/ip4/192.0.2.1/tcp/%d", 1000+i)}) })
		wg.Go(func() { errs <- other.PublishAddrs(ctx, []string{fmt.Sprintf("/ip4/192.0.2.2/tcp/%d", 2000+i)}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestShareBadContact: the contact is looked up while the file is
// encrypted; a share to a handle that cannot be resolved fails with the
// look-up's error, records nothing and leaves no blob, whether the
// encryption was under way or the file could not even be opened.
func TestShareBadContact(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	dir := t.TempDir()
	path := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(path, make([]byte, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.txt") // encrypted before the look-up fails, as a rule
	if err := os.WriteFile(small, []byte("the plan"), 0o600); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(alice.Profile().Dir, "blobs")
	for _, p := range []string{path, small, filepath.Join(dir, "missing")} {
		_, err := alice.Share(ctx, handle(t, "nobody"), p, nil)
		if err == nil {
			t.Fatalf("%s: share to an unregistered handle succeeded", p)
		}
		if errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the file's error, not the contact's: %v", p, err)
		}
		ents, _ := os.ReadDir(blobs)
		if len(ents) != 0 {
			t.Fatalf("%s: the store holds %d files after a failed share, first %s", p, len(ents), ents[0].Name())
		}
		if fs, _ := alice.Files(); len(fs) != 0 {
			t.Fatalf("%s: %d files recorded after a failed share", p, len(fs))
		}
	}
	// The same file to a real contact: shared.
	newUser(t, st, "bob")
	if _, err := alice.Share(ctx, handle(t, "bob"), path, nil); err != nil {
		t.Fatal(err)
	}
	if fs, _ := alice.Files(); len(fs) != 1 {
		t.Fatalf("%d files after a share", len(fs))
	}
}

// blobFiles returns the files in c's blob store, each name with the
// SHA-256 of its content.
func blobFiles(t *testing.T, c *client.Client) map[string][32]byte {
	t.Helper()
	dir := filepath.Join(c.Profile().Dir, "blobs")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

// serve runs c's node on loopback until t ends, once it advertises its
// addresses in the sigchain.
func serve(t *testing.T, c *client.Client) {
	t.Helper()
	if _, err := startServe(t, c); err != nil {
		t.Fatalf("serve: publish addresses: %v", err)
	}
}

// startServe runs c's node on loopback until t ends, and returns what
// Serve reports once it first published its addresses (or failed to).
func startServe(t *testing.T, c *client.Client) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type report struct {
		addrs []string
		err   error
	}
	ready := make(chan report, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, client.ServeOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Ready: func(addrs []string, err error) { ready <- report{addrs, err} }})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case r := <-ready:
		return r.addrs, r.err
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return nil, nil
}

// endpointAddrs returns the addresses of the p2p endpoint that reader
// reads in h's sigchain (ok false: it has none).
func endpointAddrs(t *testing.T, reader *client.Client, h string) (addrs []string, ok bool) {
	t.Helper()
	ct, _, err := reader.Add(context.Background(), handle(t, h))
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range ct.Chain.P2P {
		return ep.Addrs, true
	}
	return nil, false
}

// TestBrowseHostilePointer: a contact's sigchain may name any blob as
// its manifest, such as the user's own manifest or a file she shares;
// browsing that contact neither deletes nor changes it.
func TestBrowseHostilePointer(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("the plan"), 0o600)
	res, err := alice.Share(ctx, handle(t, "bob"), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ak, _ := alice.Account()
	own := *ak.Chain.SharedFiles
	for _, tt := range []struct {
		name string
		ptr  sigchain.SharedFiles
	}{
		{"her manifest", own},
		{"her shared file", sigchain.SharedFiles{Manifest: res.File.Blob.String(), Size: res.File.Size}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := blobFiles(t, alice)
			if err := bob.PublishSharedFiles(ctx, tt.ptr); err != nil {
				t.Fatal(err)
			}
			if _, err := alice.Browse(ctx, handle(t, "bob"), client.FetchOptions{}); err == nil {
				t.Fatal("browse of a manifest that is not bob's succeeded")
			}
			if after := blobFiles(t, alice); !maps.Equal(after, before) {
				t.Fatalf("alice's blob store changed by browsing @bob: %d files before, %d after", len(before), len(after))
			}
		})
	}
}

// TestBrowseInMemory: a browse reads the contact's manifest from their
// node without storing it; a fetch that fails part-way (the node sends
// bytes that do not verify after the first groups) leaves nothing in the
// user's blob store.
func TestBrowseInMemory(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	path := filepath.Join(t.TempDir(), "data.bin")
	os.WriteFile(path, bytes.Repeat([]byte("0123456789abcdef"), 8<<10), 0o600) // 128 KiB
	res, err := bob.Share(ctx, handle(t, "alice"), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, bob)
	before := blobFiles(t, alice)

	l, err := alice.Browse(ctx, handle(t, "bob"), client.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1 || l.Files[0].File.Blob != res.File.Blob {
		t.Fatalf("browse @bob: %+v, want the one file bob shares", l)
	}
	if after := blobFiles(t, alice); !maps.Equal(after, before) {
		t.Fatalf("browse stored something: %d files before, %d after", len(before), len(after))
	}

	// Bob names his shared file, which his node serves to alice, as his
	// manifest, and its bytes change on disk past the first groups.
	f, err := os.OpenFile(filepath.Join(bob.Profile().Dir, "blobs", res.File.Blob.String()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{0xff}, 3*blob.GroupSize+5)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.PublishSharedFiles(ctx, sigchain.SharedFiles{Manifest: res.File.Blob.String(), Size: res.File.Size}); err != nil {
		t.Fatal(err)
	}
	var verified int64
	_, err = alice.Browse(ctx, handle(t, "bob"), client.FetchOptions{Progress: func(p client.FetchProgress) { verified = p.Done }})
	if !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("browse of a corrupt manifest: %v, want ErrCorrupt", err)
	}
	if verified == 0 {
		t.Fatal("the fetch failed before any group verified, not part-way")
	}
	if after := blobFiles(t, alice); !maps.Equal(after, before) {
		t.Fatalf("a failed manifest fetch left files: %d before, %d after", len(before), len(after))
	}
}

// TestBrowseStalled: a fetch's MinRate reaches the node, and a stall is
// explained: which contact, and that fetching again resumes.
func TestBrowseStalled(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("the plan"), 0o600)
	if _, err := bob.Share(ctx, handle(t, "alice"), path, nil); err != nil {
		t.Fatal(err)
	}
	serve(t, bob)
	// No peer sends its first byte within a nanosecond of the request.
	_, err := alice.Browse(ctx, handle(t, "bob"), client.FetchOptions{MinRate: p2p.MinRate{FirstByte: time.Nanosecond}})
	if !errors.Is(err, p2p.ErrStalled) {
		t.Fatalf("browse with a first-byte bound of 1ns: %v, want ErrStalled", err)
	}
	if !strings.Contains(err.Error(), "@"+handle(t, "bob").String()) {
		t.Errorf("error %q does not name @bob", err)
	}
	if hs := client.Hints(err); len(hs) == 0 || !strings.Contains(hs[0], "resumes") {
		t.Errorf("hints %q do not say the download resumes", hs)
	}
	if _, err := alice.Browse(ctx, handle(t, "bob"), client.FetchOptions{}); err != nil {
		t.Fatalf("browse with the default bounds: %v", err)
	}
}

// TestRelayOnlyHidesDirectAddrs: a normal run published the device's
// direct addresses in the sigchain; a relay-only fetch, and a
// relay-only share, leave the endpoint listing its relay circuits only,
// and the share's announcement names no direct address either.
func TestRelayOnlyHidesDirectAddrs(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	relayID, err := p2p.PeerID(keztest.NewKey(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	circuit := "/ip4/192.0.2.9/tcp/443/p2p/" + relayID.String() + "/p2p-circuit"
	direct := []string{"/ip4/192.0.2.1/tcp/4001", circuit, "/ip6/2001:db8::1/udp/4001/quic-v1"}
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("the plan"), 0o600)
	// Bob shares a file with alice, so that browsing him starts her node.
	if _, err := bob.Share(ctx, handle(t, "alice"), path, nil); err != nil {
		t.Fatal(err)
	}
	relayOnly := client.New(alice.Profile(), client.Config{Server: st.URL(), Domain: clienttest.Domain, RelayOnly: true})
	defer relayOnly.Close()
	// What bob reads of alice's endpoint.
	listed := func() []string {
		t.Helper()
		addrs, ok := endpointAddrs(t, bob, "alice")
		if !ok {
			t.Fatal("alice's sigchain has no p2p endpoint")
		}
		return addrs
	}

	t.Run("fetch", func(t *testing.T) {
		if err := alice.PublishAddrs(ctx, direct); err != nil {
			t.Fatal(err)
		}
		// The test's home server advertises no relay: the browse fails,
		// after its node started.
		relayOnly.Browse(ctx, handle(t, "bob"), client.FetchOptions{})
		if got := listed(); !slices.Equal(got, []string{circuit}) {
			t.Fatalf("alice's endpoint after a relay-only browse: %q, want her circuit only", got)
		}
	})
	t.Run("share", func(t *testing.T) {
		if err := alice.PublishAddrs(ctx, direct); err != nil {
			t.Fatal(err)
		}
		if _, err := relayOnly.Share(ctx, handle(t, "bob"), path, nil); err != nil {
			t.Fatal(err)
		}
		if got := listed(); !slices.Equal(got, []string{circuit}) {
			t.Fatalf("alice's endpoint after a relay-only share: %q, want her circuit only", got)
		}
		got, _ := listenOnce(t, bob)
		var offers []client.Offer
		for _, e := range got {
			if o, err := bob.Announcement(e); err == nil {
				offers = append(offers, o)
			}
		}
		if len(offers) != 1 || !slices.Equal(offers[0].Addrs(), []string{circuit}) {
			t.Fatalf("announcements %+v, want one naming alice's circuit only", offers)
		}
	})
}

// downTransport fails every request while down is set: the home and
// sig-servers unreachable for a while.
type downTransport struct{ down atomic.Bool }

func (d *downTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.down.Load() {
		return nil, errors.New("test: servers unreachable")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestServeRetriesPublish: a listen whose first publish of its
// addresses failed (the sig-server unreachable) publishes them once it
// can, although they did not change meanwhile.
func TestServeRetriesPublish(t *testing.T) {
	st := clienttest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	if err := alice.PublishAddrs(ctx, []string{"/ip4/192.0.2.1/tcp/4001"}); err != nil {
		t.Fatal(err)
	}
	var tr downTransport
	tr.down.Store(true)
	c := client.New(alice.Profile(), client.Config{Server: st.URL(), Domain: clienttest.Domain, HTTP: &http.Client{Transport: &tr}})
	t.Cleanup(c.Close) // after startServe's: the node stops first
	want, err := startServe(t, c)
	if err == nil {
		t.Error("publishing with the servers unreachable succeeded")
	}
	tr.down.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := endpointAddrs(t, bob, "alice")
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's endpoint %q 20s after her servers came back, want her node's %q", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
