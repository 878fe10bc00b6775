package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// FailurePolicy says how failed attempts on one kind of key (an account, a
// client address) are counted and punished: each failure makes the next
// attempt wait longer (BaseDelay, doubling), and MaxFailures failures within
// Window lock the key for LockFor. It is the limiter's answer to guessing,
// where a rate limit on requests is the answer to volume: what is counted
// is failures, and a success forgives them.
type FailurePolicy struct {
	Name        string        // short token, part of the store key (e.g. "login-account")
	MaxFailures int           // failures in Window that lock the key
	Window      time.Duration // failures older than this are forgotten
	LockFor     time.Duration // how long a locked key stays locked
	BaseDelay   time.Duration // wait after the first failure; doubles with each one; 0 for none
}

// Validate reports every problem with p at once.
func (p FailurePolicy) Validate() error {
	var errs []error
	if err := validName(p.Name); err != nil {
		errs = append(errs, err)
	}
	if p.MaxFailures < 1 {
		errs = append(errs, fmt.Errorf("max failures is %d, must be at least 1", p.MaxFailures))
	}
	if p.Window < time.Millisecond || p.Window > maxSpan {
		errs = append(errs, fmt.Errorf("window is %v, must be between 1ms and %v", p.Window, maxSpan))
	}
	if p.LockFor < time.Millisecond || p.LockFor > maxSpan {
		errs = append(errs, fmt.Errorf("lock is %v, must be between 1ms and %v", p.LockFor, maxSpan))
	}
	if p.BaseDelay < 0 || p.BaseDelay > maxSpan {
		errs = append(errs, fmt.Errorf("base delay is %v, must be between 0 and %v", p.BaseDelay, maxSpan))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failure policy %q: %w", p.Name, err)
	}
	return nil
}

// Lock is what a FailureStore says about a key.
type Lock struct {
	Locked bool          // the key is locked
	Wait   time.Duration // how long until an attempt is allowed; 0 when it is now
	// Degraded is set when the shared store could not answer and a local
	// fallback decided instead.
	Degraded bool
}

// Allowed reports whether an attempt may be made now.
func (l Lock) Allowed() bool { return l.Wait == 0 && !l.Locked }

// FailureStore counts failed attempts per key under a FailurePolicy. Each
// (policy name, key) pair has its own count. An error means the store
// could not answer; callers refuse the attempt (fail closed).
type FailureStore interface {
	// Check says whether key may make an attempt now. It records nothing.
	Check(ctx context.Context, p FailurePolicy, key string) (Lock, error)
	// Attempt is Check and Fail in one atomic step: when an attempt is
	// allowed it counts it as a failure at once and returns an allowed
	// Lock; the caller forgives it with Reset when the attempt succeeds.
	// Counting before the answer is known is what stops a client from
	// making many guesses at once, each of which a separate Check would
	// have allowed. lockedNow reports that this attempt, if it fails,
	// is the one that locked the key.
	Attempt(ctx context.Context, p FailurePolicy, key string) (l Lock, lockedNow bool, err error)
	// Fail records a failed attempt and reports whether it locked the key
	// now. A failure while the key is locked extends the lock.
	Fail(ctx context.Context, p FailurePolicy, key string) (lockedNow bool, err error)
	// Reset forgets key's failures: a correct answer ends the back-off.
	Reset(ctx context.Context, p FailurePolicy, key string) error
}

// failOp is what a failure step does.
type failOp int

const (
	opCheck failOp = iota
	opAttempt
	opFail
)

// failState is the count for one key, in whatever unit of time the store
// counts (nanoseconds in memory, microseconds in Redis).
type failState struct {
	failures int64
	first    int64 // first failure of the current window
	next     int64 // back-off: no attempt before this
	locked   int64 // locked until this; 0 when never locked in this window
}

