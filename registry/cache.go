package registry

import (
	"sync"

	"kez.lat/kez"
)

// Cache is a replica's in-memory copy of the projection: handle -> record
// and key -> handle. It is filled by a watch on the projection and by the
// replica's own projector, so look-ups (and auth callouts) never wait on a
// KV round trip.
type Cache struct {
	mu     sync.RWMutex
	byName map[string]kez.HandleRecord
	byKey  map[kez.PublicKey]string
	bySkel map[string]string // skeleton -> local part
	ready  bool
}

func newCache() *Cache {
	return &Cache{byName: map[string]kez.HandleRecord{}, byKey: map[kez.PublicKey]string{}, bySkel: map[string]string{}}
}

func (c *Cache) put(rec kez.HandleRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byName[rec.Handle.Local()] = rec
	c.byKey[rec.Primary] = rec.Handle.Local()
	c.bySkel[rec.Handle.Skeleton()] = rec.Handle.Local()
}

// putFree puts rec unless the cache holds its handle, key or skeleton
// for another registration (a skeleton that two handles of the old fold
// share is not held for another: see sharedBeforeFold), and reports whether the cache holds rec now
// (put, or held already). A record the log holds but the cache disputes
// never replaces the cached holder first: Register refuses it as damage,
// and the projection refuses to write a disputed handle or key
// (look-alikes are not indexed there; the scrub finds two claims to one
// skeleton in the log).
func (c *Cache) putFree(rec kez.HandleRecord) bool {
	local := rec.Handle.Local()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holdsOtherLocked(rec) {
		return false
	}
	c.byName[local] = rec
	c.byKey[rec.Primary] = local
	c.bySkel[rec.Handle.Skeleton()] = local
	return true
}

// holdsOther reports whether the cache holds rec's handle, key or
// skeleton for another registration.
func (c *Cache) holdsOther(rec kez.HandleRecord) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.holdsOtherLocked(rec)
}

func (c *Cache) holdsOtherLocked(rec kez.HandleRecord) bool {
	local := rec.Handle.Local()
	if held, ok := c.byName[local]; ok && (held.Handle != rec.Handle || !held.Primary.Equal(rec.Primary)) {
		return true
	}
	if held, ok := c.byKey[rec.Primary]; ok && held != local {
		return true
	}
	held, ok := c.bySkel[rec.Handle.Skeleton()]
	return ok && held != local && !sharedBeforeFold(held, local)
}

func (c *Cache) setReady() {
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
}

// Ready reports whether the cache has loaded the whole projection once.
func (c *Cache) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}

// Lookup returns the record of a local part.
func (c *Cache) Lookup(local string) (kez.HandleRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rec, ok := c.byName[local]
	return rec, ok
}

// LookupKey returns the record of the handle bound to key.
func (c *Cache) LookupKey(key kez.PublicKey) (kez.HandleRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rec, ok := c.byName[c.byKey[key]]
	return rec, ok
}

// lookupSkeleton returns the record of the handle holding skel.
func (c *Cache) lookupSkeleton(skel string) (kez.HandleRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	local, ok := c.bySkel[skel]
	if !ok {
		return kez.HandleRecord{}, false
	}
	rec, ok := c.byName[local]
	return rec, ok
}

// records returns a copy of every record held.
func (c *Cache) records() []kez.HandleRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]kez.HandleRecord, 0, len(c.byName))
	for _, rec := range c.byName {
		out = append(out, rec)
	}
	return out
}

// Len returns the number of handles cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byName)
}
