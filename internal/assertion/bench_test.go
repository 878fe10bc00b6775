package assertion

import (
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

// BenchmarkSign is the cost of one assertion signed for one request: what
// every request costs with the cache off, and a cache miss costs with it
// on.
func BenchmarkSign(b *testing.B) {
	now := time.Now()
	in := newInstance(b, openStore(b), testclock.New(now), func(o *Options) {
		o.CacheTTL = -1
		o.Now, o.Logger = nil, nil
	})
	p := alice(now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.s.Sign(p, "orders", "01JDQ3Z8K4M6R2T9V5X7Y0A1B3"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignCached is the cost of an assertion for a principal and
// route that already have a fresh one: most requests, with the cache on.
// (On the real clock, as in production: one signature in every 2.5
// seconds of it is a miss.)
func BenchmarkSignCached(b *testing.B) {
	now := time.Now()
	in := newInstance(b, openStore(b), testclock.New(now), func(o *Options) { o.Now, o.Logger = nil, nil })
	p := alice(now)
	if _, err := in.s.Sign(p, "orders", ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.s.Sign(p, "orders", "01JDQ3Z8K4M6R2T9V5X7Y0A1B3"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignCachedParallel is BenchmarkSignCached from every core at
// once, for the cost of sharing the cache.
func BenchmarkSignCachedParallel(b *testing.B) {
	now := time.Now()
	in := newInstance(b, openStore(b), testclock.New(now), func(o *Options) { o.Now, o.Logger = nil, nil })
	p := alice(now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := in.s.Sign(p, "orders", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
