// Package lockout slows and then stops guessing: it counts failed attempts
// per key (an account, a client address) in a window, makes each further
// attempt wait longer (exponential back-off), and locks the key for a while
// after too many failures.
//
// A Tracker keeps its counters in memory, bounded in size, so a flood of
// distinct keys cannot grow it without limit: when full, an entry that no
// longer restricts anything goes, or else the one of a small random sample
// that would stop restricting soonest.
package lockout

import (
	"sync"
	"time"
)

// Policy says how failures are counted and punished.
type Policy struct {
	MaxFailures int           // failures in Window that lock the key
	Window      time.Duration // failures older than this are forgotten
	LockFor     time.Duration // how long a locked key stays locked
	BaseDelay   time.Duration // wait after the first failure; doubles with each one
}

// DefaultAccountPolicy locks an account for 15 minutes after 5 failures in
// 15 minutes, with a back-off of 1s, 2s, 4s, 8s before that.
func DefaultAccountPolicy() Policy {
	return Policy{MaxFailures: 5, Window: 15 * time.Minute, LockFor: 15 * time.Minute, BaseDelay: time.Second}
}

// DefaultAddressPolicy is laxer, since many people may share an address,
// but still stops one address from spraying passwords across accounts.
func DefaultAddressPolicy() Policy {
	return Policy{MaxFailures: 20, Window: 15 * time.Minute, LockFor: 15 * time.Minute, BaseDelay: 0}
}

type entry struct {
	failures    int
	first       time.Time // first failure of the current window
	nextAllowed time.Time // back-off
	lockedUntil time.Time
}

// Tracker counts failures for one Policy. It is safe for concurrent use.
type Tracker struct {
	policy Policy
	max    int
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
}

// New returns a Tracker that keeps at most maxKeys keys. now may be nil
// (time.Now).
func New(p Policy, maxKeys int, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Tracker{policy: p, max: maxKeys, now: now, entries: make(map[string]*entry)}
}

// Decision is the answer to Check.
type Decision struct {
	Locked bool          // the key is locked
	Wait   time.Duration // how long until an attempt is allowed; 0 when it is now
}

// Allowed reports whether an attempt may be made now.
func (d Decision) Allowed() bool { return d.Wait == 0 && !d.Locked }

// Check says whether key may make an attempt now. It records nothing.
func (t *Tracker) Check(key string) Decision {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entries[key]
	if e == nil {
		return Decision{}
	}
	if now.Before(e.lockedUntil) {
		return Decision{Locked: true, Wait: e.lockedUntil.Sub(now)}
	}
	if now.Before(e.nextAllowed) {
		return Decision{Wait: e.nextAllowed.Sub(now)}
	}
	return Decision{}
}

// Fail records a failed attempt by key and reports whether it locked the
// key now.
func (t *Tracker) Fail(key string) (lockedNow bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entries[key]
	if e == nil {
		if len(t.entries) >= t.max {
			t.evict(now)
		}
		e = &entry{}
		t.entries[key] = e
	}
	if e.failures == 0 || now.Sub(e.first) > t.policy.Window || !now.Before(e.lockedUntil) && !e.lockedUntil.IsZero() {
		*e = entry{first: now}
	}
	e.failures++
	if t.policy.BaseDelay > 0 {
		d := t.policy.BaseDelay << min(e.failures-1, 20)
		if d > t.policy.LockFor || d <= 0 {
			d = t.policy.LockFor
		}
		e.nextAllowed = now.Add(d)
	}
	if e.failures >= t.policy.MaxFailures {
		e.lockedUntil = now.Add(t.policy.LockFor)
		return e.failures == t.policy.MaxFailures
	}
	return false
}

// Succeed forgets key's failures: a correct answer ends the back-off.
func (t *Tracker) Succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// Unlock removes a lock, for an operator.
func (t *Tracker) Unlock(key string) { t.Succeed(key) }

// Len is the number of keys tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// evictSample is how many entries evict looks at.
const evictSample = 16

// evict makes room for one entry in constant time: it looks at a few
// entries (map iteration order is random) and drops the one whose
// restrictions end soonest, preferring one that has already ended. A flood
// of new keys therefore costs the same per key however full the map is.
// t.mu is held.
func (t *Tracker) evict(now time.Time) {
	var victim string
	var soonest time.Time
	n := 0
	for k, e := range t.entries {
		end := e.lockedUntil
		if e.nextAllowed.After(end) {
			end = e.nextAllowed
		}
		if w := e.first.Add(t.policy.Window); w.After(end) {
			end = w
		}
		if !end.After(now) {
			victim = k
			break
		}
		if victim == "" || end.Before(soonest) {
			victim, soonest = k, end
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(t.entries, victim)
}
