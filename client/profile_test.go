package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

func TestKeyFileMode(t *testing.T) {
	p, err := client.OpenProfile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Key(); !errors.Is(err, client.ErrNoAccount) {
		t.Fatalf("no key: %v", err)
	}
	k, _ := kez.GenerateKey(nil)
	if saved, err := p.SaveKey(k); err != nil || saved.Store != client.KeyStoreFile || saved.Fallback != nil {
		t.Fatal(saved, err)
	}
	name := filepath.Join(p.Dir, "key")
	fi, err := os.Stat(name)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	got, err := p.Key()
	if err != nil || !got.Public().Equal(k.Public()) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := p.SaveKey(k); !errors.Is(err, client.ErrAccountExists) {
		t.Errorf("second SaveKey: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(name, mode)
		_, err := p.Key()
		if !errors.Is(err, client.ErrKeyFileMode) || len(client.Hints(err)) == 0 {
			t.Errorf("mode %04o: %v", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), fmt.Sprintf("%x", k.Seed()[:4])) {
			t.Errorf("error shows the seed")
		}
	}
}

func TestProfileDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	for _, tt := range []struct{ name, want string }{
		{"", "/cfg/kez-chat/profiles/default"},
		{"work", "/cfg/kez-chat/profiles/work"},
		{"/abs/dir", "/abs/dir"},
	} {
		if got, err := client.ProfileDir(tt.name); err != nil || got != tt.want {
			t.Errorf("ProfileDir(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []string{"..", ".hidden", "a b", "x;y"} {
		if _, err := client.ProfileDir(bad); err == nil {
			t.Errorf("ProfileDir(%q) accepted", bad)
		}
	}
}

func TestPeerIDAndSafetyNumber(t *testing.T) {
	a, _ := kez.GenerateKey(nil)
	b, _ := kez.GenerateKey(nil)
	id := client.PeerID(a.Public())
	if !strings.HasPrefix(id, "12D3KooW") || len(id) != 52 {
		t.Errorf("PeerID = %q", id)
	}
	ab, ba := client.SafetyNumber(a.Public(), b.Public()), client.SafetyNumber(b.Public(), a.Public())
	if ab != ba || len(strings.Fields(ab)) != 12 || len(strings.ReplaceAll(ab, " ", "")) != 60 {
		t.Errorf("SafetyNumber: %q vs %q", ab, ba)
	}
	if !strings.Contains(ab, client.Fingerprint(a.Public())) || !strings.Contains(ab, client.Fingerprint(b.Public())) {
		t.Errorf("safety number %q is not the two fingerprints", ab)
	}
	if client.Fingerprint(a.Public()) == client.Fingerprint(b.Public()) {
		t.Error("two keys, one fingerprint")
	}
}

// TestConcurrentListenAndSend: a listen and sends from other clients on
// the same profile (as separate processes would) lose nothing and
// corrupt nothing.
func TestConcurrentListenAndSend(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	carol, _ := newUser(t, st, "carol")
	if _, _, err := bob.Add(ctx, handle(t, "alice")); err != nil {
		t.Fatal(err)
	}
	bob2 := client.New(bob.Profile(), client.Config{Server: st.URL()})
	t.Cleanup(bob2.Close)
	const n = 30

	var got []client.Entry
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		err := bob.Listen(lctx, client.ListenOptions{Max: 2 * n}, func(ev client.Event) {
			if ev.Entry != nil {
				got = append(got, *ev.Entry)
			}
		})
		if err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	// A second listen on the profile is refused while the first runs.
	time.Sleep(200 * time.Millisecond)
	if err := bob2.Listen(ctx, client.ListenOptions{Once: true}, nil); !errors.Is(err, client.ErrListening) {
		t.Errorf("second listen: %v", err)
	}
	wg.Go(func() {
		for i := range n {
			if _, err := bob2.SendText(ctx, handle(t, "alice"), fmt.Sprintf("bob %d", i)); err != nil {
				t.Errorf("bob sends: %v", err)
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			if _, err := alice.SendText(ctx, handle(t, "bob"), fmt.Sprintf("alice %d", i)); err != nil {
				t.Errorf("alice sends: %v", err)
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			if _, err := carol.SendText(ctx, handle(t, "bob"), fmt.Sprintf("carol %d", i)); err != nil {
				t.Errorf("carol sends: %v", err)
			}
		}
	})
	wg.Wait()
	// The listen stopped after 2n messages; the rest is still waiting.
	if err := bob.Listen(ctx, client.ListenOptions{Once: true}, func(ev client.Event) {
		if ev.Entry != nil {
			got = append(got, *ev.Entry)
		}
	}); err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, e := range got {
		var who string
		var i int
		fmt.Sscanf(e.Body, "%s %d", &who, &i)
		if i != next[who] {
			t.Fatalf("from %s: got %d, want %d (out of order or lost)", who, i, next[who])
		}
		next[who]++
	}
	if next["alice"] != n || next["carol"] != n {
		t.Fatalf("received %v", next)
	}
	hist, err := bob.History(kez.Handle{})
	if err != nil || len(hist) != 3*n {
		t.Fatalf("history: %d entries, %v; want %d", len(hist), err, 3*n)
	}
	cs, err := bob.Contacts()
	if err != nil || len(cs) != 2 {
		t.Fatalf("contacts: %+v, %v", cs, err)
	}
}

// TestRemoteDomain: @bob@other.example is resolved over HTTPS at
// other.example, and sending there is refused until federation exists.
func TestRemoteDomain(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	bobKey, _ := kez.GenerateKey(nil)
	bob, _ := kez.ParseHandle("bob@other.example", "")
	ts := time.Now().Unix()
	rec := kez.Record{Handle: bob.String(), Primary: bobKey.Public().String(),
		SigchainURL:  kez.SigchainURL("https://sig.other.example", bobKey.Public()),
		NATS:         kez.RecordNATS{URL: "nats://nats.other.example:4222", Inbox: "kez.inbox." + bobKey.Public().Hex()},
		RegisteredAt: ts, RegistrationSig: bobKey.Sign(kez.PurposeRegistration, kez.RegistrationMessage(bob, bobKey.Public(), ts))}
	var asked []string
	var mu sync.Mutex
	remote := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.String())
		mu.Unlock()
		switch r.URL.String() {
		case "https://other.example/v1/u/bob@other.example":
			json.NewEncoder(w).Encode(rec)
		case rec.SigchainURL:
			io.WriteString(w, "[]")
		default:
			http.NotFound(w, r)
		}
	})
	hc := &http.Client{Transport: routeTransport{remote: remote}}
	p, _ := client.OpenProfile(t.TempDir())
	alice := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain, HTTP: hc})
	t.Cleanup(alice.Close)
	key, _, _ := alice.NewBackup()
	if _, _, err := alice.Register(ctx, handle(t, "alice"), key); err != nil {
		t.Fatal(err)
	}
	h, err := alice.ParseHandle("@bob@other.example")
	if err != nil {
		t.Fatal(err)
	}
	// A send to another domain fails before anything is pinned.
	if _, err := alice.SendText(ctx, h, "hi"); !errors.Is(err, client.ErrFederation) {
		t.Errorf("send to another domain: %v", err)
	}
	if _, err := p.Contact(h); !errors.Is(err, client.ErrNotContact) {
		t.Errorf("a send to another domain pinned %s: %v", h, err)
	}
	ct, added, err := alice.Add(ctx, h)
	if err != nil || !added || !ct.Key.Equal(bobKey.Public()) {
		t.Fatalf("add: %+v %v %v", ct, added, err)
	}
	if len(asked) < 2 || asked[0] != "https://other.example/v1/u/bob@other.example" {
		t.Errorf("asked %v", asked)
	}
	if _, err := alice.SendText(ctx, h, "hi"); !errors.Is(err, client.ErrFederation) {
		t.Errorf("send to another domain: %v", err)
	}
}

// routeTransport serves https:// requests from remote and sends the rest
// (the local stack) over the network.
type routeTransport struct{ remote http.Handler }

func (rt routeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return http.DefaultTransport.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	rt.remote.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestOpenProfileCreatesNothing: opening a profile that does not exist
// (a mistyped name) and reading it leaves no directory behind; the first
// write creates it, mode 0700.
func TestOpenProfileCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo", "profile")
	p, err := client.OpenProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(p, client.Config{})
	defer c.Close()
	if _, err := c.Account(); !errors.Is(err, client.ErrNoAccount) {
		t.Errorf("Account of a missing profile: %v", err)
	}
	if cs, err := p.Contacts(); err != nil || len(cs) != 0 {
		t.Errorf("Contacts of a missing profile: %v, %v", cs, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading a missing profile created it: %v", err)
	}
	key, _, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	p.KeyStore = client.KeyStoreFile
	if _, err := p.SaveKey(key); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("profile directory after the first write: %v, %v", fi, err)
	}
}
