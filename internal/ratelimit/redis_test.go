package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/testclock"
)

// Without a test clock the script reads Redis's own clock (TIME): the
// production path. A limit of one an hour leaves nothing to chance in the
// moments the test takes.
func TestRedisServerTime(t *testing.T) {
	c := newRedisClient(t, nil)
	r := newTestRedis(c, redisPrefix(t), nil, RedisOptions{})
	l := Limit{Name: "hourly", Rate: 1, Period: time.Hour, Burst: 3}
	ctx := context.Background()
	for i := range 3 {
		res, err := r.Take(ctx, "k", l, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("request %d: allowed %v, remaining %d; want allowed, %d", i, res.Allowed, res.Remaining, 2-i)
		}
	}
	res, err := r.Take(ctx, "k", l, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed {
		t.Fatal("the fourth request of a burst of 3 was allowed")
	}
	if res.RetryAfter <= 59*time.Minute || res.RetryAfter > time.Hour {
		t.Errorf("RetryAfter = %v, want just under an hour", res.RetryAfter)
	}
	if res.Reset <= 2*time.Hour+59*time.Minute || res.Reset > 3*time.Hour {
		t.Errorf("Reset = %v, want just under three hours", res.Reset)
	}
}

// One key per (limit, client): named from the limit and a hash of the
// client key, never the client key itself, holding the TAT in microseconds
// and expiring when the allowance is full again.
func TestRedisKeyLayout(t *testing.T) {
	ctx := context.Background()
	c := newRedisClient(t, nil)
	prefix := redisPrefix(t)
	clk := testclock.New(start)
	r := newTestRedis(c, prefix, clk, RedisOptions{})
	client := "203.0.113.7\r\nFLUSHALL\r\n*"
	if _, err := r.Take(ctx, client, ten10, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Take(ctx, client, other, 1); err != nil {
		t.Fatal(err)
	}

	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(client))
	h := hex.EncodeToString(sum[:16])
	want := map[string]bool{prefix + "t:" + h: true, prefix + "o:" + h: true}
	if len(keys) != len(want) {
		t.Fatalf("keys %q, want %d of them", keys, len(want))
	}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		if strings.Contains(k, "203.0.113.7") {
			t.Errorf("key %q holds the client key", k)
		}
	}

	k := prefix + "t:" + h
	v, err := c.Get(ctx, k).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatInt(start.UnixMicro()+100_000, 10); v != want {
		t.Errorf("value %q, want the TAT %q", v, want)
	}
	ttl, err := c.PTTL(ctx, k).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 100*ms {
		t.Errorf("TTL %v, want the 100ms until full, or a little less", ttl)
	}
}

// countCommands counts the commands a client sends.
type countCommands struct{ n atomic.Int64 }

