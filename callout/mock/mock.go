// Package mock holds a hand-written fake of the callout's registry
// look-up for tests: each method calls the function field of its name, so
// a test sets just the calls it expects (a call to an unset one panics,
// failing the test that did not expect it).
package mock

import (
	"context"

	"kez.lat/kez"
	"kez.lat/kez/callout"
)

var _ callout.Users = (*Users)(nil)

// Users is a fake [callout.Users].
type Users struct {
	LookupKeyFn func(key kez.PublicKey) (kez.HandleRecord, bool)
	KeyHandleFn func(ctx context.Context, key kez.PublicKey) (kez.Handle, error)
}

func (u *Users) LookupKey(key kez.PublicKey) (kez.HandleRecord, bool) { return u.LookupKeyFn(key) }

func (u *Users) KeyHandle(ctx context.Context, key kez.PublicKey) (kez.Handle, error) {
	return u.KeyHandleFn(ctx, key)
}
