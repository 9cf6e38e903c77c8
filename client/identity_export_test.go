package client

import "kez.lat/kez/message"

// MessageIdentity returns c's message identity, nil if none is held.
func (c *Client) MessageIdentity() *message.Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}