func (h *countCommands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// Each decision is one command; the first on a Redis that does not know
// the script yet is two (EVALSHA refused with NOSCRIPT, then EVAL).
func TestRedisOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newRedisClient(t, nil)
	var count countCommands
	c.AddHook(&count)
	// A script text of its own, so that Redis surely lacks it.
	var nonce [8]byte
	rand.Read(nonce[:])
	r := newRedis(RedisOptions{Client: c, Prefix: redisPrefix(t)}, gcraScript+"-- "+hex.EncodeToString(nonce[:])+"\n")

	for i, want := range []int64{2, 1, 1, 1} {
		before := count.n.Load()
		res, err := r.Take(ctx, "k", ten10, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed {
			t.Fatalf("request %d refused", i)
		}
		if got := count.n.Load() - before; got != want {
			t.Errorf("request %d: %d commands, want %d", i, got, want)
		}
	}
}

// The client reconnects by itself when Redis drops the connection.
func TestRedisReconnects(t *testing.T) {
	ctx := context.Background()
	c := newRedisClient(t, func(o *redis.Options) { o.PoolSize = 1 })
	admin := newRedisClient(t, nil)
	clk := testclock.New(start)
	r := newTestRedis(c, redisPrefix(t), clk, RedisOptions{})
	if _, err := r.Take(ctx, "k", ten10, 1); err != nil {
		t.Fatal(err)
	}
	id, err := c.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := admin.ClientKillByFilter(ctx, "ID", strconv.FormatInt(id, 10)).Result(); err != nil || n != 1 {
		t.Fatalf("killing the connection: %d, %v", n, err)
	}
	res, err := r.Take(ctx, "k", ten10, 1)
	if err != nil {
		t.Fatalf("after the connection was dropped: %v", err)
	}
	if !res.Allowed || res.Degraded || res.Remaining != 3 {
		t.Errorf("after reconnecting: %+v, want allowed with 3 remaining", res)
	}
	if id2, err := c.ClientID(ctx).Result(); err != nil || id2 == id {
		t.Errorf("client id %d (%v), want a new connection", id2, err)
	}
}

// Two gateway instances on one Redis share each limit exactly.
func TestRedisSharedByInstances(t *testing.T) {
	ctx := context.Background()
	prefix := redisPrefix(t)
	clk := testclock.New(start)
	a := newTestRedis(newRedisClient(t, nil), prefix, clk, RedisOptions{})
	b := newTestRedis(newRedisClient(t, nil), prefix, clk, RedisOptions{})
	got := 0
	for i := range 10 {
		s := a
		if i%2 == 1 {
			s = b
		}
		res, err := s.Take(ctx, "k", ten10, 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			got++
		}
	}
	if got != ten10.Burst {
		t.Errorf("two instances allowed %d at once, want the burst of %d", got, ten10.Burst)
	}
	clk.Advance(100 * ms)
	if res, _ := b.Take(ctx, "k", ten10, 1); !res.Allowed {
		t.Error("b refused the request the interval allowed")
	}
	if res, _ := a.Take(ctx, "k", ten10, 1); res.Allowed || res.RetryAfter != 100*ms {
		t.Errorf("a after b took the interval's request: %+v, want refused for 100ms", res)
	}
}

// closedPort returns an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// When Redis cannot answer, FailClosed refuses to decide and FailOpen
// limits locally, marking its results; either logs once per outage, not
// once per request.
func TestRedisUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, down := range []struct {
		name string
		// client returns a client that works until broken is called, or
		// not at all.
		client func(t *testing.T) (c *redis.Client, broken func())
	}{
		{"closed port", func(t *testing.T) (*redis.Client, func()) {
			redisURL(t) // the same skipping rule as the other Redis tests
			c := redis.NewClient(&redis.Options{Addr: closedPort(t), MaxRetries: -1})
			t.Cleanup(func() { c.Close() })
			return c, func() {}
		}},
		{"client closed mid-test", func(t *testing.T) (*redis.Client, func()) {
			c := newRedisClient(t, nil)
			return c, func() { c.Close() }
		}},
	} {
		for _, mode := range []FailureMode{FailClosed, FailOpen} {
			t.Run(down.name+"/"+mode.String(), func(t *testing.T) {
				c, broken := down.client(t)
				var count countCommands
				c.AddHook(&count)
				var logs bytes.Buffer
				clk := testclock.New(start)
				r := newTestRedis(c, redisPrefix(t), clk, RedisOptions{
					FailureMode: mode,
					Fallback:    NewMemory(MemoryOptions{Now: clk.Now}),
					Logger:      testLogger(t, &logs),
				})
				if down.name == "client closed mid-test" {
					if res, err := r.Take(ctx, "k", ten10, 1); err != nil || !res.Allowed || res.Degraded {
						t.Fatalf("before the break: %+v, %v", res, err)
					}
				}
				broken()

				before := count.n.Load()
				for i := range ten10.Burst + 1 {
					res, err := r.Take(ctx, "k", ten10, 1)
					switch mode {
					case FailClosed:
						if !errors.Is(err, ErrUnavailable) {
							t.Fatalf("request %d: err %v, want ErrUnavailable", i, err)
						}
						if res.Allowed {
							t.Fatalf("request %d allowed with the store down", i)
						}
					case FailOpen:
						if err != nil {
							t.Fatalf("request %d: %v", i, err)
						}
						if !res.Degraded {
							t.Errorf("request %d: not marked degraded", i)
						}
						// The fallback enforces the limit on its own.
						if wantAllowed := i < ten10.Burst; res.Allowed != wantAllowed {
							t.Errorf("request %d: allowed %v, want %v", i, res.Allowed, wantAllowed)
						}
					}
				}
				if n := strings.Count(logs.String(), "redis does not answer"); n != 1 {
					t.Errorf("%d log lines about the outage, want 1:\n%s", n, logs.String())
				}
				// Only the first request waited for Redis to fail; the
				// others were answered at once.
				if n := count.n.Load() - before; n != 1 {
					t.Errorf("%d commands sent during the outage, want 1", n)
				}
			})
		}
	}
}

