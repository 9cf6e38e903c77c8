package client

import (
	"context"

	"kez.lat/kez"
	"kez.lat/kez/blob"
)

// SetKeyringCalls replaces p's OS keyring calls (nil keeps one).
func (p *Profile) SetKeyringCalls(set func(service, user, secret string) error, get func(service, user string) (string, error)) {
	kc := p.keyringCalls()
	if set != nil {
		kc.set = set
	}
	if get != nil {
		kc.get = get
	}
	p.keyring = &kc
}

// Allow is the access rule of c's node (see Client.allowFunc).
func (c *Client) Allow() func(kez.PublicKey, blob.Hash) bool { return c.allowFunc() }

// PublishAddrs makes the sigchain's p2p endpoint list addrs.
func (c *Client) PublishAddrs(ctx context.Context, addrs []string) error {
	return c.publishAddrs(ctx, addrs)
}

// CheckNATSURLs is checkNATSURLs.
var CheckNATSURLs = checkNATSURLs
