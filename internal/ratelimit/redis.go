package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// FailureMode says what a Redis store does when Redis cannot answer.
type FailureMode int

const (
	// FailClosed returns an error wrapping ErrUnavailable: the request is
	// not decided, and the caller refuses it. The gateway answers 503
	// (the limiter, part of the security path, could not answer), unless
	// its policy for the route says 429.
	FailClosed FailureMode = iota
	// FailOpen decides with a local fallback store instead and marks the
	// Result Degraded. Each gateway instance then limits on its own, so
	// N instances together allow up to N times the limit. Choose it only
	// where availability matters more than the exact limit, and say so in
	// the configuration.
	FailOpen
)

// String returns the configuration spelling: "fail_closed" or "fail_open".
func (f FailureMode) String() string {
	switch f {
	case FailClosed:
		return "fail_closed"
	case FailOpen:
		return "fail_open"
	}
	return "FailureMode(" + strconv.Itoa(int(f)) + ")"
}

// RedisOptions configures a Redis store.
type RedisOptions struct {
	// Client is the connection pool. It reconnects by itself. Its
	// timeouts and retries (DialTimeout, DialerRetries, ReadTimeout,
	// MaxRetries) bound how long a decision waits for an unresponsive
	// Redis before failing; the defaults add up to seconds, so keep them
	// short for a rate limiter.
	Client *redis.Client
	// Prefix starts every key; default "moat:ratelimit:". Instances that
	// share limits use the same prefix.
	Prefix string
	// FailureMode is what to do when Redis cannot answer; default
	// FailClosed.
	FailureMode FailureMode
	// Fallback decides when Redis cannot answer under FailOpen; default a
	// Memory of 10,000 keys.
	Fallback Store
	// Logger receives a line when Redis stops answering and one when it
	// answers again, not one per request; default discards.
	Logger *slog.Logger
}

// Redis is a Store shared by gateway instances through Redis. It is safe
// for concurrent use.
//
// Each decision is one round trip: EVALSHA of a Lua script that runs GCRA
// atomically in Redis (EVAL when Redis does not have the script cached
// yet). The script reads the time from Redis itself (TIME), so the
// gateways' clocks play no part, and it counts in microseconds, the
// resolution of TIME. The native GCRA command announced for Redis 8.8 was
// withheld from that release, so the script is used with every server
// version.
//
// After a failure, Take stops asking Redis for a second: it answers at
// once as when Redis is down (per FailureMode), and a single request a
// second asks Redis again, so an outage does not make every request wait
// for the client's timeouts. The first answer from Redis ends the outage.
//
// Each (limit, key) pair is one Redis key, Prefix + limit name + ":" + the
// first 16 bytes of SHA-256(key) in hex, so client data never becomes a
// Redis key of its own choosing, and each script touches one key, as Redis
// Cluster requires. The value is the TAT in microseconds of Redis time; it
// expires when the allowance is full again, so idle clients cost nothing.
type Redis struct {
	c        *redis.Client
	prefix   string
	fallback Store
	script   *redis.Script
	outage

	// now, when set, is passed to the script in place of TIME. It exists
	// for tests, which cannot set the Redis clock; production leaves it nil.
	// Redis still counts TTLs in real time, so a test's limits must take
	// longer to refill than the test takes to run.
	now func() time.Time
}

// gcraScript mirrors decide (ratelimit.go), in microseconds.
//
//	KEYS[1]  the state: the TAT, absent when the allowance is full
//	ARGV[1]  emission interval
//	ARGV[2]  burst
//	ARGV[3]  cost, 1 <= cost
//	ARGV[4]  the current time: for tests only; production leaves it out
//	         and the script reads Redis's clock
//
// It replies {allowed (0 or 1), time until full, time until allowed}.
// replicate_commands makes servers older than 5.0 replicate the SET rather
// than the script, which reads a clock; newer servers always do.
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local emit = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = ARGV[4] and tonumber(ARGV[4])
if not now then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
	tat = now
end
local span = burst * emit
if cost > burst then
	return {0, tat - now, span}
end
local nxt = tat + cost * emit
local allow_at = nxt - span
if allow_at > now then
	return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', string.format('%d', math.ceil((nxt - now) / 1000)))
