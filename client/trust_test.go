package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/sigchain"
)

// pinStale writes bob's contacts as if he had pinned @alice with a key
// the server no longer names, and, unless changed is nil, recorded
// changed as her changed key (as a file from before ShownKey: nothing
// shown). It returns the pinned key.
func pinStale(t *testing.T, bob *client.Client, changed *kez.PublicKey) kez.PublicKey {
	t.Helper()
	old, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"v": 1, "contacts": []client.Contact{{
		Handle: handle(t, "alice"), Key: old.Public(), Chain: sigchain.State{Key: old.Public()}, ChangedKey: changed}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bob.Profile().Dir, "contacts.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return old.Public()
}

// shownChange pins @alice for bob with a stale key (pinStale), records
// a new key k1 as her change and marks k1 as shown (kez-chat verify). It
// returns k1 and the pinned key.
func shownChange(t *testing.T, bob *client.Client) (k1, old kez.PublicKey) {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k1 = k.Public()
	old = pinStale(t, bob, &k1)
	if err := bob.MarkShown(handle(t, "alice"), k1); err != nil {
		t.Fatal(err)
	}
	return k1, old
}

// trustRefused checks that a trust without a key is refused as not shown,
// with a hint to verify again, and that @alice is still pinned with old.
func trustRefused(t *testing.T, bob *client.Client, old kez.PublicKey) client.Contact {
	t.Helper()
	ct, changed, err := bob.Trust(context.Background(), handle(t, "alice"), kez.PublicKey{})
	if !errors.Is(err, client.ErrNotShown) || changed {
		t.Fatalf("trust (no key): pinned %s (changed %v), %v; want ErrNotShown", ct.Key, changed, err)
	}
	if hints := strings.Join(client.Hints(err), "\n"); !strings.Contains(hints, "kez-chat verify @alice@kez.test") || !strings.Contains(hints, "--key") {
		t.Errorf("hints %q: want kez-chat verify and --key", hints)
	}
	ct, err = bob.Profile().Contact(handle(t, "alice"))
	if err != nil || !ct.Key.Equal(old) || ct.ChangedKey == nil {
		t.Fatalf("after the refusal @alice is %+v, %v; want still pinned with %s, the change recorded", ct, err, old)
	}
	return ct
}

// trustShown shows bob the recorded changed key (as kez-chat verify
// does) and trusts it by default; it must pin that key.
func trustShown(t *testing.T, bob *client.Client) {
	t.Helper()
	v, err := bob.Verify(handle(t, "alice"))
	if err != nil || v.ChangedSafetyNumber == "" {
		t.Fatalf("verify: %+v, %v", v, err)
	}
	shown := *v.Contact.ChangedKey
	if err := bob.MarkShown(handle(t, "alice"), shown); err != nil {
		t.Fatal(err)
	}
	ct, changed, err := bob.Trust(context.Background(), handle(t, "alice"), kez.PublicKey{})
	if err != nil || !changed || !ct.Key.Equal(shown) || ct.ChangedKey != nil || ct.ShownKey != nil {
		t.Fatalf("trust after verify: %+v, %v, %v; want %s pinned", ct, changed, err, shown)
	}
}

// quarantined checks that @alice's one message in bob's history is
// quarantined, or released with its text.
func quarantined(t *testing.T, bob *client.Client, want bool) {
	t.Helper()
	h, err := bob.History(handle(t, "alice"))
	if err != nil || len(h) != 1 || h[0].Quarantined != want || !want && h[0].Body != "m0" {
		t.Fatalf("history: %+v, %v; want m0 quarantined %v", h, err, want)
	}
}

// TestTrustDefaultNeedsVerify: a listen records the key that signed
// @alice's message as her changed key; trust without a key refuses it
// until bob was shown its safety number, then pins it and releases the
// message.
func TestTrustDefaultNeedsVerify(t *testing.T) {
	bob := backlog(t, 1)
	old := pinStale(t, bob, nil)
	listenOnce(t, bob)
	quarantined(t, bob, true)
	trustRefused(t, bob, old)
	trustShown(t, bob)
	quarantined(t, bob, false)
}

// TestTrustDefaultAfterListenReplacesChange: bob is shown the safety
// number of k1, @alice's changed key; a listen then takes a message
// signed by the key the server names now (Ka, which bob never compared).
// Trust without a key must not pin Ka, nor k1 (no longer the change):
// it refuses until bob is shown Ka's number.
func TestTrustDefaultAfterListenReplacesChange(t *testing.T) {
	bob := backlog(t, 1)
	k1, old := shownChange(t, bob)
	listenOnce(t, bob)
	ct := trustRefused(t, bob, old)
	if ct.ChangedKey.Equal(k1) || ct.ShownKey != nil {
		t.Fatalf("after the listen the change is %s, shown %v; want the message's key, not shown", ct.ChangedKey, ct.ShownKey)
	}
	// The number of k1, on the screen before the listen, is stale now.
	if err := bob.MarkShown(handle(t, "alice"), k1); !errors.Is(err, client.ErrNotShown) {
		t.Fatalf("MarkShown of the replaced change: %v, want ErrNotShown", err)
	}
	trustShown(t, bob)
	quarantined(t, bob, false)
}

// TestTrustDefaultAfterRefusedTrust: bob is shown k1's number, but the
// server names Ka by the time he trusts: that trust is refused and
// records Ka as the change. A second trust without a key must not pin
// Ka, which bob was never shown.
func TestTrustDefaultAfterRefusedTrust(t *testing.T) {
	bob := backlog(t, 0)
	ctx := context.Background()
	k1, old := shownChange(t, bob)
	_, _, err := bob.Trust(ctx, handle(t, "alice"), kez.PublicKey{})
	if !errors.Is(err, client.ErrKeyChanged) || !strings.Contains(err.Error(), "nothing was trusted") {
		t.Fatalf("trust of k1 while the server names another: %v", err)
	}
	ct := trustRefused(t, bob, old)
	if ct.ChangedKey.Equal(k1) || ct.ShownKey != nil {
		t.Fatalf("after the refused trust the change is %s, shown %v; want the server's key, not shown", ct.ChangedKey, ct.ShownKey)
	}
	trustShown(t, bob)
}

// recordChange records k as @alice's changed key in bob's contacts, as a
// listen does for a message signed by k, or a send when the server names
// k (nothing shown).
func recordChange(t *testing.T, bob *client.Client, k kez.PublicKey) {
	t.Helper()
	err := bob.Profile().UpdateContacts(func(cs []client.Contact) ([]client.Contact, error) {
		for i := range cs {
			if cs[i].Handle == handle(t, "alice") {
				cs[i].ChangedKey, cs[i].ChangedAt, cs[i].ShownKey = &k, 1, nil
				return cs, nil
			}
		}
		return cs, client.ErrNotContact
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newKey returns a fresh public key.
func newKey(t *testing.T) kez.PublicKey {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// setAsideRefused checks that a trust of key (the zero key: a re-check
// of pinned) is refused as setting aside @alice's unshown change, with
// hints to verify it or to name the key again, and that @alice is still
// pinned with pinned, change still recorded.
func setAsideRefused(t *testing.T, bob *client.Client, key, pinned, change kez.PublicKey) {
	t.Helper()
	want := key
	if want.IsZero() {
		want = pinned
	}
	ct, changed, err := bob.Trust(context.Background(), handle(t, "alice"), key)
	if !errors.Is(err, client.ErrNotShown) || changed || !strings.Contains(err.Error(), change.String()) {
		t.Fatalf("trust of %s over the change %s: pinned %s (changed %v), %v; want ErrNotShown naming the change", want, change, ct.Key, changed, err)
	}
	hints := strings.Join(client.Hints(err), "\n")
	if !strings.Contains(hints, "kez-chat verify @alice@kez.test") || !strings.Contains(hints, "--key "+want.String()) {
		t.Errorf("hints %q: want kez-chat verify and --key %s", hints, want)
	}
	ct, err = bob.Profile().Contact(handle(t, "alice"))
	if err != nil || !ct.Key.Equal(pinned) || ct.ChangedKey == nil || !ct.ChangedKey.Equal(change) {
		t.Fatalf("after the refusal @alice is %+v, %v; want pinned with %s, the change %s still recorded", ct, err, pinned, change)
	}
}

// TestTrustKeyKeepsUnshownChange: a trust naming a key (the one the
// server names now) must not drop a changed key recorded since, which
// bob was not shown: the messages it signed would stay quarantined with
// no change left to verify. Once verify showed it, naming the key sets
// it aside. It holds for the pinned key (a re-check) and another one.
func TestTrustKeyKeepsUnshownChange(t *testing.T) {
	for _, repinned := range []bool{false, true} {
		name := "pinned"
		if repinned {
			name = "other"
		}
		t.Run(name, func(t *testing.T) {
			bob := backlog(t, 0)
			ctx := context.Background()
			ct, _, err := bob.Add(ctx, handle(t, "alice"))
			if err != nil {
				t.Fatal(err)
			}
			ka, pinned, c := ct.Key, ct.Key, newKey(t)
			if repinned {
				pinned = pinStale(t, bob, &c)
			} else {
				recordChange(t, bob, c)
			}
			setAsideRefused(t, bob, ka, pinned, c)
			// Shown, the change may be set aside by naming the key.
			v, err := bob.Verify(handle(t, "alice"))
			if err != nil || v.ChangedSafetyNumber == "" {
				t.Fatalf("verify: %+v, %v", v, err)
			}
			if err := bob.MarkShown(handle(t, "alice"), c); err != nil {
				t.Fatal(err)
			}
			ct, changed, err := bob.Trust(ctx, handle(t, "alice"), ka)
			if err != nil || changed != repinned || !ct.Key.Equal(ka) || ct.ChangedKey != nil {
				t.Fatalf("trust --key after verify: %+v, %v, %v; want %s pinned, no change", ct, changed, err, ka)
			}
		})
	}
}

// TestTrustKeepsChangeRecordedMeanwhile: a change recorded while a trust
// asks the server (a listen taking a message signed by yet another key)
// must not be dropped by that trust's write.
func TestTrustKeepsChangeRecordedMeanwhile(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	newUser(t, st, "alice")
	bob0, _ := newUser(t, st, "bob")
	ct, _, err := bob0.Add(ctx, handle(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	c := newKey(t)
	target, _ := url.Parse(st.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/u/alice") {
			recordChange(t, bob0, c)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer home.Close()
	bob := client.New(bob0.Profile(), client.Config{Server: home.URL, Domain: clienttest.Domain})
	defer bob.Close()
	for _, key := range []kez.PublicKey{{}, ct.Key} { // a re-check, and naming the pinned key
		setAsideRefused(t, bob, key, ct.Key, c)
		if err := bob.Profile().UpdateContacts(func(cs []client.Contact) ([]client.Contact, error) {
			for i := range cs {
				cs[i].ChangedKey, cs[i].ChangedAt = nil, 0
			}
			return cs, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
