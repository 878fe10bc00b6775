package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/store"
)

func TestCreateLookup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		b := open(t, "alice")
		c := newClock()
		m := newManager(t, b, c, Options{})
		auth := c.Now().Add(-time.Second)
		tok, s, err := m.Create(ctx, "alice", []string{"pwd", "otp"}, auth)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if !wellFormed(tok) {
			t.Fatalf("token %q is not a well-formed token", tok)
		}
		if !s.ExpiresAt.Equal(c.Now().Add(DefaultAbsoluteTimeout)) || !s.AuthTime.Equal(auth) {
			t.Errorf("session expires %v, auth %v; want %v, %v", s.ExpiresAt, s.AuthTime, c.Now().Add(DefaultAbsoluteTimeout), auth)
		}

		got, err := m.Lookup(ctx, tok)
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if got.UserID != "alice" || !slices.Equal(got.Methods, []string{"pwd", "otp"}) ||
			!got.AuthTime.Equal(auth) || !got.ExpiresAt.Equal(s.ExpiresAt) || !got.RevokedAt.IsZero() {
			t.Errorf("Lookup = %+v, want the created session %+v", got, s)
		}

		// Only SHA-256 of the id is a key; the token itself is not.
		raw, err := tokenEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(raw)
		if _, err := b.Get(ctx, h[:]); err != nil {
			t.Errorf("backend has no session under sha256(id): %v", err)
		}
		if _, err := b.Get(ctx, raw); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("backend Get(raw id) = %v, want ErrNotFound: the id must not be a key", err)
		}
		if _, err := b.Get(ctx, []byte(tok)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("backend Get(token) = %v, want ErrNotFound", err)
		}

		tok2, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatalf("second Create: %v", err)
		}
		if tok2 == tok {
			t.Error("two sessions got the same token")
		}
		if _, _, err := m.Create(ctx, "", nil, time.Time{}); err == nil {
			t.Error("Create with an empty user id succeeded")
		}
	})
}

func TestLookupRejectsBadTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		m := newManager(t, open(t, "alice"), newClock(), Options{})
		tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		unknown, _, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		// The last character holds two zero bits; the next letter sets one.
		last := tok[TokenLen-1]
		next := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[base64Index(last)+1]
		for _, tc := range []struct{ name, tok string }{
			{"empty", ""},
			{"short", "abc"},
			{"unknown", unknown},
			{"one short", tok[:TokenLen-1]},
			{"one long", tok + "A"},
			{"padded", tok + "="},
			{"std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok[:TokenLen-2]) + "+A"},
			{"space", " " + tok[1:]},
			{"nul", tok[:10] + "\x00" + tok[11:]},
			{"non-ascii", tok[:41] + "é"},
			{"non-canonical", tok[:TokenLen-1] + string(next)},
			{"oversized", strings.Repeat(tok, 1<<14)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s, err := m.Lookup(ctx, tc.tok)
				if !errors.Is(err, ErrNoSession) || s != nil {
					t.Errorf("Lookup = %v, %v; want nil, ErrNoSession", s, err)
				}
			})
		}
		if _, err := m.Lookup(ctx, tok); err != nil {
			t.Errorf("the valid token stopped working: %v", err)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		for _, ttl := range []time.Duration{-1, time.Hour} {
			t.Run("cache "+ttl.String(), func(t *testing.T) {
				ctx := context.Background()
				c := newClock()
				m := newManager(t, open(t, "alice"), c, Options{CacheTTL: ttl})
				tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				// Used just before the idle timeout, twice: still alive.
				for i := range 2 {
					c.Advance(DefaultIdleTimeout - time.Second)
					if _, err := m.Lookup(ctx, tok); err != nil {
						t.Fatalf("lookup %d after %v idle: %v", i, DefaultIdleTimeout-time.Second, err)
					}
				}
				c.Advance(DefaultIdleTimeout)
				if _, err := m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
					t.Fatalf("after %v idle: %v, want ErrNoSession", DefaultIdleTimeout, err)
				}
			})
		}
	})
}

func TestAbsoluteTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		c := newClock()
		m := newManager(t, open(t, "alice"), c, Options{AbsoluteTimeout: 2 * time.Hour})
		tok, s, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		// Active every 10 minutes, never idle.
		for c.Now().Add(10 * time.Minute).Before(s.ExpiresAt) {
			c.Advance(10 * time.Minute)
			if _, err := m.Lookup(ctx, tok); err != nil {
				t.Fatalf("active session refused at %v: %v", c.Now().Sub(s.CreatedAt), err)
			}
		}
		c.Advance(s.ExpiresAt.Sub(c.Now()))
		if _, err := m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Fatalf("at the absolute expiry: %v, want ErrNoSession", err)
		}
	})
}

func TestTouchThrottle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		for _, ttl := range []time.Duration{-1, time.Hour} {
			t.Run("cache "+ttl.String(), func(t *testing.T) {
				ctx := context.Background()
				c := newClock()
				b := &counting{Backend: open(t, "alice")}
				m := newManager(t, b, c, Options{CacheTTL: ttl})
				tok, s, err := m.Create(ctx, "alice", nil, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				start := s.CreatedAt
				for _, step := range []struct {
					at       time.Duration
					touches  int64
					lastSeen time.Duration
				}{
					{0, 0, 0},
					{30 * time.Second, 0, 0},
					{59 * time.Second, 0, 0},
					{61 * time.Second, 1, 61 * time.Second},
					{90 * time.Second, 1, 61 * time.Second},
					{120 * time.Second, 1, 61 * time.Second},
					{122 * time.Second, 2, 122 * time.Second},
				} {
					c.Advance(start.Add(step.at).Sub(c.Now()))
					got, err := m.Lookup(ctx, tok)
					if err != nil {
						t.Fatalf("at %v: %v", step.at, err)
					}
					if n := b.touches.Load(); n != step.touches {
						t.Errorf("at %v: %d touches, want %d", step.at, n, step.touches)
					}
					if want := start.Add(step.lastSeen); !got.LastSeen.Equal(want) {
						t.Errorf("at %v: LastSeen %v, want %v", step.at, got.LastSeen, want)
					}
				}
				stored, err := b.Get(ctx, s.IDHash)
				if err != nil {
					t.Fatal(err)
				}
				if want := start.Add(122 * time.Second); !stored.LastSeen.Equal(want) {
					t.Errorf("stored LastSeen %v, want %v", stored.LastSeen, want)
				}
			})
		}
	})
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	t.Run("ttl", func(t *testing.T) {
		c := newClock()
		b := &counting{Backend: openStore(t, "alice").Sessions()}
		m := newManager(t, b, c, Options{})
		tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			advance time.Duration
			gets    int64
		}{
			{0, 1},
			{0, 1},
			{DefaultCacheTTL - time.Millisecond, 1},
			{time.Millisecond, 2},
			{time.Millisecond, 2},
		} {
			c.Advance(step.advance)
			if _, err := m.Lookup(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if n := b.gets.Load(); n != step.gets {
				t.Errorf("after +%v: %d backend reads, want %d", step.advance, n, step.gets)
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		b := &counting{Backend: openStore(t, "alice").Sessions()}
		m := newManager(t, b, newClock(), Options{CacheTTL: -1})
		tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := m.Lookup(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if n := b.gets.Load(); n != 3 {
			t.Errorf("%d backend reads for 3 lookups without a cache, want 3", n)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		m := newManager(t, openStore(t, "alice").Sessions(), newClock(), Options{CacheEntries: 32})
		var toks []string
		for range 100 {
			tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok)
		}
		for range 2 {
			for _, tok := range toks {
				if _, err := m.Lookup(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n := m.cache.len(); n > 32 || n == 0 {
			t.Errorf("cache holds %d entries, want 1..32", n)
		}
	})
	t.Run("returns copies", func(t *testing.T) {
		m := newManager(t, openStore(t, "alice").Sessions(), newClock(), Options{})
		tok, _, err := m.Create(ctx, "alice", []string{"pwd"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Lookup(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		s.Methods[0] = "webauthn"
		s.UserID = "mallory"
		s, err = m.Lookup(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if s.UserID != "alice" || s.Methods[0] != "pwd" {
			t.Errorf("changing a returned session changed the cache: %+v", s)
		}
	})
}

func TestRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		m := newManager(t, open(t, "alice"), newClock(), Options{CacheTTL: time.Hour})
		tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range []string{tok, other} {
			if _, err := m.Lookup(ctx, tk); err != nil { // now cached
				t.Fatal(err)
			}
		}
		if err := m.Revoke(ctx, tok); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if _, err := m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("revoked session: %v, want ErrNoSession at once", err)
		}
		if _, err := m.Lookup(ctx, other); err != nil {
			t.Errorf("the user's other session was refused: %v", err)
		}
		unknown, _, _ := newToken()
		for _, tk := range []string{tok, unknown, "garbage", ""} {
			if err := m.Revoke(ctx, tk); err != nil {
				t.Errorf("Revoke(%.8q…) = %v, want nil", tk, err)
			}
		}
	})
}

func TestRevokeUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		m := newManager(t, open(t, "alice", "bob"), newClock(), Options{CacheTTL: time.Hour})
		var alice []string
		for range 3 {
			tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			alice = append(alice, tok)
		}
		bob, bobSession, err := m.Create(ctx, "bob", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range append(slices.Clone(alice), bob) {
			if _, err := m.Lookup(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		n, err := m.RevokeUser(ctx, "alice")
		if err != nil || n != 3 {
			t.Fatalf("RevokeUser = %d, %v; want 3, nil", n, err)
		}
		for i, tok := range alice {
			if _, err := m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
				t.Errorf("alice's session %d: %v, want ErrNoSession", i, err)
			}
		}
		if _, err := m.Lookup(ctx, bob); err != nil {
			t.Errorf("bob's session: %v", err)
		}
		if l, err := m.List(ctx, "alice"); err != nil || len(l) != 0 {
			t.Errorf("List(alice) = %d sessions, %v; want none", len(l), err)
		}
		l, err := m.List(ctx, "bob")
		if err != nil || len(l) != 1 || string(l[0].IDHash) != string(bobSession.IDHash) {
			t.Errorf("List(bob) = %v, %v; want bob's one session", l, err)
		}
		if n, err := m.RevokeUser(ctx, "alice"); err != nil || n != 0 {
			t.Errorf("second RevokeUser = %d, %v; want 0, nil", n, err)
		}
	})
}

func TestRotate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		c := newClock()
		m := newManager(t, open(t, "alice"), c, Options{CacheTTL: time.Hour})
		old, first, err := m.Create(ctx, "alice", []string{"pwd"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lookup(ctx, old); err != nil { // cached
			t.Fatal(err)
		}
		c.Advance(10 * time.Minute)

		// Step-up: a new authentication restarts the absolute timeout.
		stepped, s, err := m.Rotate(ctx, old, []string{"pwd", "otp"}, c.Now())
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if stepped == old || string(s.IDHash) == string(first.IDHash) {
			t.Fatal("Rotate kept the session id")
		}
		if _, err := m.Lookup(ctx, old); !errors.Is(err, ErrNoSession) {
			t.Errorf("old token after Rotate: %v, want ErrNoSession", err)
		}
		got, err := m.Lookup(ctx, stepped)
		if err != nil {
			t.Fatalf("new token: %v", err)
		}
		if !slices.Equal(got.Methods, []string{"pwd", "otp"}) || !got.AuthTime.Equal(c.Now()) ||
			!got.ExpiresAt.Equal(c.Now().Add(DefaultAbsoluteTimeout)) || got.UserID != "alice" {
			t.Errorf("rotated session = %+v", got)
		}

		// A role change: no new authentication, nothing extended.
		c.Advance(10 * time.Minute)
		changed, s2, err := m.Rotate(ctx, stepped, nil, time.Time{})
		if err != nil {
			t.Fatalf("Rotate without authentication: %v", err)
		}
		if !s2.ExpiresAt.Equal(got.ExpiresAt) || !s2.AuthTime.Equal(got.AuthTime) || !slices.Equal(s2.Methods, got.Methods) {
			t.Errorf("rotation without authentication changed expiry, auth time or methods: %+v", s2)
		}
		if _, err := m.Lookup(ctx, stepped); !errors.Is(err, ErrNoSession) {
			t.Errorf("rotated-away token: %v, want ErrNoSession", err)
		}
		if _, err := m.Lookup(ctx, changed); err != nil {
			t.Errorf("newest token: %v", err)
		}

		for _, tk := range []string{old, stepped, "garbage"} {
			if _, _, err := m.Rotate(ctx, tk, nil, time.Time{}); !errors.Is(err, ErrNoSession) {
				t.Errorf("Rotate of a dead token: %v, want ErrNoSession", err)
			}
		}
	})
}

func TestListAndDeleteExpired(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, ...string) Backend) {
		ctx := context.Background()
		c := newClock()
		m := newManager(t, open(t, "alice"), c, Options{IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour})
		var made []*store.Session
		for range 3 {
			_, s, err := m.Create(ctx, "alice", []string{"pwd"}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, s)
			c.Advance(time.Second)
		}
		l, err := m.List(ctx, "alice")
		if err != nil || len(l) != 3 {
			t.Fatalf("List = %d, %v; want 3", len(l), err)
		}
		for i := range l {
			if string(l[i].IDHash) != string(made[i].IDHash) || !slices.Equal(l[i].Methods, []string{"pwd"}) {
				t.Errorf("List[%d] is not the session made %dth", i, i)
			}
		}
		// Made at +0s, +1s, +2s; now +1h1.5s: the first two are expired.
		c.Advance(time.Hour - 1500*time.Millisecond)
		n, err := m.DeleteExpired(ctx)
		if err != nil || n != 2 {
			t.Errorf("DeleteExpired = %d, %v; want 2", n, err)
		}
		if l, err := m.List(ctx, "alice"); err != nil || len(l) != 1 || string(l[0].IDHash) != string(made[2].IDHash) {
			t.Errorf("List after DeleteExpired = %d, %v; want the last one", len(l), err)
		}
	})
}

