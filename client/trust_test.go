package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
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
