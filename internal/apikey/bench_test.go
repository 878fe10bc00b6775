package apikey

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// benchVerify measures Verify of key as setup makes it, on SQLite, with
// a clock that stands still (nothing expires, last use is written once).
func benchVerify(b *testing.B, o Options, setup func(b *testing.B, s *Service) (key string, wantOK bool)) {
	st, _ := openSQLite(b)
	now := time.Now()
	o.Now = func() time.Time { return now }
	s := newService(b, st, o)
	key, ok := setup(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(ctx, key); (err == nil) != ok {
			b.Fatalf("Verify: %v", err)
		}
	}
}

func createKey(b *testing.B, s *Service) (string, bool) {
	key, _, err := s.Create(context.Background(), "bench", "service", []string{"read"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	return key, true
}

// BenchmarkVerifyCached is the per-request cost of a key in the cache:
// parse, HMAC, cache lookup, clock checks, a copy of the record.
func BenchmarkVerifyCached(b *testing.B) {
	benchVerify(b, Options{}, createKey)
}

// BenchmarkVerifyCachedParallel is the same from every core at once.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	st, _ := openSQLite(b)
	now := time.Now()
	s := newService(b, st, Options{Now: func() time.Time { return now }})
	key, _ := createKey(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Verify(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyUncached reads SQLite on every call.
func BenchmarkVerifyUncached(b *testing.B) {
	benchVerify(b, Options{CacheTTL: -1}, createKey)
}

// BenchmarkVerifyUnknown is a well-formed key whose id is not stored:
// the HMAC and a store read, like a wrong secret.
func BenchmarkVerifyUnknown(b *testing.B) {
	benchVerify(b, Options{}, func(b *testing.B, s *Service) (string, bool) {
		key, _, err := newKey()
		if err != nil {
			b.Fatal(err)
		}
		return key, false
	})
}

// BenchmarkVerifyWrongSecret is a stored id with a wrong secret.
func BenchmarkVerifyWrongSecret(b *testing.B) {
	benchVerify(b, Options{}, func(b *testing.B, s *Service) (string, bool) {
		key, _ := createKey(b, s)
		return withChecksum(key[:secretStart] + "0123456789012345678901234567890123456789012"), false
	})
}

// BenchmarkVerifyMalformed is a key refused by its checksum alone.
func BenchmarkVerifyMalformed(b *testing.B) {
	benchVerify(b, Options{}, func(b *testing.B, s *Service) (string, bool) {
		key, _ := createKey(b, s)
		return key[:checkStart] + "zzzzzz", false
	})
}

func BenchmarkFromRequest(b *testing.B) {
	key, _, _ := newKey()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	b.ReportAllocs()
	for b.Loop() {
		if FromRequest(r) != key {
			b.Fatal("no key")
		}
	}
}