// With the SQL store there is no revocation feed: another instance may
// accept a revoked session for at most CacheTTL.
func TestSQLStoreCrossInstanceBound(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, "alice")
	c := newClock()
	m1 := newManager(t, st.Sessions(), c, Options{})
	m2 := newManager(t, st.Sessions(), c, Options{})
	tok, _, err := m1.Create(ctx, "alice", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Lookup(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := m1.Revoke(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Lookup(ctx, tok); err != nil {
		t.Errorf("within CacheTTL the other instance's cache answered %v; the documented bound says it may still accept", err)
	}
	c.Advance(DefaultCacheTTL)
	if _, err := m2.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("after CacheTTL the other instance still accepts: %v", err)
	}
}

func TestConcurrentLookupAndRevoke(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := newManager(t, openStore(t, "alice").Sessions(), c, Options{CacheTTL: time.Hour})
	var toks []string
	for range 8 {
		tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				m.Lookup(ctx, toks[(g+i)%len(toks)])
				if i%50 == 0 {
					c.Advance(TouchInterval)
				}
			}
		})
	}
	wg.Go(func() {
		for _, tok := range toks[:4] {
			if err := m.Revoke(ctx, tok); err != nil {
				t.Errorf("Revoke: %v", err)
			}
		}
	})
	wg.Wait()
	for i, tok := range toks {
		_, err := m.Lookup(ctx, tok)
		if revoked := i < 4; revoked != errors.Is(err, ErrNoSession) {
			t.Errorf("token %d (revoked %v): %v", i, revoked, err)
		}
	}
}

func TestNewOptions(t *testing.T) {
	b := openStore(t).Sessions()
	for _, tc := range []struct {
		name string
		b    Backend
		o    Options
		ok   bool
	}{
		{"defaults", b, Options{}, true},
		{"no backend", nil, Options{}, false},
		{"negative idle", b, Options{IdleTimeout: -time.Second}, false},
		{"negative absolute", b, Options{AbsoluteTimeout: -time.Second}, false},
		{"idle beyond absolute", b, Options{IdleTimeout: 2 * time.Hour, AbsoluteTimeout: time.Hour}, false},
		{"negative cache size", b, Options{CacheEntries: -1}, false},
		{"cache disabled", b, Options{CacheTTL: -1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.b, tc.o)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok %v", err, tc.ok)
			}
			if m != nil {
				m.Close()
			}
		})
	}
}
