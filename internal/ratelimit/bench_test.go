package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// benchLimit allows nearly everything, so the benchmarks measure the
// ordinary path: a state found and updated.
var benchLimit = Limit{Name: "bench", Rate: 1_000_000, Period: time.Second, Burst: 1000}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkMemoryTake is one decision for a key already held, with the
// real clock.
func BenchmarkMemoryTake(b *testing.B) {
	m := NewMemory(MemoryOptions{})
	ctx := context.Background()
	m.Take(ctx, "198.51.100.7", benchLimit, 1)
	b.ReportAllocs()
	for b.Loop() {
		m.Take(ctx, "198.51.100.7", benchLimit, 1)
	}
}

// BenchmarkMemoryTakeParallel is decisions from every P at once over 4096
// keys already held.
func BenchmarkMemoryTakeParallel(b *testing.B) {
	m := NewMemory(MemoryOptions{})
	ctx := context.Background()
	keys := benchKeys(4096)
	for _, k := range keys {
		m.Take(ctx, k, benchLimit, 1)
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 997
		for pb.Next() {
			m.Take(ctx, keys[i%len(keys)], benchLimit, 1)
			i++
		}
	})
}

// BenchmarkMemoryTakeNewKeys is a flood of distinct keys into a full
// Memory: every decision inserts a state and some evict.
func BenchmarkMemoryTakeNewKeys(b *testing.B) {
	m := NewMemory(MemoryOptions{MaxKeys: 10_000})
	ctx := context.Background()
	keys := benchKeys(1 << 16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Take(ctx, keys[i&(len(keys)-1)], benchLimit, 1)
		i++
	}
}

// BenchmarkRedisTake is one decision against the test Redis: one round
// trip, reported as cmds/op.
func BenchmarkRedisTake(b *testing.B) {
	c := newRedisClient(b, nil)
	var count countCommands
	c.AddHook(&count)
	r := NewRedis(RedisOptions{Client: c, Prefix: redisPrefix(b)})
	ctx := context.Background()
	if _, err := r.Take(ctx, "198.51.100.7", benchLimit, 1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	before := count.n.Load()
	n := 0
	for b.Loop() {
		if _, err := r.Take(ctx, "198.51.100.7", benchLimit, 1); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(count.n.Load()-before)/float64(n), "cmds/op")
}

// BenchmarkMemoryFailuresFull is a flood of new keys at a full table: each
// failure evicts one count.
func BenchmarkMemoryFailuresFull(b *testing.B) {
	m := NewMemoryFailures(10_000, nil)
	ctx := context.Background()
	p := FailurePolicy{Name: "addr", MaxFailures: 20, Window: 15 * time.Minute, LockFor: 15 * time.Minute}
	for i := range 10_000 {
		m.Fail(ctx, p, fmt.Sprintf("seed-%d", i))
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("new-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Fail(ctx, p, keys[i%len(keys)])
		i++
	}
}

// BenchmarkRedisFailuresAttempt is one counted sign-in attempt in Redis:
// one round trip.
func BenchmarkRedisFailuresAttempt(b *testing.B) {
	r := NewRedisFailures(RedisFailuresOptions{Client: newRedisClient(b, nil), Prefix: redisPrefix(b)})
	ctx := context.Background()
	p := FailurePolicy{Name: "acct", MaxFailures: 1 << 30, Window: time.Hour, LockFor: time.Hour}
	for b.Loop() {
		if _, _, err := r.Attempt(ctx, p, "k"); err != nil {
			b.Fatal(err)
		}
	}
}
