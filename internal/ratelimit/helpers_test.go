package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/testclock"
)

// start is where fake clocks start: a real-looking instant, so that Redis
// values and TTLs derived from it are ordinary numbers.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testLogger(t testing.TB, w io.Writer) *slog.Logger {
	if w == nil {
		w = t.Output()
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// redisURL returns MOAT_TEST_REDIS_URL, skipping the test when it is unset
// (failing it under CI).
func redisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("MOAT_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MOAT_TEST_REDIS_URL is not set under CI")
		}
		t.Skip("MOAT_TEST_REDIS_URL is not set: skipping Redis tests")
	}
	return u
}

// newRedisClient connects to the test Redis; edit may adjust the options.
func newRedisClient(t testing.TB, edit func(*redis.Options)) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatalf("parsing MOAT_TEST_REDIS_URL: %v", err)
	}
	if edit != nil {
		edit(opt)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("pinging test redis: %v", err)
	}
	return c
}

// redisPrefix returns a fresh key prefix and deletes its keys when the test
// ends. It uses its own connection, so a test may close its clients.
func redisPrefix(t testing.TB) string {
	t.Helper()
	c := newRedisClient(t, nil)
	var b [8]byte
	rand.Read(b[:])
	prefix := "moat-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

// newTestRedis returns a Redis store on c under prefix whose script is
// given the fake clock's time instead of reading Redis's.
func newTestRedis(c *redis.Client, prefix string, clk *testclock.Clock, o RedisOptions) *Redis {
	o.Client, o.Prefix = c, prefix
	r := NewRedis(o)
	if clk != nil {
		r.now = clk.Now
	}
	return r
}

// storeCase is a store the shared suites run against.
type storeCase struct {
	name string
	// open returns fresh stores with no state, sharing state with each
	// other, reading clk. Most tests use one; some use two, as two gateway
	// instances.
	open func(t *testing.T, clk *testclock.Clock, instances int) []Store
}

var storeCases = []storeCase{
	{"memory", func(t *testing.T, clk *testclock.Clock, instances int) []Store {
		m := NewMemory(MemoryOptions{Now: clk.Now})
		out := make([]Store, instances)
		for i := range out {
			out[i] = m
		}
		return out
	}},
	{"redis", func(t *testing.T, clk *testclock.Clock, instances int) []Store {
		prefix := redisPrefix(t)
		out := make([]Store, instances)
		for i := range out {
			out[i] = newTestRedis(newRedisClient(t, nil), prefix, clk, RedisOptions{Logger: testLogger(t, nil)})
		}
		return out
	}},
}

// probe reports a key's state without changing it: a cost above Burst is
// refused and leaves the state as it was.
func probe(t *testing.T, s Store, key string, l Limit) Result {
	t.Helper()
	r, err := s.Take(context.Background(), key, l, l.Burst+1)
	if err != nil {
		t.Fatalf("probing %q: %v", key, err)
	}
	if r.Allowed {
		t.Fatalf("probing %q: a cost above the burst was allowed", key)
	}
	return r
}
