package jwtauth

import (
	"sync"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// cacheEntry is a verified token: its Principal, valid until exp while key
// is still one of the issuer's keys.
type cacheEntry struct {
	p   *authn.Principal
	exp time.Time
	is  *issuer
	key *key
}

// tokenCache holds verified tokens by the SHA-256 of the token, at most
// max of them. A nil *tokenCache caches nothing. It is safe for
// concurrent use.
type tokenCache struct {
	mu  sync.RWMutex
	max int
	m   map[[32]byte]cacheEntry
}

// newTokenCache returns a cache of at most max entries, or nil when max is
// negative.
func newTokenCache(max int) *tokenCache {
	if max < 0 {
		return nil
	}
	return &tokenCache{max: max, m: make(map[[32]byte]cacheEntry)}
}

// get returns the Principal of the token with hash sum when it is cached,
// not expired at now, and its key is still current; nil otherwise.
func (c *tokenCache) get(sum [32]byte, now time.Time) *authn.Principal {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[sum]
	c.mu.RUnlock()
	if !ok {
		return nil
	}
	if now.Before(e.exp) && e.is.keys.set.Load().has(e.key) {
		return e.p
	}
	c.mu.Lock()
	if cur, ok := c.m[sum]; ok && cur.p == e.p {
		delete(c.m, sum)
	}
	c.mu.Unlock()
	return nil
}

// put caches e under sum. When the cache is full it first drops expired
// entries and, if that frees too little, arbitrary ones, down to 7/8 of
// max, so that the work is spread over many puts.
func (c *tokenCache) put(sum [32]byte, e cacheEntry, now time.Time) {
	if c == nil || c.max == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[sum]; !ok && len(c.m) >= c.max {
		target := c.max - max(c.max/8, 1)
		for s, old := range c.m {
			if !now.Before(old.exp) {
				delete(c.m, s)
			}
		}
		for s := range c.m {
			if len(c.m) <= target {
				break
			}
			delete(c.m, s)
		}
	}
	c.m[sum] = e
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
