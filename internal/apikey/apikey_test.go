package apikey

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/store"
)

func TestNewOptions(t *testing.T) {
	st, _ := openSQLite(t)
	pepper := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"complete", Options{Keys: st.APIKeys(), Pepper: pepper}, true},
		{"no cache", Options{Keys: st.APIKeys(), Pepper: pepper, CacheTTL: -1}, true},
		{"no keys", Options{Pepper: pepper}, false},
		{"no pepper", Options{Keys: st.APIKeys()}, false},
		{"short pepper", Options{Keys: st.APIKeys(), Pepper: pepper[:31]}, false},
		{"negative cache size", Options{Keys: st.APIKeys(), Pepper: pepper, CacheEntries: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestCreateVerify(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		s := newService(t, st, Options{Now: c.Now})
		key, rec, err := s.Create(ctx, "deploy bot", "user-1", []string{"deploy", "read"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, Prefix) || len(key) != keyLen || !scannerCheck(key) {
			t.Fatalf("Create returned %q, not a well-formed key", key)
		}
		if rec.Prefix != key[idStart:sepAt] {
			t.Errorf("record prefix %q, want the key's id %q", rec.Prefix, key[idStart:sepAt])
		}

		stored, err := st.APIKeys().GetByPrefix(ctx, rec.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		pepper, _ := st.Secrets().GetOrCreate(ctx, "apikey.pepper", 32)
		m := hmac.New(sha256.New, pepper)
		m.Write([]byte(key))
		if !bytes.Equal(stored.Hash, m.Sum(nil)) {
			t.Error("the store does not hold HMAC-SHA-256(pepper, key)")
		}
		if bytes.Contains(stored.Hash, []byte(key[secretStart:checkStart])) {
			t.Error("the store holds the secret")
		}

		got := mustVerify(t, s, key)
		if got.ID != rec.ID || got.Name != "deploy bot" || got.Owner != "user-1" || !slices.Equal(got.Scopes, []string{"deploy", "read"}) {
			t.Errorf("Verify returned %+v, want the created key %+v", got, rec)
		}
		if !got.ExpiresAt.IsZero() {
			t.Errorf("a key created with ttl 0 expires at %v", got.ExpiresAt)
		}
		got.Scopes[0] = "admin" // the caller's copy: the next Verify must not see it
		if again := mustVerify(t, s, key); again.Scopes[0] != "deploy" {
			t.Errorf("changing a returned record changed the cached one: scopes %v", again.Scopes)
		}

		c.Advance(10 * 365 * 24 * time.Hour)
		mustVerify(t, s, key)

		p := s.Principal(mustVerify(t, s, key))
		want := authn.Principal{Subject: "user-1", Name: "deploy bot", Method: authn.MethodAPIKey, Scopes: []string{"deploy", "read"}, Issuer: authn.LocalIssuer, KeyID: rec.ID}
		if p.Subject != want.Subject || p.Name != want.Name || p.Method != want.Method || p.Issuer != want.Issuer || p.KeyID != want.KeyID || !slices.Equal(p.Scopes, want.Scopes) {
			t.Errorf("Principal = %+v, want %+v", p, want)
		}
	})
}

func TestCreateRefuses(t *testing.T) {
	st, _ := openSQLite(t)
	s := newService(t, st, Options{})
	tests := []struct {
		name   string
		kname  string
		owner  string
		scopes []string
		ttl    time.Duration
	}{
		{"no owner", "ci", "", nil, 0},
		{"negative ttl", "ci", "service", nil, -time.Second},
		{"control character in name", "ci\n[fake log line]", "service", nil, 0},
		{"long name", strings.Repeat("n", 201), "service", nil, 0},
		{"empty scope", "ci", "service", []string{"read", ""}, 0},
		{"scope with a space", "ci", "service", []string{"read write"}, 0},
		{"invalid UTF-8 owner", "ci", "user\xff", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, rec, err := s.Create(context.Background(), tc.kname, tc.owner, tc.scopes, tc.ttl)
			if err == nil || key != "" || rec != nil {
				t.Fatalf("Create = %q, %v, %v; want an error", key, rec, err)
			}
		})
	}
	if keys, _ := s.List(context.Background()); len(keys) != 0 {
		t.Errorf("refused keys were stored: %d", len(keys))
	}
}

func TestVerifyRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		keys := &countingKeys{APIKeys: st.APIKeys()}
		s := newService(t, st, Options{Keys: keys, Now: c.Now})
		good, _, err := s.Create(ctx, "good", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		expiring, _, err := s.Create(ctx, "short", "service", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		revoked, revokedRec, err := s.Create(ctx, "old", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Revoke(ctx, revokedRec.ID); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Hour)

		unknownID := "zzzzzzzz"
		if good[idStart:sepAt] == unknownID {
			unknownID = "yyyyyyyy"
		}
		secret := good[secretStart:checkStart]
		otherSecret := strings.Repeat("A", secretLen)
		tests := []struct {
			name      string
			key       string
			reason    string
			readStore bool
		}{
			{"tampered", good[:secretStart] + flipCase(secret[:1]) + good[secretStart+1:], "checksum", false},
			{"truncated", good[:len(good)-3], "malformed", false},
			{"wrong prefix", "mota_" + good[len(Prefix):], "malformed", false},
			{"wrong checksum", good[:checkStart] + "zzzzzz", "checksum", false},
			{"empty", "", "malformed", false},
			{"a JWT", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "malformed", false},
			{"unknown prefix", withChecksum(Prefix + unknownID + "_" + secret), "unknown", true},
			{"wrong secret", withChecksum(good[:secretStart] + otherSecret), "secret", true},
			{"expired", expiring, "expired", true},
			{"revoked", revoked, "revoked", true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := keys.reads.Load()
				rec, err := s.Verify(ctx, tc.key)
				if rec != nil {
					t.Errorf("Verify returned a record with the refusal")
				}
				wantReason(t, err, tc.reason)
				if strings.Contains(err.Error(), secret) || (len(tc.key) > 20 && strings.Contains(err.Error(), tc.key)) {
					t.Errorf("the error %q repeats the key", err)
				}
				if read := keys.reads.Load() > before; read != tc.readStore {
					t.Errorf("read the store: %v, want %v", read, tc.readStore)
				}
			})
		}
		mustVerify(t, s, good)
	})
}

