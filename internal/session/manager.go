package session

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// Defaults of Options.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultCacheTTL        = 2 * time.Second
	DefaultCacheEntries    = 10000
)

// TouchInterval is how often, at most, a Lookup records a session's
// activity in the backend. Between two touches LastSeen stands still, so a
// session may reach its idle timeout up to TouchInterval before it has
// really been idle that long (never later).
const TouchInterval = time.Minute

// Options configures a Manager. Zero values select the defaults.
type Options struct {
	// IdleTimeout ends a session that has not been used for this long.
	// Default 30m.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it was created, or
	// after the user last authenticated when it was rotated, however
	// active it is. Default 12h.
	AbsoluteTimeout time.Duration
	// CacheTTL is how long a session read from the backend is trusted
	// without asking again. 0 selects DefaultCacheTTL (2s); a negative
	// value disables the cache, so every Lookup reads the backend.
	//
	// With the SQL store, a session revoked through one instance may
	// still be accepted by another for at most CacheTTL. With Redis,
	// revocations reach every instance's cache within milliseconds over
	// pub/sub; CacheTTL bounds the window only while that subscription is
	// being re-established.
	CacheTTL time.Duration
	// CacheEntries bounds the number of cached sessions. Default 10000.
	CacheEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives operational messages; nil discards them. Tokens are
	// never logged.
	Logger *slog.Logger
}

// Manager creates, checks, rotates and revokes sessions. It is safe for
// concurrent use. Every method that must consult the backend fails closed:
// when the backend cannot answer, it returns an error other than
// ErrNoSession and never a session.
type Manager struct {
	b        Backend
	idle     time.Duration
	absolute time.Duration
	touch    time.Duration
	now      func() time.Time
	log      *slog.Logger
	cache    *cache // nil when disabled

	// cacheLive says whether cached entries may be served. With a backend
	// that publishes revocations it is true only while the subscription is
	// in place; otherwise always.
	cacheLive   atomic.Bool
	feedUps     atomic.Uint64 // times the revocation feed came (back) up
	feedFailing atomic.Bool   // the feed is known to be down (for logging)

	stop     func()
	stopOnce sync.Once
}

// New returns a Manager keeping sessions in b. If b publishes revocations
// (*Redis does), the Manager subscribes to them until Close. With *Redis,
// the Redis key TTLs follow the Manager's IdleTimeout: give each *Redis to
// one Manager, or to Managers with the same options.
func New(b Backend, o Options) (*Manager, error) {
	if b == nil {
		return nil, errors.New("session manager: no backend")
	}
	if o.IdleTimeout < 0 || o.AbsoluteTimeout < 0 || o.CacheEntries < 0 {
		return nil, errors.New("session manager: timeouts and cache size must not be negative")
	}
	m := &Manager{
		b:        b,
		idle:     cmpOr(o.IdleTimeout, DefaultIdleTimeout),
		absolute: cmpOr(o.AbsoluteTimeout, DefaultAbsoluteTimeout),
		now:      o.Now,
		log:      o.Logger,
		stop:     func() {},
	}
	if m.idle > m.absolute {
		return nil, fmt.Errorf("session manager: idle timeout %v is longer than the absolute timeout %v", m.idle, m.absolute)
	}
	// At most one write a minute per session; with a very short idle
	// timeout, often enough that the timeout still means something.
	m.touch = min(TouchInterval, m.idle/4)
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "session")
	if ttl := cmpOr(o.CacheTTL, DefaultCacheTTL); ttl > 0 {
		m.cache = newCache(ttl, cmpOr(o.CacheEntries, DefaultCacheEntries))
	}
	if r, ok := b.(interface{ setIdleTimeout(time.Duration) }); ok {
		r.setIdleTimeout(m.idle)
	}
	if feed, ok := b.(revocationFeed); ok {
		// Until the subscription is confirmed, nothing is served from
		// the cache (see feedUp).
		m.stop = feed.watchRevocations(m)
	} else {
		m.cacheLive.Store(true)
	}
	return m, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Close stops listening for revocations. The Manager must not be used
// afterwards. It does not close the backend.
func (m *Manager) Close() error {
	m.stopOnce.Do(m.stop)
	return nil
}

// nowUTC is the clock at the precision the store keeps.
func (m *Manager) nowUTC() time.Time {
	return m.now().UTC().Truncate(time.Microsecond)
}

// Create starts a session for userID, authenticated with methods (pwd,
// otp, webauthn, recovery, oidc) at authTime (zero, or a time in the
// future, means now). It returns the token for the browser, to be sent with
// SetCookie and never stored, and the session.
func (m *Manager) Create(ctx context.Context, userID string, methods []string, authTime time.Time) (string, *store.Session, error) {
	if userID == "" {
		return "", nil, errors.New("creating session: empty user id")
	}
	now := m.nowUTC()
	return m.create(ctx, userID, methods, authTime, now.Add(m.absolute))
}

