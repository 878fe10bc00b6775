package session

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// cacheShards splits the cache so concurrent lookups rarely meet on one
// lock.
const cacheShards = 16

// cache holds recently looked-up sessions for a short time. It is bounded:
// each shard holds at most perShard entries and evicts one (an expired one
// if it finds it quickly, otherwise one at random) to make room.
//
// A purge bumps gen before removing entries; a lookup remembers gen before
// asking the backend and stores its answer only if gen has not moved, so an
// answer fetched before a revocation is never cached after it.
type cache struct {
	ttl      time.Duration
	perShard int
	gen      atomic.Uint64
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*cacheEntry
}

// cacheEntry is one cached session. s is never modified once stored;
// lastSeen (unix microseconds) moves forward as the Manager touches it.
type cacheEntry struct {
	s        *store.Session
	until    time.Time // trusted until then
	lastSeen atomic.Int64
	touching atomic.Bool // a touch of this session is in flight
}

func newCache(ttl time.Duration, maxEntries int) *cache {
	per := max(maxEntries/cacheShards, 1)
	c := &cache{ttl: ttl, perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cacheEntry)
	}
	return c
}

func (c *cache) shard(h *[sha256.Size]byte) *cacheShard {
	// The key is a SHA-256: its first byte is as good as any hash.
	return &c.shards[h[0]%cacheShards]
}

// get returns the entry for h if it is still to be trusted at now.
func (c *cache) get(h *[sha256.Size]byte, now time.Time) *cacheEntry {
	sh := c.shard(h)
	sh.mu.RLock()
	e := sh.m[*h]
	sh.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// put stores s, fetched while the generation was gen, unless a purge has
// happened since.
func (c *cache) put(gen uint64, h *[sha256.Size]byte, s *store.Session, now time.Time) {
	e := &cacheEntry{s: s, until: now.Add(c.ttl)}
	e.lastSeen.Store(lastSeenOf(s).UnixMicro())
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if _, ok := sh.m[*h]; !ok && len(sh.m) >= c.perShard {
		sh.evictOne(now)
	}
	sh.m[*h] = e
}

// evictOne removes an expired entry among the first few the map yields,
// or else the first one. Map iteration starts at a random place, so this is
// random eviction. The caller holds sh.mu.
func (sh *cacheShard) evictOne(now time.Time) {
	var victim [sha256.Size]byte
	found, seen := false, 0
	for k, e := range sh.m {
		if !found {
			victim, found = k, true
		}
		if !now.Before(e.until) {
			victim = k
			break
		}
		if seen++; seen == 8 {
			break
		}
	}
	if found {
		delete(sh.m, victim)
	}
}

// remove forgets one session.
func (c *cache) remove(h *[sha256.Size]byte) {
	c.gen.Add(1)
	sh := c.shard(h)
	sh.mu.Lock()
	delete(sh.m, *h)
	sh.mu.Unlock()
}

// removeUser forgets every session of a user.
func (c *cache) removeUser(userID string) {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.s.UserID == userID {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// clear forgets everything.
func (c *cache) clear() {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len counts the entries, expired ones included (tests).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// lastSeenOf is when the session was last active: LastSeen, or CreatedAt if
// it was never touched.
func lastSeenOf(s *store.Session) time.Time {
	if s.LastSeen.IsZero() {
		return s.CreatedAt
	}
	return s.LastSeen
}
