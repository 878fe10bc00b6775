package session

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// benchLookup measures Lookup of one live session; the clock stands still,
// so nothing expires and nothing is touched.
func benchLookup(b *testing.B, backend Backend, o Options) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	o.Now = func() time.Time { return now }
	m, err := New(backend, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	if _, ok := backend.(revocationFeed); ok {
		waitFeed(b, m)
	}
	tok, _, err := m.Create(ctx, "alice", []string{"pwd"}, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Lookup(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupCached is the per-request cost with the session cached.
func BenchmarkLookupCached(b *testing.B) {
	benchLookup(b, openStore(b, "alice").Sessions(), Options{})
}

// BenchmarkLookupCachedParallel is the same from every core at once.
func BenchmarkLookupCachedParallel(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	m, err := New(openStore(b, "alice").Sessions(), Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Lookup(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLookupRedis is one round trip (HGETALL) per Lookup.
func BenchmarkLookupRedis(b *testing.B) {
	r, _, _ := newTestRedis(b)
	benchLookup(b, r, Options{CacheTTL: -1})
}

// BenchmarkLookupStore reads SQLite on every Lookup.
func BenchmarkLookupStore(b *testing.B) {
	benchLookup(b, openStore(b, "alice").Sessions(), Options{CacheTTL: -1})
}

func BenchmarkTokenFromRequest(b *testing.B) {
	tok, _, _ := newToken()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "theme=dark; lang=en; "+CookieName+"="+tok+"; _ga=GA1.2.3.4")
	b.ReportAllocs()
	for b.Loop() {
		if TokenFromRequest(r) == "" {
			b.Fatal("no token")
		}
	}
}
