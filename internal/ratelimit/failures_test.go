package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/testclock"
)

// accountPolicy is the default sign-in policy: back-off of 1s, 2s, 4s, 8s,
// then a 15-minute lock at the fifth failure within 15 minutes.
var accountPolicy = FailurePolicy{Name: "acct", MaxFailures: 5, Window: 15 * time.Minute, LockFor: 15 * time.Minute, BaseDelay: time.Second}

// failureCases are the FailureStores the shared suite runs against: each
// opens stores sharing their counts, as gateway instances do.
var failureCases = []struct {
	name string
	open func(t *testing.T, clk *testclock.Clock, instances int) []FailureStore
}{
	{"memory", func(t *testing.T, clk *testclock.Clock, instances int) []FailureStore {
		m := NewMemoryFailures(100, clk.Now)
		out := make([]FailureStore, instances)
		for i := range out {
			out[i] = m
		}
		return out
	}},
	{"redis", func(t *testing.T, clk *testclock.Clock, instances int) []FailureStore {
		prefix := redisPrefix(t)
		out := make([]FailureStore, instances)
		for i := range out {
			r := NewRedisFailures(RedisFailuresOptions{Client: newRedisClient(t, nil), Prefix: prefix, Logger: testLogger(t, nil)})
			r.now = clk.Now
			out[i] = r
		}
		return out
	}},
}

func mustLock(t *testing.T, s FailureStore, p FailurePolicy, key string) Lock {
	t.Helper()
	l, err := s.Check(context.Background(), p, key)
	if err != nil {
		t.Fatalf("Check(%q): %v", key, err)
	}
	return l
}

func mustFail(t *testing.T, s FailureStore, p FailurePolicy, key string) bool {
	t.Helper()
	locked, err := s.Fail(context.Background(), p, key)
	if err != nil {
		t.Fatalf("Fail(%q): %v", key, err)
	}
	return locked
}

func TestFailuresBackoffAndLock(t *testing.T) {
	for _, tc := range failureCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			// Two instances: each failure is counted on the other one too.
			ss := tc.open(t, clk, 2)
			if l := mustLock(t, ss[0], accountPolicy, "alice"); !l.Allowed() {
				t.Fatalf("fresh key not allowed: %+v", l)
			}
			waits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
			for i, want := range waits {
				if mustFail(t, ss[i%2], accountPolicy, "alice") {
					t.Fatalf("failure %d locked the account", i+1)
				}
				if l := mustLock(t, ss[(i+1)%2], accountPolicy, "alice"); l.Wait != want || l.Locked {
					t.Fatalf("after failure %d: %+v, want a wait of %v", i+1, l, want)
				}
				clk.Advance(want)
				if l := mustLock(t, ss[0], accountPolicy, "alice"); !l.Allowed() {
					t.Fatalf("after waiting %v: %+v", want, l)
				}
			}
			if !mustFail(t, ss[1], accountPolicy, "alice") {
				t.Fatal("the fifth failure did not lock the account")
			}
			if l := mustLock(t, ss[0], accountPolicy, "alice"); !l.Locked || l.Wait != 15*time.Minute {
				t.Fatalf("locked: %+v", l)
			}
			if mustFail(t, ss[0], accountPolicy, "alice") {
				t.Error("a failure while locked reported a new lock")
			}
			clk.Advance(15*time.Minute + time.Second)
			if l := mustLock(t, ss[0], accountPolicy, "alice"); !l.Allowed() {
				t.Fatalf("after the lock: %+v", l)
			}
			// After the lock the count starts again.
			mustFail(t, ss[0], accountPolicy, "alice")
			if l := mustLock(t, ss[1], accountPolicy, "alice"); l.Locked || l.Wait != time.Second {
				t.Fatalf("first failure after a lock: %+v", l)
			}
			if l := mustLock(t, ss[0], accountPolicy, "bob"); !l.Allowed() {
				t.Error("another key is affected")
			}
			other := accountPolicy
			other.Name = "addr"
			if l := mustLock(t, ss[0], other, "alice"); !l.Allowed() {
				t.Error("another policy's count for the same key is affected")
			}
		})
	}
}

func TestFailuresWindowForgets(t *testing.T) {
	p := FailurePolicy{Name: "w", MaxFailures: 3, Window: time.Minute, LockFor: time.Hour}
	for _, tc := range failureCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			s := tc.open(t, clk, 1)[0]
			mustFail(t, s, p, "k")
			mustFail(t, s, p, "k")
			clk.Advance(2 * time.Minute)
			if mustFail(t, s, p, "k") {
				t.Fatal("failures older than the window counted")
			}
			mustFail(t, s, p, "k")
			if !mustFail(t, s, p, "k") {
				t.Fatal("three failures in the window did not lock")
			}
		})
	}
}

