package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"kez.lat/kez/sigchain"
)

// ErrNoClaim: the own sigchain holds no such claim to revoke.
var ErrNoClaim = errors.New("no such claim")

// AddClaim publishes identity claim cl (kind such as github, dns or
// nostr, the value, and where its proof is) in the own sigchain, and
// returns the account with the chain's new state. A claim is for display:
// contacts see it as something the user says, which kez does not verify.
// Adding a claim of the same kind and value again replaces its proof. A
// malformed claim is refused with [sigchain.ErrMalformed] before anything
// is published.
func (c *Client) AddClaim(ctx context.Context, cl sigchain.Claim) (Account, error) {
	return c.extendChain(ctx, func(Account, sigchain.State) []chainEvent {
		return []chainEvent{{sigchain.TypeAddClaim, cl}}
	})
}

// RevokeClaim withdraws the own claim of kind and value; [ErrNoClaim] if
// the chain holds none.
func (c *Client) RevokeClaim(ctx context.Context, kind, value string) (Account, error) {
	missing := false
	a, err := c.extendChain(ctx, func(_ Account, st sigchain.State) []chainEvent {
		missing = !slices.ContainsFunc(st.Claims, func(cl sigchain.Claim) bool { return cl.Kind == kind && cl.Value == value })
		if missing {
			return nil
		}
		return []chainEvent{{sigchain.TypeRevokeClaim, sigchain.Claim{Kind: kind, Value: value}}}
	})
	if err == nil && missing {
		err = withHint(fmt.Errorf("%s %q: %w", kind, value, ErrNoClaim), "kez-chat claim list shows your claims")
	}
	return a, err
}

// Claims returns the own claims, as the own sigchain holds them now.
func (c *Client) Claims(ctx context.Context) ([]sigchain.Claim, error) {
	a, err := c.extendChain(ctx, func(Account, sigchain.State) []chainEvent { return nil })
	return a.Chain.Claims, err
}
