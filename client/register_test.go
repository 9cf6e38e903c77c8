package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/mnemonic"
)

// interruptedRegister registers handle for a new key in a fresh profile
// whose account cannot be saved (account.json is a directory, as if the
// process died between saving the key and the account): the server holds
// the registration, the profile only the key.
func interruptedRegister(t *testing.T, st *clienttest.Stack, handle string) (*client.Client, kez.Handle, *kez.PrivateKey, []string) {
	t.Helper()
	c := newClient(t, st)
	acct := filepath.Join(c.Profile().Dir, "account.json")
	if err := os.MkdirAll(filepath.Join(acct, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, words, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.ParseHandle(handle)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Register(context.Background(), h, key); err == nil {
		t.Fatal("register saved an account over a directory")
	}
	if err := os.RemoveAll(acct); err != nil {
		t.Fatal(err)
	}
	if !c.Profile().HasKey() {
		t.Fatal("the key was not saved before the account")
	}
	return c, h, key, words
}

// TestRegisterAgainAfterInterrupt: a profile left with the key of a
// registration the server holds, and no account, says how to finish it,
// and the same register again finishes it (the server answers the
// registration it holds).
func TestRegisterAgainAfterInterrupt(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	c, h, key, _ := interruptedRegister(t, st, "resume_alice")

	_, err := c.Account()
	if !errors.Is(err, client.ErrNoAccount) || !strings.Contains(strings.Join(client.Hints(err), "\n"), "register <handle> again") {
		t.Errorf("account of an interrupted profile: %v, hints %q", err, client.Hints(err))
	}
	k, err := c.UnfinishedKey()
	if err != nil || !k.Public().Equal(key.Public()) {
		t.Fatalf("UnfinishedKey = %v, %v; want the saved key", k, err)
	}

	// Another handle for the same key: the key has one, which the hint names.
	_, _, err = c.Register(ctx, handle(t, "resume_other"), key)
	if !errors.Is(err, kez.ErrKeyTaken) || !strings.Contains(strings.Join(client.Hints(err), "\n"), "register "+h.String()) {
		t.Errorf("register another handle: %v, hints %q", err, client.Hints(err))
	}

	a, chainErr, err := c.Register(ctx, h, key)
	if err != nil || chainErr != nil {
		t.Fatalf("register again: %v, %v", err, chainErr)
	}
	if a.Handle != h || !a.Primary.Equal(key.Public()) || len(a.Chain.NATS) != 1 || len(a.Chain.P2P) != 1 {
		t.Fatalf("register again: %+v", a)
	}
	if got, err := c.Key(); err != nil || !got.Public().Equal(key.Public()) {
		t.Fatalf("key after register again: %v", err)
	}

	// Now the profile holds an account: neither finishes anything.
	if _, _, err := c.Register(ctx, h, key); !errors.Is(err, client.ErrAccountExists) {
		t.Errorf("register into a finished profile: %v", err)
	}
	if _, err := c.UnfinishedKey(); !errors.Is(err, client.ErrAccountExists) {
		t.Errorf("UnfinishedKey of a finished profile: %v", err)
	}
}

// TestRecoverAfterInterruptedRegister: recover with the words of the key
// an interrupted register left in the profile finishes it.
func TestRecoverAfterInterruptedRegister(t *testing.T) {
	st := clienttest.Start(t)
	c, h, key, words := interruptedRegister(t, st, "resume_bob")
	a, chainErr, err := c.Recover(context.Background(), strings.Join(words, " "))
	if err != nil || chainErr != nil {
		t.Fatalf("recover: %v, %v", err, chainErr)
	}
	if a.Handle != h || !a.Primary.Equal(key.Public()) || a.Chain.Tail.Seqno != 2 {
		t.Fatalf("recovered %+v", a)
	}
	if _, err := c.Account(); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedProfileRefusesOtherKey: a profile holding the key of an
// interrupted registration takes no other key, by register or recover,
// and keeps its own.
func TestInterruptedProfileRefusesOtherKey(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	c, _, key, _ := interruptedRegister(t, st, "resume_carol")
	_, dave := newUser(t, st, "resume_dave")

	other, _, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Register(ctx, handle(t, "resume_erin"), other)
	if !errors.Is(err, client.ErrOtherKey) || len(client.Hints(err)) == 0 {
		t.Errorf("register another key: %v, hints %q", err, client.Hints(err))
	}
	_, _, err = c.Recover(ctx, strings.Join(dave, " "))
	if !errors.Is(err, client.ErrOtherKey) || len(client.Hints(err)) == 0 {
		t.Errorf("recover another key: %v, hints %q", err, client.Hints(err))
	}
	if k, err := c.UnfinishedKey(); err != nil || !k.Public().Equal(key.Public()) {
		t.Errorf("the profile's key after the refusals: %v", err)
	}
	// Nothing was registered for the other key.
	words, _ := mnemonic.FromSeed(other.Seed())
	if _, _, err := newClient(t, st).Recover(ctx, strings.Join(words, " ")); err == nil || !strings.Contains(err.Error(), "no handle") {
		t.Errorf("recover the refused key: %v", err)
	}
}

// TestRegisterLostAnswer: the home server registers the handle but its
// answer is lost (a dropped connection). The key is already in the
// profile, so the same register again finishes the registration; a
// refused registration (the handle taken) leaves no key behind.
func TestRegisterLostAnswer(t *testing.T) {
	st := clienttest.Start(t)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, st.URL()+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("upstream: %v", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if r.URL.Path == "/v1/register" && resp.StatusCode < 300 {
			panic(http.ErrAbortHandler) // registered, the answer lost
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(proxy.Close)
	lossy := newClientVia(t, proxy.URL)
	key, _, err := lossy.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	h := handle(t, "lost_answer")
	if _, _, err := lossy.Register(context.Background(), h, key); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("register with its answer lost: %v, want ErrUnreachable", err)
	}
	if k, err := lossy.UnfinishedKey(); err != nil || !k.Public().Equal(key.Public()) {
		t.Fatalf("the profile's key after the lost answer: %v, %v; want the key registered", k, err)
	}
	again := client.New(lossy.Profile(), client.Config{Server: st.URL(), Domain: clienttest.Domain})
	t.Cleanup(again.Close)
	if a, _, err := again.Register(context.Background(), h, key); err != nil || !a.Primary.Equal(key.Public()) {
		t.Fatalf("register again: %+v, %v; want the registration finished", a, err)
	}

	// A refusal: the handle is taken by now.
	other := newClient(t, st)
	k2, _, err := other.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Register(context.Background(), h, k2); !errors.Is(err, kez.ErrHandleTaken) {
		t.Fatalf("register of a taken handle: %v", err)
	}
	if other.Profile().HasKey() {
		t.Error("a refused registration left its key in the profile")
	}
}