// flipCase changes the case of a letter, or a digit to a letter.
func flipCase(s string) string {
	switch c := s[0]; {
	case 'a' <= c && c <= 'z':
		return strings.ToUpper(s)
	case 'A' <= c && c <= 'Z':
		return strings.ToLower(s)
	default:
		return "x"
	}
}

func TestExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		s := newService(t, st, Options{Now: c.Now})
		key, rec, err := s.Create(ctx, "ci", "service", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if want := rec.CreatedAt.Add(time.Hour); !rec.ExpiresAt.Equal(want) {
			t.Errorf("expires at %v, want %v", rec.ExpiresAt, want)
		}
		mustVerify(t, s, key) // cached from here on
		c.Advance(time.Hour - time.Microsecond)
		mustVerify(t, s, key)
		c.Advance(time.Microsecond)
		_, err = s.Verify(ctx, key)
		wantReason(t, err, "expired")
	})
}

func TestRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		s := newService(t, st, Options{Now: c.Now, CacheTTL: time.Hour})
		key, rec, err := s.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := s.Create(ctx, "other", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustVerify(t, s, key)
		mustVerify(t, s, other)

		if err := s.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		// Cached for an hour, and yet refused at once on this instance.
		_, err = s.Verify(ctx, key)
		wantReason(t, err, "revoked")
		mustVerify(t, s, other)

		t.Run("again", func(t *testing.T) {
			c.Advance(time.Minute)
			if err := s.Revoke(ctx, rec.ID); err != nil {
				t.Errorf("revoking a revoked key: %v", err)
			}
			keys, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if k.ID == rec.ID && !k.RevokedAt.Equal(c.Now().Add(-time.Minute)) {
					t.Errorf("revoked at %v, want the first revocation %v", k.RevokedAt, c.Now().Add(-time.Minute))
				}
			}
		})
		t.Run("unknown id", func(t *testing.T) {
			if err := s.Revoke(ctx, "no-such-key"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("got %v, want store.ErrNotFound", err)
			}
		})
	})
}

