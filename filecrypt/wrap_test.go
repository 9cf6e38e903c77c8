package filecrypt_test

import (
	"bytes"
	"errors"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/message"
)

func TestWrap(t *testing.T) {
	alice, _ := kez.NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	bob, _ := kez.NewPrivateKey(bytes.Repeat([]byte{2}, 32))
	eve, _ := kez.NewPrivateKey(bytes.Repeat([]byte{3}, 32))
	k, err := filecrypt.NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := [32]byte{1, 2, 3}
	w, err := filecrypt.Wrap(alice, bob.Public(), k, blob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != message.WrappedKeySize {
		t.Fatalf("wrapped key is %d bytes, want %d", len(w), message.WrappedKeySize)
	}
	got, err := filecrypt.Unwrap(bob, alice.Public(), w, blob)
	if err != nil || !got.Equal(k) {
		t.Fatalf("Unwrap = %v, %v", got, err)
	}
	if _, err := filecrypt.Unwrap(bob, alice.Public(), w, [32]byte{9}); !errors.Is(err, message.ErrDecrypt) {
		t.Errorf("Unwrap for another blob = %v, want ErrDecrypt", err)
	}
	if _, err := filecrypt.Unwrap(eve, alice.Public(), w, blob); !errors.Is(err, message.ErrDecrypt) {
		t.Errorf("Unwrap by a third key = %v, want ErrDecrypt", err)
	}
	if _, err := filecrypt.Unwrap(bob, alice.Public(), w[:10], blob); !errors.Is(err, message.ErrMalformed) {
		t.Errorf("Unwrap of a short key = %v, want ErrMalformed", err)
	}
}
