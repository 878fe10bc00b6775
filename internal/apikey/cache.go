package apikey

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// cacheShards splits the cache so that concurrent requests rarely wait
// on one lock.
const cacheShards = 16

// mac is the HMAC of a key: what the cache and the store know it by.
type mac = [sha256.Size]byte

// cache remembers, by their HMAC, keys whose secret was found right, with
// the record the store held for them, for ttl. It is bounded: each shard
// holds at most perShard entries and makes room by dropping one, an
// expired one if it finds one among the first few, else one at random.
//
// Forgetting a key bumps gen first; a Verify notes gen before it reads
// the store and caches what it read only if gen has not moved since, so a
// record read before a revocation is never cached after it.
type cache struct {
	ttl      time.Duration
	perShard int
	gen      atomic.Uint64
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[mac]*entry
}

// entry is one verified key. rec is never modified once the entry is
// made; touched (unix microseconds) is when its last use was last
// recorded in the store, or 0.
type entry struct {
	rec     *store.APIKey
	until   time.Time // trusted until then
	touched atomic.Int64
}

func newEntry(rec *store.APIKey, now time.Time, ttl time.Duration) *entry {
	e := &entry{rec: rec, until: now.Add(ttl)}
	if !rec.LastUsedAt.IsZero() {
		e.touched.Store(rec.LastUsedAt.UnixMicro())
	}
	return e
}

func newCache(ttl time.Duration, entries int) *cache {
	c := &cache{ttl: ttl, perShard: max(entries/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[mac]*entry)
	}
	return c
}

func (c *cache) shard(h *mac) *cacheShard {
	// h is an HMAC: any of its bytes is uniformly spread.
	return &c.shards[h[0]%cacheShards]
}

// get returns the entry for h if it is still trusted at now.
func (c *cache) get(h *mac, now time.Time) *entry {
	sh := c.shard(h)
	sh.mu.RLock()
	e := sh.m[*h]
	sh.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// put stores e under h unless a key was forgotten since gen was read.
func (c *cache) put(gen uint64, h *mac, e *entry, now time.Time) {
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

// evictOne drops an expired entry among the first few the map yields, or
// else the first one; map iteration starts at a random place. The caller
// holds sh.mu.
func (sh *cacheShard) evictOne(now time.Time) {
	var victim mac
	found := false
	seen := 0
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

// forget drops every entry of the key with the store id id.
func (c *cache) forget(id string) {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.rec.ID == id {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len counts the entries, stale ones included.
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