func TestFailuresResetForgives(t *testing.T) {
	for _, tc := range failureCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			ss := tc.open(t, clk, 2)
			for range 4 {
				mustFail(t, ss[0], accountPolicy, "k")
				clk.Advance(time.Minute)
			}
			if err := ss[1].Reset(context.Background(), accountPolicy, "k"); err != nil {
				t.Fatal(err)
			}
			if l := mustLock(t, ss[0], accountPolicy, "k"); !l.Allowed() {
				t.Fatalf("after a reset: %+v", l)
			}
			if mustFail(t, ss[0], accountPolicy, "k") {
				t.Fatal("a reset did not forget the count")
			}
		})
	}
}

// TestFailuresAttemptCountsFirst shows why Attempt exists: a client that
// sends many guesses at once gets one through, where Check-then-Fail would
// let every guess through before the first failure was counted.
func TestFailuresAttemptCountsFirst(t *testing.T) {
	for _, tc := range failureCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			ss := tc.open(t, clk, 2)
			var allowed atomic.Int32
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					l, _, err := ss[i%2].Attempt(context.Background(), accountPolicy, "k")
					if err != nil {
						t.Error(err)
					}
					if l.Allowed() {
						allowed.Add(1)
					}
				})
			}
			wg.Wait()
			if n := allowed.Load(); n != 1 {
				t.Fatalf("%d of 20 simultaneous attempts allowed, want 1 (the back-off holds the rest)", n)
			}
			// Attempts that succeed are forgiven; the fifth allowed
			// attempt that fails locks.
			p := FailurePolicy{Name: "nobackoff", MaxFailures: 3, Window: time.Hour, LockFor: time.Hour}
			for i := range 3 {
				l, lockedNow, err := ss[0].Attempt(context.Background(), p, "k")
				if err != nil || !l.Allowed() {
					t.Fatalf("attempt %d: %+v, %v", i+1, l, err)
				}
				if lockedNow != (i == 2) {
					t.Fatalf("attempt %d: lockedNow = %v", i+1, lockedNow)
				}
			}
			l, lockedNow, _ := ss[1].Attempt(context.Background(), p, "k")
			if !l.Locked || lockedNow {
				t.Fatalf("attempt after the lock: %+v, lockedNow %v", l, lockedNow)
			}
		})
	}
}

func TestMemoryFailuresBounded(t *testing.T) {
	clk := testclock.New(start)
	m := NewMemoryFailures(1000, clk.Now)
	ctx := context.Background()
	for i := range 100_000 {
		m.Fail(ctx, accountPolicy, fmt.Sprint("k", i))
	}
	if n := m.Len(); n > 1000 {
		t.Fatalf("%d keys kept, bound is 1000", n)
	}
}

// TestRedisFailuresDown: with Redis unreachable, FailClosed refuses (an
// error wrapping ErrUnavailable) and FailOpen counts locally, marking the
// answer degraded; either logs once per outage.
func TestRedisFailuresDown(t *testing.T) {
	for _, mode := range []FailureMode{FailClosed, FailOpen} {
		t.Run(mode.String(), func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
			t.Cleanup(func() { c.Close() })
			var logs bytes.Buffer
			r := NewRedisFailures(RedisFailuresOptions{Client: c, FailureMode: mode, Logger: testLogger(t, &logs)})
			ctx := context.Background()
			for i := range 6 {
				l, lockedNow, err := r.Attempt(ctx, FailurePolicy{Name: "x", MaxFailures: 5, Window: time.Hour, LockFor: time.Hour}, "k")
				switch mode {
				case FailClosed:
					if !errors.Is(err, ErrUnavailable) {
						t.Fatalf("attempt %d: err = %v, want ErrUnavailable", i+1, err)
					}
				case FailOpen:
					if err != nil || !l.Degraded {
						t.Fatalf("attempt %d: %+v, %v", i+1, l, err)
					}
					if i < 5 != l.Allowed() || lockedNow != (i == 4) {
						t.Fatalf("attempt %d: %+v, lockedNow %v", i+1, l, lockedNow)
					}
				}
			}
			if n := strings.Count(logs.String(), "redis does not answer"); n != 1 {
				t.Fatalf("%d outage lines, want 1:\n%s", n, logs.String())
			}
		})
	}
}

func TestFailurePolicyValidate(t *testing.T) {
	if err := accountPolicy.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := FailurePolicy{Name: "a b", MaxFailures: 0, Window: 0, LockFor: -1, BaseDelay: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("a bad policy validated")
	}
	for _, want := range []string{"name", "max failures", "window", "lock", "base delay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
