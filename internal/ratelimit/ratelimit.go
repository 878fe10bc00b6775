// Package ratelimit decides whether a request may proceed under a rate
// limit, using the generic cell rate algorithm (GCRA), and writes the
// RateLimit, RateLimit-Policy and Retry-After response fields.
//
// A limit allows Rate requests per Period on average and Burst requests at
// once. GCRA keeps one number per limit and client, the theoretical arrival
// time (TAT): the moment at which the client's allowance would be full
// again if it made no further request. Each allowed request of cost n moves
// the TAT n emission intervals (Period/Rate) later; a request is refused
// when that would put the TAT more than Burst intervals ahead of now.
// Refusals change nothing.
//
// Two stores implement it: Memory, for one gateway instance, and Redis, for
// several instances that share their limits. Both give the same answers for
// the same sequence of requests and times when Period/Rate is a whole
// number of microseconds; otherwise each rounds the interval up, Memory to
// a nanosecond and Redis to a microsecond, so neither ever allows more than
// Rate per Period.
//
// References: ITU-T Recommendation I.371 (the virtual scheduling form of
// GCRA); draft-ietf-httpapi-ratelimit-headers-10 for the response fields
// (see Headers).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is one rate limit. The zero Limit is invalid; check configured
// limits with Validate when loading them.
//
// Name identifies the limit's state: two limits with the same Name share
// their counters for the same key, so limits with different parameters need
// different names.
type Limit struct {
	Name   string        // short token, used in headers, events and Redis keys (e.g. "ip-burst")
	Rate   int           // requests allowed per Period, sustained
	Period time.Duration // e.g. time.Second, time.Hour
	Burst  int           // requests allowed at once: the capacity of the allowance, at least 1
}

// Bounds on a Limit. The emission interval (Period/Rate) is at least a
// microsecond, the resolution of the Redis store; the time to fill a whole
// burst is capped so that every sum of times fits in an int64 of
// nanoseconds and, exactly, in a Lua number (a float64) of microseconds.
const (
	maxNameLen = 64
	minEmit    = time.Microsecond
	maxSpan    = 10 * 365 * 24 * time.Hour
)

// Validate reports every problem with l at once.
func (l Limit) Validate() error {
	var errs []error
	if err := validName(l.Name); err != nil {
		errs = append(errs, err)
	}
	if l.Rate < 1 {
		errs = append(errs, fmt.Errorf("rate is %d, must be at least 1", l.Rate))
	}
	if l.Period <= 0 {
		errs = append(errs, fmt.Errorf("period is %v, must be positive", l.Period))
	}
	if l.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst is %d, must be at least 1", l.Burst))
	}
	if len(errs) == 0 {
		if _, ok := l.emission(); !ok {
			emit := l.Period / time.Duration(l.Rate)
			if emit < minEmit {
				errs = append(errs, fmt.Errorf("%d per %v is more than one per %v", l.Rate, l.Period, minEmit))
			} else {
				errs = append(errs, fmt.Errorf("refilling a burst of %d takes more than %v", l.Burst, maxSpan))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rate limit %q: %w", l.Name, err)
	}
	return nil
}

// validName accepts 1 to 64 letters, digits, '-', '_' and '.': a name that
// is safe as is in a structured field string, a Redis key and a log line.
func validName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name is longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("name has %q: only letters, digits, '-', '_' and '.' are allowed", c)
		}
	}
	return nil
}

// emission returns the emission interval, Period/Rate rounded up to a
// nanosecond (so that rounding never allows more than Rate per Period),
// and whether l is usable at all. It is cheap enough for every request.
func (l Limit) emission() (time.Duration, bool) {
	if l.Rate < 1 || l.Period <= 0 || l.Burst < 1 {
		return 0, false
	}
	emit := l.Period / time.Duration(l.Rate)
	if emit*time.Duration(l.Rate) != l.Period {
		emit++
	}
	if emit < minEmit || emit > maxSpan/time.Duration(l.Burst) {
		return 0, false
	}
	return emit, true
}

// span is the time to refill a whole burst: Burst emission intervals.
func (l Limit) span() time.Duration {
	emit, _ := l.emission()
	return emit * time.Duration(l.Burst)
}

// Result is the decision on one request under one limit.
type Result struct {
	Allowed    bool
	Limit      Limit
	Remaining  int           // requests still allowed right now
	RetryAfter time.Duration // when not allowed: how long until the request would be allowed
	Reset      time.Duration // how long until the allowance is full again
	// Degraded is set when the shared store could not answer and a
	// local fallback decided instead (see FailOpen).
	Degraded bool
}

// Store decides requests under rate limits.
type Store interface {
	// Take decides one request of cost n (1 for a plain request; n < 1
	// counts as 1) for key under l, atomically: concurrent calls for the
	// same key and limit see each other's effect. A request of cost more
	// than l.Burst is never allowed and changes nothing; its RetryAfter is
	// the time to refill a whole burst. An error means the store could not
	// decide.
	Take(ctx context.Context, key string, l Limit, n int) (Result, error)
}

// ErrUnavailable is returned (wrapped) by a store that cannot reach its
// backend and is configured to fail closed.
var ErrUnavailable = errors.New("rate limit store unavailable")

// ErrInvalidLimit is returned (wrapped) for a Limit that Validate would
// reject.
var ErrInvalidLimit = errors.New("invalid rate limit")

// decision is the outcome of GCRA for one request, in whatever unit of
// time the caller counts (nanoseconds in memory, microseconds in Redis).
type decision struct {
	allowed bool
	tat     int64 // the new TAT, when allowed
	reset   int64 // time from now until the allowance is full
	retry   int64 // when refused: time from now until the request would be allowed
}

// decide applies GCRA at now to a client whose theoretical arrival time is
// tat (ignored when known is false: a client with no state has a full
// allowance), with emission interval emit, capacity burst and cost n
// (1 <= n). It is a pure function; the Lua script in redis.go mirrors it
// line for line.
func decide(now, tat int64, known bool, emit, burst, n int64) decision {
	if !known || tat < now {
		tat = now
	}
	span := burst * emit
	if n > burst {
		// Never allowed. The wait reported is the longest any allowed
		// request can see.
		return decision{reset: tat - now, retry: span}
	}
	next := tat + n*emit
	if allowAt := next - span; allowAt > now {
		return decision{reset: tat - now, retry: allowAt - now}
	}
	return decision{allowed: true, tat: next, reset: next - now}
}

// result turns d, counted in units of unit, into a Result for l.
func (d decision) result(l Limit, emit int64, unit time.Duration) Result {
	burst := int64(l.Burst)
	remaining := (burst*emit - d.reset) / emit
	remaining = min(max(remaining, 0), burst)
	return Result{
		Allowed:    d.allowed,
		Limit:      l,
		Remaining:  int(remaining),
		RetryAfter: time.Duration(d.retry) * unit,
		Reset:      time.Duration(max(d.reset, 0)) * unit,
	}
}
