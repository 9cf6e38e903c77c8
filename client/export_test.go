package client

import (
	"context"

	"kez.lat/kez"
	"kez.lat/kez/blob"
)

// SetKeyringCalls replaces the OS keyring calls (nil keeps one) and
// returns the function that restores them.
func SetKeyringCalls(set func(service, user, secret string) error, get func(service, user string) (string, error)) (restore func()) {
	oldSet, oldGet := keyringSet, keyringGet
	if set != nil {
		keyringSet = set
	}
	if get != nil {
		keyringGet = get
	}
	return func() { keyringSet, keyringGet = oldSet, oldGet }
}

// Allow is the access rule of c's node (see Client.allowFunc).
func (c *Client) Allow() func(kez.PublicKey, blob.Hash) bool { return c.allowFunc() }

// PublishAddrs makes the sigchain's p2p endpoint list addrs.
func (c *Client) PublishAddrs(ctx context.Context, addrs []string) error {
	return c.publishAddrs(ctx, addrs)
}

// CheckNATSURLs is checkNATSURLs.
var CheckNATSURLs = checkNATSURLs
