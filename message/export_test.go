package message

// KeysLen returns how many keys c holds.
func KeysLen(c *Keys) int { return c.len() }
