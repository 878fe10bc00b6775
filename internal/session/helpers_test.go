package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/moatgw/moat/internal/testclock"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/store"
)

// clock is a fake clock for Options.Now. It starts at the real time so that
// Redis TTLs derived from it are sensible.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Now().UTC().Truncate(time.Microsecond)) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openStore opens a migrated SQLite store in a temporary directory and
// creates the users named.
func openStore(t testing.TB, users ...string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating store: %v", err)
	}
	for _, u := range users {
		if err := st.Users().Create(ctx, &store.User{ID: u, Username: u}); err != nil {
			t.Fatalf("creating user %s: %v", u, err)
		}
	}
	return st
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

// newRedisClient connects to the test Redis.
func newRedisClient(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatalf("parsing MOAT_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("pinging test redis: %v", err)
	}
	return c
}

// redisPrefix returns a fresh key prefix and deletes its keys when the test
// ends.
func redisPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
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

// newTestRedis returns a Redis backend under a fresh prefix.
func newTestRedis(t testing.TB) (*Redis, *redis.Client, string) {
	c := newRedisClient(t)
	prefix := redisPrefix(t, c)
	return NewRedis(c, prefix), c, prefix
}

// backendCase is a backend the Manager suite runs against.
type backendCase struct {
	name string
	// open returns a backend in which the users named exist.
	open func(t *testing.T, users ...string) Backend
}

var backendCases = []backendCase{
	{"sqlite", func(t *testing.T, users ...string) Backend { return openStore(t, users...).Sessions() }},
	{"redis", func(t *testing.T, users ...string) Backend {
		r, _, _ := newTestRedis(t)
		return r
	}},
}

// forEachBackend runs f once per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, open func(t *testing.T, users ...string) Backend)) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) { f(t, bc.open) })
	}
}

// newManager returns a Manager on b with the fake clock c, closed at the
// end of the test. With a Redis backend it waits for the revocation feed.
func newManager(t testing.TB, b Backend, c *clock, o Options) *Manager {
	t.Helper()
	o.Now = c.Now
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	m, err := New(b, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if _, ok := b.(revocationFeed); ok {
		waitFeed(t, m)
	}
	return m
}

// waitFeed waits until m listens for revocations.
func waitFeed(t testing.TB, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !m.cacheLive.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the revocation feed did not come up within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// counting wraps a backend and counts calls. It hides any revocation feed
// of the backend it wraps.
type counting struct {
	Backend
	gets, touches atomic.Int64
}

func (c *counting) Get(ctx context.Context, h []byte) (*store.Session, error) {
	c.gets.Add(1)
	return c.Backend.Get(ctx, h)
}

func (c *counting) Touch(ctx context.Context, h []byte, at time.Time) error {
	c.touches.Add(1)
	return c.Backend.Touch(ctx, h, at)
}