func (m *Manager) create(ctx context.Context, userID string, methods []string, authTime, expires time.Time) (string, *store.Session, error) {
	now := m.nowUTC()
	if authTime.IsZero() || authTime.After(now) {
		authTime = now
	}
	tok, h, err := newToken()
	if err != nil {
		return "", nil, err
	}
	s := &store.Session{
		IDHash:    h[:],
		UserID:    userID,
		Methods:   slices.Clone(methods),
		AuthTime:  authTime.UTC().Truncate(time.Microsecond),
		CreatedAt: now,
		LastSeen:  now,
		ExpiresAt: expires,
	}
	if err := m.b.Create(ctx, s); err != nil {
		return "", nil, fmt.Errorf("creating session: %w", err)
	}
	return tok, cloneSession(s), nil
}

// Lookup returns the session a token names, or ErrNoSession when the token
// is malformed or names no session, or an expired or revoked one. Any other
// error means the backend could not answer: refuse the request.
//
// A session read from the backend is cached for CacheTTL; a cached session
// is still checked against the clock on each call. Activity is recorded in
// the backend at most once per TouchInterval per session.
func (m *Manager) Lookup(ctx context.Context, token string) (*store.Session, error) {
	h, ok := parseToken(token)
	if !ok {
		return nil, ErrNoSession
	}
	return m.lookup(ctx, &h, true)
}

func (m *Manager) lookup(ctx context.Context, h *[sha256.Size]byte, useCache bool) (*store.Session, error) {
	now := m.nowUTC()
	useCache = useCache && m.cache != nil && m.cacheLive.Load()
	if useCache {
		if e := m.cache.get(h, now); e != nil {
			switch m.check(e.s, time.UnixMicro(e.lastSeen.Load()), now) {
			case nil:
				return m.touchCached(ctx, h, e, now)
			case errIdle:
				// Another instance may have seen activity since this
				// copy was read: ask the backend before refusing.
			default:
				return nil, ErrNoSession
			}
		}
	}
	var gen uint64
	if useCache {
		gen = m.cache.gen.Load()
	}
	s, err := m.b.Get(ctx, hashSlice(h))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("looking up session: %w", err)
	}
	if subtle.ConstantTimeCompare(s.IDHash, hashSlice(h)) != 1 {
		return nil, errors.New("looking up session: backend returned another session")
	}
	if err := m.check(s, lastSeenOf(s), now); err != nil {
		return nil, ErrNoSession
	}
	if now.Sub(lastSeenOf(s)) >= m.touch {
		if err := m.touchBackend(ctx, h, now); err != nil {
			return nil, err
		}
		s.LastSeen = now
	}
	if useCache {
		m.cache.put(gen, h, s, now)
	}
	return cloneSession(s), nil
}

// errIdle and errGone are check's verdicts; Lookup turns both into
// ErrNoSession.
var (
	errIdle = errors.New("session idle too long")
	errGone = errors.New("session revoked or expired")
)

// check says whether s, last active at lastSeen, is usable at now.
func (m *Manager) check(s *store.Session, lastSeen, now time.Time) error {
	switch {
	case !s.RevokedAt.IsZero(), !now.Before(s.ExpiresAt):
		return errGone
	case !now.Before(lastSeen.Add(m.idle)):
		return errIdle
	}
	return nil
}

// touchCached returns the cached session, first recording activity if
// the last record is older than the touch interval. Of concurrent lookups
// of one session, one writes and the others go on.
func (m *Manager) touchCached(ctx context.Context, h *[sha256.Size]byte, e *cacheEntry, now time.Time) (*store.Session, error) {
	seen := e.lastSeen.Load()
	if now.Sub(time.UnixMicro(seen)) >= m.touch && e.touching.CompareAndSwap(false, true) {
		err := m.touchBackend(ctx, h, now)
		if err == nil {
			e.lastSeen.CompareAndSwap(seen, now.UnixMicro())
		}
		e.touching.Store(false)
		if err != nil {
			m.cache.remove(h)
			return nil, err
		}
		seen = now.UnixMicro()
	}
	s := cloneSession(e.s)
	s.LastSeen = time.UnixMicro(seen).UTC()
	return s, nil
}

func (m *Manager) touchBackend(ctx context.Context, h *[sha256.Size]byte, now time.Time) error {
	err := m.b.Touch(ctx, hashSlice(h), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNoSession
	case err != nil:
		return fmt.Errorf("recording session activity: %w", err)
	}
	return nil
}

