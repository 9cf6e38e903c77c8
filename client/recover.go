package client

import (
	"context"
	"errors"
	"fmt"

	"kez.lat/kez"
	"kez.lat/kez/mnemonic"
	"kez.lat/kez/sigchain"
)

// Recover restores the account of the paper backup words into the
// profile: words -> seed -> key -> handle through the home server's
// GET /v1/k/{primary} -> the sigchain, fetched and verified. Errors of
// the words are mnemonic's (an [*mnemonic.UnknownWordsError] carries
// suggestions to show the user, never to log). As after Register, the
// endpoints are republished if the chain lacks them; a failure to do so
// is returned as chainErr.
//
// A profile holding the key of the words but no account (a Register or
// Recover that stopped after saving the key) is finished. A profile
// holding an account refuses ([ErrAccountExists]), one holding another
// key without an account too ([ErrOtherKey]).
func (c *Client) Recover(ctx context.Context, words string) (a Account, chainErr error, err error) {
	seed, err := mnemonic.ToSeed(words)
	if err != nil {
		return a, nil, err
	}
	key, err := kez.NewPrivateKey(seed)
	clear(seed)
	if err != nil {
		return a, nil, err
	}
	saved, err := c.claimProfile(key, "recover into a new profile: --profile NAME")
	if err != nil {
		return a, nil, err
	}
	home, err := c.home()
	if err != nil {
		return a, nil, err
	}
	rec, err := home.Key(ctx, key.Public())
	if errors.Is(err, kez.ErrNotFound) {
		return a, nil, withHint(fmt.Errorf("no handle is registered for these words on %s", home.BaseURL),
			"the words are a valid backup, but of another key: check them, and the --server")
	}
	if err != nil {
		return a, nil, fmt.Errorf("look up the key: %w", err)
	}
	st, err := c.sig(rec.SigchainBase).Fetch(ctx, rec.Primary, sigchain.Pin{})
	if err != nil {
		return a, nil, fmt.Errorf("own sigchain: %w", err)
	}
	return c.saveAccount(ctx, home.BaseURL, rec, key, saved, st)
}