// A caller giving up is not Redis failing: the next request asks Redis as
// usual.
func TestRedisCancelledContext(t *testing.T) {
	c := newRedisClient(t, nil)
	var count countCommands
	c.AddHook(&count)
	var logs bytes.Buffer
	r := newTestRedis(c, redisPrefix(t), testclock.New(start), RedisOptions{Logger: testLogger(t, &logs)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Take(ctx, "k", ten10, 1); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with a cancelled context: err %v, want it to wrap context.Canceled and ErrUnavailable", err)
	}
	before := count.n.Load()
	res, err := r.Take(context.Background(), "k", ten10, 1)
	if err != nil || !res.Allowed {
		t.Fatalf("next request: %+v, %v", res, err)
	}
	if count.n.Load() == before {
		t.Error("the next request did not ask Redis")
	}
	if strings.Contains(logs.String(), "does not answer") {
		t.Errorf("a cancelled request was logged as an outage:\n%s", logs.String())
	}
}

// An invalid limit is the caller's error, not a reason to fall back.
func TestRedisInvalidLimit(t *testing.T) {
	c := newRedisClient(t, nil)
	r := newTestRedis(c, redisPrefix(t), nil, RedisOptions{FailureMode: FailOpen})
	_, err := r.Take(context.Background(), "k", Limit{Name: "zero"}, 1)
	if !errors.Is(err, ErrInvalidLimit) {
		t.Errorf("err %v, want ErrInvalidLimit", err)
	}
}

// proxy forwards TCP connections to Redis until stopped, and can start
// again on the same address: a Redis that goes away and comes back.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newProxy(t *testing.T) *proxy {
	opt, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: "127.0.0.1:0", target: opt.Addr}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listening: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Redis goes away and comes back: the store fails as configured meanwhile,
// then reconnects and shares the limit again, with the state Redis kept.
func TestRedisOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []FailureMode{FailClosed, FailOpen} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t)
			c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
			t.Cleanup(func() { c.Close() })
			var logs bytes.Buffer
			clk := testclock.New(start)
			r := newTestRedis(c, redisPrefix(t), clk, RedisOptions{
				FailureMode: mode,
				Fallback:    NewMemory(MemoryOptions{Now: clk.Now}),
				Logger:      testLogger(t, &logs),
			})
			r.retryWait = time.Millisecond

			if res, err := r.Take(ctx, "k", ten10, 2); err != nil || !res.Allowed || res.Degraded || res.Remaining != 3 {
				t.Fatalf("before the outage: %+v, %v", res, err)
			}

			p.stop()
			res, err := r.Take(ctx, "k", ten10, 1)
			switch mode {
			case FailClosed:
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("during the outage: err %v, want ErrUnavailable", err)
				}
			case FailOpen:
				if err != nil || !res.Degraded || !res.Allowed || res.Remaining != 4 {
					t.Fatalf("during the outage: %+v, %v; want allowed by the fallback", res, err)
				}
			}

			p.start()
			deadline := time.Now().Add(30 * time.Second) // guards against a hang only
			for {
				res, err = r.Take(ctx, "k", ten10, 1)
				if err == nil && !res.Degraded {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Redis is back but the store still answers %+v, %v", res, err)
				}
				time.Sleep(time.Millisecond)
			}
			// Redis kept the two taken before the outage; the fallback's
			// decisions were its own.
			if !res.Allowed || res.Remaining != 2 {
				t.Errorf("after the outage: %+v, want allowed with 2 remaining", res)
			}
			if n := strings.Count(logs.String(), "redis answers again"); n != 1 {
				t.Errorf("%d log lines about the recovery, want 1:\n%s", n, logs.String())
			}
		})
	}
}