func TestRotate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		s := newService(t, st, Options{Now: c.Now, CacheTTL: time.Hour})
		oldKey, old, err := s.Create(ctx, "deploy", "user-7", []string{"deploy"}, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		mustVerify(t, s, oldKey)
		c.Advance(24 * time.Hour)

		const grace = 10 * time.Minute
		newKey, rec, err := s.Rotate(ctx, old.ID, grace)
		if err != nil {
			t.Fatal(err)
		}
		if newKey == oldKey || rec.ID == old.ID || rec.Prefix == old.Prefix {
			t.Fatal("Rotate returned the old key")
		}
		if rec.Name != old.Name || rec.Owner != old.Owner || !slices.Equal(rec.Scopes, old.Scopes) {
			t.Errorf("rotated key %+v does not carry the old one's name, owner and scopes %+v", rec, old)
		}
		if got := rec.ExpiresAt.Sub(rec.CreatedAt); got != 30*24*time.Hour {
			t.Errorf("rotated key lives %v, want the old key's lifetime %v", got, 30*24*time.Hour)
		}

		steps := []struct {
			name    string
			advance time.Duration
			oldOK   bool
		}{
			{"at rotation", 0, true},
			{"just before the grace ends", grace - time.Microsecond, true},
			{"when the grace ends", time.Microsecond, false},
			{"a day later", 24 * time.Hour, false},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				c.Advance(step.advance)
				_, err := s.Verify(ctx, oldKey)
				if step.oldOK && err != nil {
					t.Errorf("old key refused during the grace period: %v", err)
				}
				if !step.oldOK {
					wantReason(t, err, "revoked")
				}
				mustVerify(t, s, newKey)
			})
		}

		t.Run("a revoked key", func(t *testing.T) {
			if k, _, err := s.Rotate(ctx, old.ID, grace); err == nil || k != "" {
				t.Errorf("rotating a revoked key: %q, %v", k, err)
			}
		})
		t.Run("unknown id", func(t *testing.T) {
			if _, _, err := s.Rotate(ctx, "no-such-key", grace); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("got %v, want store.ErrNotFound", err)
			}
		})
		t.Run("no grace", func(t *testing.T) {
			k, r, err := s.Create(ctx, "ci", "service", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			mustVerify(t, s, k) // cached for an hour
			k2, _, err := s.Rotate(ctx, r.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Verify(ctx, k)
			wantReason(t, err, "revoked")
			mustVerify(t, s, k2)
		})
		t.Run("negative grace", func(t *testing.T) {
			_, r, err := s.Create(ctx, "ci", "service", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Rotate(ctx, r.ID, -time.Second); err == nil {
				t.Error("a negative grace was accepted")
			}
		})
	})
}

// TestRevokeDuringGrace revokes a rotated key before its grace period
// ends. Revoke must either refuse the key from then on or say that it
// could not: never report success while the key still works.
func TestRevokeDuringGrace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		s := newService(t, st, Options{Now: c.Now})
		key, rec, err := s.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Rotate(ctx, rec.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Minute)
		err = s.Revoke(ctx, rec.ID)
		_, verr := s.Verify(ctx, key)
		switch {
		case err == nil:
			wantReason(t, verr, "revoked")
		case verr == nil:
			t.Logf("the store keeps the rotation's revocation time: %v", err)
			if !strings.Contains(err.Error(), "works until") {
				t.Errorf("Revoke's error %q does not say the key still works", err)
			}
		default:
			t.Errorf("Revoke failed (%v) although the key is refused (%v)", err, verr)
		}
	})
}

