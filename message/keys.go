package message

import (
	"cmp"
	"sync"

	"kez.lat/kez"
)

// Keys is a cache of the key texts [kez.ParsePublicKey] accepted, and
// [Keys.Parse] is [Parse] with it. Checking a key (decompressing the
// point, refusing small order) costs as much as the rest of Parse, and a
// client or a door hears the same keys again and again. The check is a
// pure function of the text, so a cached answer is the same answer; a
// refusal is never cached, so every key that was not accepted before is
// checked in full. Past Max entries (1024 if 0) an arbitrary one makes
// room. The zero value is ready; a Keys is safe for concurrent use.
type Keys struct {
	Max int

	mu   sync.RWMutex
	keys map[string]kez.PublicKey
}

// Parse is [Parse] with the cache.
func (c *Keys) Parse(wire []byte) (Envelope, error) { return parse(wire, c.ParseKey) }

// ParseKey is [kez.ParsePublicKey] with the cache.
func (c *Keys) ParseKey(s string) (kez.PublicKey, error) {
	c.mu.RLock()
	k, ok := c.keys[s]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := kez.ParsePublicKey(s)
	if err != nil {
		return k, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = make(map[string]kez.PublicKey)
	}
	if max := cmp.Or(c.Max, maxCached); len(c.keys) >= max {
		for t := range c.keys {
			delete(c.keys, t)
			break
		}
	}
	c.keys[s] = k
	return k, nil
}

// clear forgets every key.
func (c *Keys) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.keys)
}

// len returns how many keys the cache holds.
func (c *Keys) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
}