return {1, nxt - now, 0}
`

// NewRedis returns a Redis store.
func NewRedis(o RedisOptions) *Redis {
	return newRedis(o, gcraScript)
}

func newRedis(o RedisOptions, src string) *Redis {
	if o.Prefix == "" {
		o.Prefix = "moat:ratelimit:"
	}
	if o.Fallback == nil {
		o.Fallback = NewMemory(MemoryOptions{MaxKeys: 10_000})
	}
	return &Redis{
		c:        o.Client,
		prefix:   o.Prefix,
		fallback: o.Fallback,
		script:   redis.NewScript(src),
		outage:   newOutage(o.FailureMode, o.Logger, "rate limits"),
	}
}

var _ Store = (*Redis)(nil)

// redisKey is the Redis key for key under the limit or policy named name.
func redisKey(prefix, name, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + name + ":" + hex.EncodeToString(sum[:16])
}

// Take decides one request of cost n for key under l (see Store), in one
// round trip to Redis. When Redis cannot answer, it fails closed with an
// error wrapping ErrUnavailable, or, under FailOpen, asks the fallback and
// sets Result.Degraded. A request whose ctx ends first is treated the same
// way, but does not count as Redis failing. A Limit that Validate rejects
// is an error wrapping ErrInvalidLimit in either mode.
func (r *Redis) Take(ctx context.Context, key string, l Limit, n int) (Result, error) {
	emit, ok := l.emission()
	if !ok {
		return Result{Limit: l}, fmt.Errorf("rate limit %q: %w", l.Name, ErrInvalidLimit)
	}
	n = max(n, 1)
	emitUS := int64((emit + time.Microsecond - 1) / time.Microsecond)
	args := []any{emitUS, l.Burst, n}
	if r.now != nil {
		args = append(args, r.now().UnixMicro())
	}
	if !r.try() {
		return r.unavailable(ctx, key, l, n, errRecentFailure)
	}
	reply, err := r.script.Run(ctx, r.c, []string{redisKey(r.prefix, l.Name, key)}, args...).Int64Slice()
	if err == nil && len(reply) != 3 {
		err = fmt.Errorf("unexpected reply %v", reply)
	}
	if err != nil {
		// A caller that gave up (its context ended) says nothing about
		// Redis: that request alone goes without an answer from it.
		r.failed(ctx, err)
		return r.unavailable(ctx, key, l, n, err)
	}
	r.answered()
	d := decision{allowed: reply[0] == 1, reset: reply[1], retry: reply[2]}
	return d.result(l, emitUS, time.Microsecond), nil
}

// errRecentFailure stands for the failure that put Redis in an outage.
var errRecentFailure = errors.New("redis failed recently; not asking again yet")

// outage tracks whether Redis answers, so that in an outage a store stops
// asking it for a second at a time instead of making every request wait
// for the client's timeouts. It logs once when an outage starts and once
// when it ends. It is safe for concurrent use.
type outage struct {
	mode      FailureMode
	log       *slog.Logger
	what      string       // what Redis holds, for the log: "rate limits"
	down      atomic.Bool  // in an outage: Redis failed and has not answered since
	retryAt   atomic.Int64 // while down, when to try Redis again, in nanoseconds since epoch
	epoch     time.Time    // a monotonic reading, for retryAt
	retryWait time.Duration
}

func newOutage(mode FailureMode, log *slog.Logger, what string) outage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return outage{mode: mode, log: log.With("component", "ratelimit"), what: what, epoch: time.Now(), retryWait: time.Second}
}

// try reports whether to ask Redis: always outside an outage, and in one,
// for a single caller once retryAt has passed.
func (o *outage) try() bool {
	if !o.down.Load() {
		return true
	}
	now := int64(time.Since(o.epoch))
	at := o.retryAt.Load()
	return now >= at && o.retryAt.CompareAndSwap(at, now+int64(o.retryWait))
}

// failed records that Redis did not answer a request made under ctx. A
// caller that gave up (its context ended) says nothing about Redis: that
// request alone goes without an answer from it.
func (o *outage) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	o.retryAt.Store(int64(time.Since(o.epoch) + o.retryWait))
	if !o.down.CompareAndSwap(false, true) {
		return
	}
	if o.mode == FailOpen {
		o.log.Warn("redis does not answer; deciding locally (fail_open)", "holds", o.what, "err", err)
	} else {
		o.log.Error("redis does not answer; refusing what it decides (fail_closed)", "holds", o.what, "err", err)
	}
}

// answered records that Redis answered.
func (o *outage) answered() {
	if o.down.CompareAndSwap(true, false) {
		o.log.Info("redis answers again; state is shared again", "holds", o.what)
	}
}

// unavailable answers for a request that Redis did not decide.
func (r *Redis) unavailable(ctx context.Context, key string, l Limit, n int, cause error) (Result, error) {
	if r.mode != FailOpen {
		return Result{Limit: l}, fmt.Errorf("rate limit %q: %w: %w", l.Name, ErrUnavailable, cause)
	}
	res, err := r.fallback.Take(ctx, key, l, n)
	if err != nil {
		return Result{Limit: l}, fmt.Errorf("rate limit %q: fallback after %w: %w", l.Name, cause, err)
	}
	res.Degraded = true
	return res, nil
}
