package client_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestReceiptVectors walks testdata/receipts (docs/kez-receipts.md):
// bad-* must be refused; the others parse, and a receipt's plaintext is
// the vector byte for byte when the vector holds only type, kind, ids.
func TestReceiptVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/receipts/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := client.ParseReceipt(raw)
			if strings.HasPrefix(filepath.Base(f), "bad-") {
				if !errors.Is(err, client.ErrBadReceipt) {
					t.Fatalf("ParseReceipt(%s) = %+v, %v; want ErrBadReceipt", raw, r, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReceipt(%s): %v", raw, err)
			}
			pt, err := r.Plaintext()
			if err != nil {
				t.Fatal(err)
			}
			if pt.Type() != client.TypeReceipt {
				t.Errorf("type %q", pt.Type())
			}
			if !strings.Contains(string(raw), `"at"`) && string(pt.Raw()) != string(raw) {
				t.Errorf("Plaintext() = %s, want the vector %s", pt.Raw(), raw)
			}
		})
	}
}

func FuzzParseReceipt(f *testing.F) {
	files, _ := filepath.Glob("testdata/receipts/*.json")
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := client.ParseReceipt(raw)
		if err != nil {
			return
		}
		pt, err := r.Plaintext()
		if err != nil {
			t.Fatalf("accepted %s but cannot write it back: %v", raw, err)
		}
		back, err := client.ParseReceipt(pt.Raw())
		if err != nil || back.Kind != r.Kind || !slices.Equal(back.IDs, r.IDs) {
			t.Fatalf("round trip of %s: %+v, %v", raw, back, err)
		}
	})
}

// TestSendReceipt: a receipt reaches the sender of the message end to
// end, is kept in neither side's history as a message of its own on the
// sending side, and is refused for a stranger.
func TestSendReceipt(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	e, err := alice.SendText(ctx, handle(t, "bob"), "hi")
	if err != nil {
		t.Fatal(err)
	}
	var got []client.Entry
	if err := bob.Listen(ctx, client.ListenOptions{Once: true}, func(ev client.Event) { got = append(got, *ev.Entry) }); err != nil || len(got) != 1 {
		t.Fatalf("bob received %d, %v", len(got), err)
	}
	if err := bob.SendReceipt(ctx, handle(t, "alice"), client.Receipt{Kind: client.ReceiptRead, IDs: []string{got[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := bob.History(handle(t, "alice")); len(h) != 1 {
		t.Errorf("bob's history holds %d entries, want only the message", len(h))
	}
	got = nil
	if err := alice.Listen(ctx, client.ListenOptions{Once: true}, func(ev client.Event) { got = append(got, *ev.Entry) }); err != nil || len(got) != 1 {
		t.Fatalf("alice received %d, %v", len(got), err)
	}
	r, err := client.ParseReceipt(got[0].Plaintext)
	if got[0].Type != client.TypeReceipt || err != nil || r.Kind != client.ReceiptRead || !slices.Equal(r.IDs, []string{e.ID}) {
		t.Fatalf("alice got %+v: %+v, %v", got[0], r, err)
	}
	if err := alice.SendReceipt(ctx, handle(t, "carol"), client.Receipt{Kind: client.ReceiptRead, IDs: []string{e.ID}}); !errors.Is(err, client.ErrNotContact) {
		t.Errorf("receipt to a stranger: %v, want ErrNotContact", err)
	}
	if err := alice.SendReceipt(ctx, handle(t, "bob"), client.Receipt{Kind: "seen", IDs: []string{e.ID}}); !errors.Is(err, client.ErrBadReceipt) {
		t.Errorf("receipt of an unknown kind: %v, want ErrBadReceipt", err)
	}
}