// Rotate replaces the session oldToken names with a new one, as at login,
// MFA step-up or a change of roles, so that an id known before the change
// is worthless after it: the old session is revoked first, then the new one
// is created. methods and authTime describe the authentication that led to
// the rotation; nil methods and a zero authTime keep the old session's.
// The new session's absolute timeout restarts only when authTime is later
// than the old session's: rotation without a new authentication does not
// extend a session. It returns ErrNoSession if oldToken names no usable
// session. The check of the old session bypasses the cache.
//
// If revoking succeeds and creating fails, the user is logged out: Rotate
// fails closed.
func (m *Manager) Rotate(ctx context.Context, oldToken string, methods []string, authTime time.Time) (string, *store.Session, error) {
	h, ok := parseToken(oldToken)
	if !ok {
		return "", nil, ErrNoSession
	}
	old, err := m.lookup(ctx, &h, false)
	if err != nil {
		return "", nil, err
	}
	if err := m.revokeHash(ctx, &h); err != nil {
		return "", nil, fmt.Errorf("rotating session: %w", err)
	}
	now := m.nowUTC()
	if methods == nil {
		methods = old.Methods
	}
	switch {
	case authTime.IsZero():
		authTime = old.AuthTime
	case authTime.After(now):
		authTime = now
	}
	expires := old.ExpiresAt
	if authTime.After(old.AuthTime) {
		expires = now.Add(m.absolute)
	}
	tok, s, err := m.create(ctx, old.UserID, methods, authTime, expires)
	if err != nil {
		return "", nil, fmt.Errorf("rotating session: %w", err)
	}
	return tok, s, nil
}

// Revoke ends the session token names, at once on this instance and, with
// Redis, within milliseconds on the others. Revoking a malformed, unknown
// or already revoked token is not an error.
func (m *Manager) Revoke(ctx context.Context, token string) error {
	h, ok := parseToken(token)
	if !ok {
		return nil
	}
	return m.revokeHash(ctx, &h)
}

func (m *Manager) revokeHash(ctx context.Context, h *[sha256.Size]byte) error {
	err := m.b.Revoke(ctx, hashSlice(h), m.nowUTC())
	// The backend is written first, then the cache purged: a lookup that
	// read the session before the write cannot cache it after the purge.
	if m.cache != nil {
		m.cache.remove(h)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoking session: %w", err)
	}
	return nil
}

// RevokeUser ends every session of a user ("log out everywhere") and
// returns how many it ended.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	n, err := m.b.RevokeUser(ctx, userID, m.nowUTC())
	if m.cache != nil {
		m.cache.removeUser(userID)
	}
	if err != nil {
		return 0, fmt.Errorf("revoking sessions of user: %w", err)
	}
	return n, nil
}

// List returns the user's usable sessions (neither revoked nor expired),
// oldest first, for a "where you are logged in" page.
func (m *Manager) List(ctx context.Context, userID string) ([]*store.Session, error) {
	all, err := m.b.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	now := m.nowUTC()
	out := all[:0]
	for _, s := range all {
		if m.check(s, lastSeenOf(s), now) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// DeleteExpired removes sessions past their absolute expiry from the
// backend and returns how many; run it now and then.
func (m *Manager) DeleteExpired(ctx context.Context) (int, error) {
	n, err := m.b.DeleteExpired(ctx, m.nowUTC())
	if err != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", err)
	}
	return n, nil
}

// The revocation feed's reports (revocationWatcher).

func (m *Manager) feedUp() {
	if m.cache != nil {
		m.cache.clear()
	}
	m.cacheLive.Store(true)
	m.feedUps.Add(1)
	if m.feedFailing.Swap(false) {
		m.log.Info("session revocation feed is back")
	} else {
		m.log.Debug("listening for session revocations")
	}
}

func (m *Manager) feedDown(err error) {
	m.cacheLive.Store(false)
	if m.cache != nil {
		m.cache.clear()
	}
	if !m.feedFailing.Swap(true) {
		m.log.Warn("no session revocation feed: sessions are not cached until it is back", "err", err)
	}
}

func (m *Manager) revokedSession(h [sha256.Size]byte) {
	if m.cache != nil {
		m.cache.remove(&h)
	}
}

func (m *Manager) revokedUser(userID string) {
	if m.cache != nil {
		m.cache.removeUser(userID)
	}
}

func (m *Manager) revokedUnknown() {
	if m.cache != nil {
		m.cache.clear()
	}
}

// hashSlice copies h for a backend call, so that h itself (on the stack
// of a cached lookup) never escapes to the heap.
func hashSlice(h *[sha256.Size]byte) []byte {
	c := *h
	return c[:]
}

// cloneSession copies s so callers cannot change what is cached.
func cloneSession(s *store.Session) *store.Session {
	c := *s
	c.IDHash = slices.Clone(s.IDHash)
	c.Methods = slices.Clone(s.Methods)
	return &c
}