// TestCacheAcrossInstances has a key revoked on one instance while
// another has it cached: the other refuses it once its CacheTTL is over.
func TestCacheAcrossInstances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		stA, reopen := b.open(t)
		stB := reopen(t)
		c := newClock()
		const ttl = 2 * time.Second
		a := newService(t, stA, Options{Now: c.Now, CacheTTL: ttl})
		keysB := &countingKeys{APIKeys: stB.APIKeys()}
		bsvc := newService(t, stB, Options{Keys: keysB, Now: c.Now, CacheTTL: ttl})

		key, rec, err := a.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustVerify(t, bsvc, key)
		mustVerify(t, bsvc, key)
		if n := keysB.reads.Load(); n != 1 {
			t.Errorf("instance B read the store %d times for two checks within CacheTTL, want 1", n)
		}

		c.Advance(time.Second)
		if err := a.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		_, err = a.Verify(ctx, key)
		wantReason(t, err, "revoked")

		// B checked the key at t0 and trusts it until t0+ttl.
		c.Advance(ttl - time.Second - time.Microsecond)
		if _, err := bsvc.Verify(ctx, key); err != nil {
			t.Errorf("instance B refused the key within its CacheTTL: %v", err)
		}
		c.Advance(time.Microsecond)
		_, err = bsvc.Verify(ctx, key)
		wantReason(t, err, "revoked")
	})
}

func TestTouch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, _ := b.open(t)
		c := newClock()
		keys := &countingKeys{APIKeys: st.APIKeys()}
		s := newService(t, st, Options{Keys: keys, Now: c.Now})
		key, rec, err := s.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		lastUsed := func() time.Time {
			t.Helper()
			k, err := st.APIKeys().GetByPrefix(ctx, rec.Prefix)
			if err != nil {
				t.Fatal(err)
			}
			return k.LastUsedAt
		}
		start := c.Now()
		got := mustVerify(t, s, key)
		if !got.LastUsedAt.Equal(start) || !lastUsed().Equal(start) {
			t.Errorf("after first use: returned %v, stored %v, want %v", got.LastUsedAt, lastUsed(), start)
		}
		for range 5 {
			c.Advance(10 * time.Second)
			mustVerify(t, s, key)
		}
		if n := keys.touches.Load(); n != 1 {
			t.Errorf("%d writes of last use within a minute, want 1", n)
		}
		c.Advance(10 * time.Second)
		mustVerify(t, s, key)
		if want := start.Add(time.Minute); !lastUsed().Equal(want) {
			t.Errorf("a minute later: stored %v, want %v", lastUsed(), want)
		}

		t.Run("failing touch", func(t *testing.T) {
			keys.failTouch.Store(true)
			c.Advance(2 * time.Minute)
			before := keys.touches.Load()
			if _, err := s.Verify(ctx, key); err != nil {
				t.Fatalf("a failed write of last use refused the request: %v", err)
			}
			if keys.touches.Load() == before {
				t.Fatal("the failing touch was not tried")
			}
		})
	})
}

// TestStoreDown closes the store under a Service: Verify must fail, and
// not with ErrInvalid, so that the caller answers 503.
func TestStoreDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, reopen := b.open(t)
		a := newService(t, st, Options{})
		key, _, err := a.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		other := reopen(t)
		s := newService(t, other, Options{CacheTTL: -1})
		mustVerify(t, s, key)
		other.Close()
		rec, err := s.Verify(ctx, key)
		if err == nil || rec != nil {
			t.Fatal("Verify accepted a key with the store closed")
		}
		if errors.Is(err, ErrInvalid) || Reason(err) != "" {
			t.Errorf("got %v (reason %q), want a store error", err, Reason(err))
		}
	})
}

func TestCacheBounded(t *testing.T) {
	ctx := context.Background()
	st, _ := openSQLite(t)
	s := newService(t, st, Options{CacheEntries: cacheShards})
	var keys []string
	for range 100 {
		k, _, err := s.Create(ctx, "ci", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		mustVerify(t, s, k)
	}
	if n := s.cache.len(); n > cacheShards {
		t.Errorf("cache holds %d entries, bound %d", n, cacheShards)
	}
	for _, k := range keys {
		mustVerify(t, s, k)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"store error", errors.New("database is closed"), ""},
		{"bare ErrInvalid", ErrInvalid, ""},
		{"revoked", errRevoked, "revoked"},
		{"wrapped", errors.Join(errors.New("context"), errExpired), "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
