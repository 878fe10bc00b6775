package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisFailures is a FailureStore shared by gateway instances through
// Redis, so that a client guessing a password cannot multiply its attempts
// by the number of instances. It is safe for concurrent use.
//
// Each call is one round trip: a Lua script that applies the step
// atomically, with Redis's own clock, counting in microseconds. Each
// (policy, key) pair is one Redis hash, Prefix + policy name + ":" + the
// first 16 bytes of SHA-256(key) in hex, which expires when it no longer
// restricts anything; each script touches one key, as Redis Cluster
// requires. Outages are handled as by Redis: in FailClosed mode (the
// default, and the right one for sign-in) every call fails with an error
// wrapping ErrUnavailable; in FailOpen mode a local MemoryFailures decides
// and marks the Lock Degraded.
type RedisFailures struct {
	c        *redis.Client
	prefix   string
	fallback FailureStore
	script   *redis.Script
	outage

	// now, when set, is passed to the script in place of TIME, for tests.
	now func() time.Time
}

// RedisFailuresOptions configures a RedisFailures.
type RedisFailuresOptions struct {
	Client      *redis.Client
	Prefix      string       // default "moat:failures:"
	FailureMode FailureMode  // default FailClosed
	Fallback    FailureStore // under FailOpen; default a MemoryFailures of 10,000 keys
	Logger      *slog.Logger // a line per outage; default discards
}

// NewRedisFailures returns a RedisFailures.
func NewRedisFailures(o RedisFailuresOptions) *RedisFailures {
	if o.Prefix == "" {
		o.Prefix = "moat:failures:"
	}
	if o.Fallback == nil {
		o.Fallback = NewMemoryFailures(10_000, nil)
	}
	return &RedisFailures{
		c:        o.Client,
		prefix:   o.Prefix,
		fallback: o.Fallback,
		script:   redis.NewScript(failuresScript),
		outage:   newOutage(o.FailureMode, o.Logger, "failure counts"),
	}
}

var _ FailureStore = (*RedisFailures)(nil)

// failuresScript mirrors stepFailures (failures.go), in microseconds.
//
//	KEYS[1]  the hash: f failures, s first, n next, l locked
//	ARGV[1]  0 check, 1 attempt, 2 fail
//	ARGV[2]  max failures
//	ARGV[3]  window
//	ARGV[4]  lock
//	ARGV[5]  base delay
//	ARGV[6]  the current time: for tests only
//
// It replies {locked (0 or 1), wait, locked now (0 or 1)}.
const failuresScript = `
if redis.replicate_commands then redis.replicate_commands() end
local op = tonumber(ARGV[1])
local maxf = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lockfor = tonumber(ARGV[4])
local base = tonumber(ARGV[5])
local now = ARGV[6] and tonumber(ARGV[6])
if not now then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local v = redis.call('HMGET', KEYS[1], 'f', 's', 'n', 'l')
local f = tonumber(v[1]) or 0
local s = tonumber(v[2]) or 0
local n = tonumber(v[3]) or 0
local l = tonumber(v[4]) or 0
if now < l and op ~= 2 then
	return {1, l - now, 0}
end
if now < n and op ~= 2 then
	return {0, n - now, 0}
end
if op == 0 then
	return {0, 0, 0}
end
if f == 0 or now - s > window or (l ~= 0 and now >= l) then
	f, s, n, l = 0, now, 0, 0
end
f = f + 1
if base > 0 then
	local shift = math.min(f - 1, 20)
	local d = lockfor
	if base <= math.floor(lockfor / 2 ^ shift) then
		d = base * 2 ^ shift
	end
	n = now + d
end
local locked_now = 0
if f >= maxf then
	l = now + lockfor
	if f == maxf then
		locked_now = 1
	end
end
redis.call('HSET', KEYS[1], 'f', string.format('%d', f), 's', string.format('%d', s), 'n', string.format('%d', n), 'l', string.format('%d', l))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((math.max(l, n, s + window) - now) / 1000)))
return {0, 0, locked_now}
`

// Check implements FailureStore.
func (r *RedisFailures) Check(ctx context.Context, p FailurePolicy, key string) (Lock, error) {
	l, _, err := r.run(ctx, p, key, opCheck)
	return l, err
}

// Attempt implements FailureStore.
func (r *RedisFailures) Attempt(ctx context.Context, p FailurePolicy, key string) (Lock, bool, error) {
	return r.run(ctx, p, key, opAttempt)
}

// Fail implements FailureStore.
func (r *RedisFailures) Fail(ctx context.Context, p FailurePolicy, key string) (bool, error) {
	_, lockedNow, err := r.run(ctx, p, key, opFail)
	return lockedNow, err
}

// Reset implements FailureStore. The fallback forgets the key too, so
// that a count kept there during an outage does not come back later.
func (r *RedisFailures) Reset(ctx context.Context, p FailurePolicy, key string) error {
	_ = r.fallback.Reset(ctx, p, key)
	if !r.try() {
		return r.unavailable(p, errRecentFailure)
	}
	if err := r.c.Del(ctx, redisKey(r.prefix, p.Name, key)).Err(); err != nil {
		r.failed(ctx, err)
		return r.unavailable(p, err)
	}
	r.answered()
	return nil
}

func (r *RedisFailures) run(ctx context.Context, p FailurePolicy, key string, op failOp) (Lock, bool, error) {
	if err := p.Validate(); err != nil {
		return Lock{}, false, fmt.Errorf("%w: %w", ErrInvalidLimit, err)
	}
	us := func(d time.Duration) int64 { return int64((d + time.Microsecond - 1) / time.Microsecond) }
	args := []any{int(op), p.MaxFailures, us(p.Window), us(p.LockFor), us(p.BaseDelay)}
	if r.now != nil {
		args = append(args, r.now().UnixMicro())
	}
	var reply []int64
	err := errRecentFailure
	if r.try() {
		reply, err = r.script.Run(ctx, r.c, []string{redisKey(r.prefix, p.Name, key)}, args...).Int64Slice()
		if err == nil && len(reply) != 3 {
			err = fmt.Errorf("unexpected reply %v", reply)
		}
		if err != nil {
			r.failed(ctx, err)
		}
	}
	if err != nil {
		if r.mode != FailOpen {
			return Lock{}, false, r.unavailable(p, err)
		}
		l, lockedNow := r.local(ctx, p, key, op)
		l.Degraded = true
		return l, lockedNow, nil
	}
	r.answered()
	return Lock{Locked: reply[0] == 1, Wait: time.Duration(reply[1]) * time.Microsecond}, reply[2] == 1, nil
}

// local asks the fallback in place of Redis.
func (r *RedisFailures) local(ctx context.Context, p FailurePolicy, key string, op failOp) (Lock, bool) {
	switch op {
	case opCheck:
		l, _ := r.fallback.Check(ctx, p, key)
		return l, false
	case opAttempt:
		l, lockedNow, _ := r.fallback.Attempt(ctx, p, key)
		return l, lockedNow
	default:
		lockedNow, _ := r.fallback.Fail(ctx, p, key)
		return Lock{}, lockedNow
	}
}

func (r *RedisFailures) unavailable(p FailurePolicy, cause error) error {
	return fmt.Errorf("failure policy %q: %w: %w", p.Name, ErrUnavailable, cause)
}
