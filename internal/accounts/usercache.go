package accounts

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// userCacheTTL bounds how long Authenticate trusts a user record without
// reading the store again. Disabling a user or resetting their factors
// revokes their sessions, which reaches every instance on its own; the
// cache only delays what else changes in a user record (roles, display
// name) by at most this long on other instances.
const userCacheTTL = 5 * time.Second

// userCacheMax bounds the cache; when full it starts over.
const userCacheMax = 10000

// userCache keeps recently read user records so that checking a session on
// every request does not read the store each time. It is safe for
// concurrent use.
type userCache struct {
	mu sync.Mutex
	m  map[string]cachedUser
}

type cachedUser struct {
	u       store.User
	fetched time.Time
}

// cachedUser returns a copy of user id, from the cache when fresh.
func (s *Service) cachedUser(ctx context.Context, id string) (*store.User, error) {
	return s.users.lookup(id, s.o.Now(), func() (*store.User, error) { return s.o.Store.Users().Get(ctx, id) })
}

// lookup returns a copy of the user cached under key when fresh at now,
// or reads it with fetch and caches it.
func (c *userCache) lookup(key string, now time.Time, fetch func() (*store.User, error)) (*store.User, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < userCacheTTL && !now.Before(e.fetched) {
		u := e.u
		return &u, nil
	}
	u, err := fetch()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= userCacheMax {
		c.m = make(map[string]cachedUser)
	}
	c.m[key] = cachedUser{u: *u, fetched: now}
	c.mu.Unlock()
	return u, nil
}

// forget drops user id from the cache after this instance changed it.
func (c *userCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// userLocks serialise changes to one user's factors within this instance,
// so that two removals racing cannot both pass the check that a required
// second factor remains.
type userLocks [64]sync.Mutex

// lockUser locks the stripe of userID and returns its unlock.
func (s *Service) lockUser(userID string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(userID))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// KeyOwner returns the user that owns an API key, by user name, from a
// short cache: the key's principal takes the user's roles, and a disabled
// or deleted user's keys stop working. A user that does not exist is
// store.ErrNotFound.
func (s *Service) KeyOwner(ctx context.Context, username string) (*store.User, error) {
	return s.users.lookup("name:"+username, s.o.Now(), func() (*store.User, error) {
		return s.o.Store.Users().GetByUsername(ctx, username)
	})
}
