package lockout

import (
	"fmt"
	"github.com/moatgw/moat/internal/testclock"
	"testing"
	"time"
)

func TestBackoffAndLock(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tr := New(DefaultAccountPolicy(), 100, c.Now)
	if d := tr.Check("alice"); !d.Allowed() {
		t.Fatalf("fresh key not allowed: %+v", d)
	}
	wantWaits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, want := range wantWaits {
		if tr.Fail("alice") {
			t.Fatalf("failure %d locked the account", i+1)
		}
		if d := tr.Check("alice"); d.Wait != want || d.Locked {
			t.Fatalf("after failure %d: %+v, want a wait of %v", i+1, d, want)
		}
		c.Advance(want)
		if d := tr.Check("alice"); !d.Allowed() {
			t.Fatalf("after waiting %v: %+v", want, d)
		}
	}
	if !tr.Fail("alice") {
		t.Fatal("the fifth failure did not lock the account")
	}
	if d := tr.Check("alice"); !d.Locked || d.Wait != 15*time.Minute {
		t.Fatalf("locked: %+v", d)
	}
	if tr.Fail("alice") {
		t.Error("a failure while locked reported a new lock")
	}
	c.Advance(15*time.Minute + time.Second)
	if d := tr.Check("alice"); !d.Allowed() {
		t.Fatalf("after the lock: %+v", d)
	}
	// After the lock the count starts again.
	tr.Fail("alice")
	if d := tr.Check("alice"); d.Locked || d.Wait != time.Second {
		t.Fatalf("first failure after a lock: %+v", d)
	}
	if d := tr.Check("bob"); !d.Allowed() {
		t.Error("another key is affected")
	}
}

func TestWindowForgets(t *testing.T) {
	c := testclock.New(time.Unix(0, 0))
	tr := New(Policy{MaxFailures: 3, Window: time.Minute, LockFor: time.Hour}, 10, c.Now)
	tr.Fail("k")
	tr.Fail("k")
	c.Advance(2 * time.Minute)
	if tr.Fail("k") {
		t.Fatal("failures older than the window counted")
	}
	if d := tr.Check("k"); d.Locked {
		t.Fatalf("locked: %+v", d)
	}
}

func TestSucceedResets(t *testing.T) {
	c := testclock.New(time.Unix(0, 0))
	tr := New(DefaultAccountPolicy(), 10, c.Now)
	for range 4 {
		tr.Fail("k")
	}
	tr.Succeed("k")
	if d := tr.Check("k"); !d.Allowed() {
		t.Fatalf("after success: %+v", d)
	}
	if tr.Fail("k") {
		t.Fatal("a success did not reset the count")
	}
}

func TestBounded(t *testing.T) {
	c := testclock.New(time.Unix(0, 0))
	tr := New(DefaultAddressPolicy(), 1000, c.Now)
	for i := range 100_000 {
		tr.Fail(fmt.Sprintf("ip-%d", i))
	}
	if n := tr.Len(); n > 1000 {
		t.Fatalf("%d keys tracked, want at most 1000", n)
	}
	// A locked key survives a flood of one-off keys better than they do:
	// eviction prefers entries that stop restricting soonest.
	tr2 := New(Policy{MaxFailures: 1, Window: time.Minute, LockFor: time.Hour}, 100, c.Now)
	tr2.Fail("attacker")
	for i := range 50 {
		c.Advance(time.Second)
		tr2.Fail(fmt.Sprintf("other-%d", i))
	}
	if d := tr2.Check("attacker"); !d.Locked {
		t.Error("the locked key was evicted while there was room")
	}
}

func BenchmarkFailFull(b *testing.B) {
	tr := New(DefaultAddressPolicy(), 10_000, nil)
	for i := range 10_000 {
		tr.Fail(fmt.Sprintf("seed-%d", i))
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("new-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Fail(keys[i%len(keys)])
		i++
	}
}