// stepFailures applies op at now to a key in state st, under a policy whose
// durations are given in the store's unit. It returns the new state, whether
// it changed, the Lock to report, and whether the step locked the key. It
// is a pure function; the Lua script in failures_redis.go mirrors it.
func stepFailures(st failState, now, window, lockFor, base int64, maxFailures int64, op failOp) (failState, bool, Lock, bool) {
	if now < st.locked && op != opFail {
		return st, false, Lock{Locked: true, Wait: time.Duration(st.locked - now)}, false
	}
	if now < st.next && op != opFail {
		return st, false, Lock{Wait: time.Duration(st.next - now)}, false
	}
	if op == opCheck {
		return st, false, Lock{}, false
	}
	if st.failures == 0 || now-st.first > window || st.locked != 0 && now >= st.locked {
		st = failState{first: now}
	}
	st.failures++
	if base > 0 {
		d := lockFor
		if shift := min(st.failures-1, 20); base <= lockFor>>shift {
			d = base << shift
		}
		st.next = now + d
	}
	lockedNow := false
	if st.failures >= maxFailures {
		st.locked = now + lockFor
		lockedNow = st.failures == maxFailures
	}
	return st, true, Lock{}, lockedNow
}

// expiry is when st no longer restricts anything and may be forgotten.
func (st failState) expiry(window int64) int64 {
	return max(st.locked, st.next, st.first+window)
}

// MemoryFailures is a FailureStore for one gateway instance. It is safe for
// concurrent use and never fails.
//
// It keeps at most MaxKeys counts, so a flood of distinct keys cannot grow
// it without limit: when full, a count that no longer restricts anything
// goes, or else the one of a small random sample that would stop
// restricting soonest.
type MemoryFailures struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*failEntry
}

type failEntry struct {
	failState
	window int64 // of the policy that made it, for eviction
}

// NewMemoryFailures returns a MemoryFailures holding at most maxKeys
// counts (default 100,000 when maxKeys < 1). now may be nil (time.Now).
func NewMemoryFailures(maxKeys int, now func() time.Time) *MemoryFailures {
	if now == nil {
		now = time.Now
	}
	if maxKeys < 1 {
		maxKeys = 100_000
	}
	return &MemoryFailures{max: maxKeys, now: now, entries: make(map[string]*failEntry)}
}

var _ FailureStore = (*MemoryFailures)(nil)

// Check implements FailureStore.
func (m *MemoryFailures) Check(_ context.Context, p FailurePolicy, key string) (Lock, error) {
	l, _ := m.step(p, key, opCheck)
	return l, nil
}

// Attempt implements FailureStore.
func (m *MemoryFailures) Attempt(_ context.Context, p FailurePolicy, key string) (Lock, bool, error) {
	l, lockedNow := m.step(p, key, opAttempt)
	return l, lockedNow, nil
}

// Fail implements FailureStore.
func (m *MemoryFailures) Fail(_ context.Context, p FailurePolicy, key string) (bool, error) {
	_, lockedNow := m.step(p, key, opFail)
	return lockedNow, nil
}

// Reset implements FailureStore.
func (m *MemoryFailures) Reset(_ context.Context, p FailurePolicy, key string) error {
	m.mu.Lock()
	delete(m.entries, p.Name+"\x00"+key)
	m.mu.Unlock()
	return nil
}

// step runs stepFailures on key's entry under the lock, reading the clock
// inside it.
func (m *MemoryFailures) step(p FailurePolicy, key string, op failOp) (Lock, bool) {
	k := p.Name + "\x00" + key
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	e := m.entries[k]
	var st failState
	if e != nil {
		st = e.failState
	}
	st, changed, l, lockedNow := stepFailures(st, now, int64(p.Window), int64(p.LockFor), int64(p.BaseDelay), int64(p.MaxFailures), op)
	if changed {
		if e == nil {
			if len(m.entries) >= m.max {
				m.evict(now)
			}
			e = &failEntry{window: int64(p.Window)}
			m.entries[k] = e
		}
		e.failState = st
	}
	return l, lockedNow
}

// Len is the number of keys counted.
func (m *MemoryFailures) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// evictSample is how many entries evict looks at.
const evictSample = 16

// evict makes room for one entry in constant time: it looks at a few
// entries (map iteration order is random) and drops the one whose
// restrictions end soonest, preferring one that has already ended. m.mu is
// held.
func (m *MemoryFailures) evict(now int64) {
	var victim string
	var soonest int64
	n := 0
	for k, e := range m.entries {
		end := e.expiry(e.window)
		if end <= now {
			victim = k
			break
		}
		if victim == "" || end < soonest {
			victim, soonest = k, end
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(m.entries, victim)
}
