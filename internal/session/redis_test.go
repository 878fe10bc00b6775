package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitRefused polls m until it refuses tok, for at most limit, and returns
// how long that took.
func waitRefused(t *testing.T, m *Manager, tok string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := m.Lookup(context.Background(), tok)
		if errors.Is(err, ErrNoSession) {
			return time.Since(start)
		}
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("the other instance still accepts the revoked session after %v", limit)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// Two Moat instances (two clients, two Managers) on one Redis: a
// revocation on one reaches the other's cache, which would otherwise trust
// the session for an hour.
func TestRedisCrossInstanceRevocation(t *testing.T) {
	ctx := context.Background()
	c1 := newRedisClient(t)
	prefix := redisPrefix(t, c1)
	c2 := newRedisClient(t)
	clk := newClock()
	m1 := newManager(t, NewRedis(c1, prefix), clk, Options{CacheTTL: time.Hour})
	m2 := newManager(t, NewRedis(c2, prefix), clk, Options{CacheTTL: time.Hour})

	t.Run("revoke", func(t *testing.T) {
		tok, _, err := m1.Create(ctx, "alice", nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Lookup(ctx, tok); err != nil {
			t.Fatal(err)
		}
		h, _ := parseToken(tok)
		if m2.cache.get(&h, clk.Now()) == nil {
			t.Fatal("the second instance did not cache the session")
		}
		if err := m1.Revoke(ctx, tok); err != nil {
			t.Fatal(err)
		}
		t.Logf("revocation reached the other instance in %v", waitRefused(t, m2, tok, time.Second))
	})
	t.Run("revoke user", func(t *testing.T) {
		var toks []string
		for range 2 {
			tok, _, err := m1.Create(ctx, "bob", nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m2.Lookup(ctx, tok); err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok)
		}
		if n, err := m1.RevokeUser(ctx, "bob"); err != nil || n != 2 {
			t.Fatalf("RevokeUser = %d, %v", n, err)
		}
		for _, tok := range toks {
			waitRefused(t, m2, tok, time.Second)
		}
	})
	t.Run("rotate", func(t *testing.T) {
		old, _, err := m1.Create(ctx, "carol", []string{"pwd"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Lookup(ctx, old); err != nil {
			t.Fatal(err)
		}
		tok, _, err := m1.Rotate(ctx, old, []string{"pwd", "otp"}, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		waitRefused(t, m2, old, time.Second)
		if _, err := m2.Lookup(ctx, tok); err != nil {
			t.Errorf("the rotated session on the other instance: %v", err)
		}
	})
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

func TestRedisRoundTrips(t *testing.T) {
	ctx := context.Background()
	r, client, _ := newTestRedis(t)
	hook := &countCommands{}
	client.AddHook(hook)
	clk := newClock()
	m := newManager(t, r, clk, Options{CacheTTL: -1})
	tok, _, err := m.Create(ctx, "alice", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		advance time.Duration
		want    int64
	}{
		{"lookup", 0, 1},
		{"lookup that touches", TouchInterval, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.advance)
			hook.n.Store(0)
			if _, err := m.Lookup(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if n := hook.n.Load(); n != tc.want {
				t.Errorf("%d Redis commands, want %d", n, tc.want)
			}
		})
	}
}

func TestRedisKeys(t *testing.T) {
	ctx := context.Background()
	r, client, prefix := newTestRedis(t)
	clk := newClock()
	m := newManager(t, r, clk, Options{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 40 * time.Minute})
	tok, s, err := m.Create(ctx, "alice", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	key := r.key(s.IDHash)
	pttl := func(k string) time.Duration {
		t.Helper()
		d, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	within := func(what string, got, want time.Duration) {
		t.Helper()
		if got > want || got < want-time.Minute {
			t.Errorf("%s TTL %v, want about %v", what, got, want)
		}
	}
	within("new session", pttl(key), 30*time.Minute)              // idle expiry first
	within("user set", pttl(prefix+"user:alice"), 40*time.Minute) // the absolute expiry
	if n, _ := client.Exists(ctx, prefix+tok).Result(); n != 0 {
		t.Error("a key is named after the token")
	}

	clk.Advance(25 * time.Minute)
	if _, err := m.Lookup(ctx, tok); err != nil {
		t.Fatal(err)
	}
	within("touched session", pttl(key), 15*time.Minute) // now the absolute expiry is first

	if err := m.Revoke(ctx, tok); err != nil {
		t.Fatal(err)
	}
	rev, err := client.HGet(ctx, key, "rev").Result()
	if err != nil || rev == "0" {
		t.Errorf("revoked session's rev field = %q, %v; want the revocation time", rev, err)
	}
	within("revoked session", pttl(key), 15*time.Minute) // kept, marked, until it would expire

	// Expired members leave the user's set.
	client.Del(ctx, key)
	if l, err := r.ListByUser(ctx, "alice"); err != nil || len(l) != 0 {
		t.Errorf("ListByUser after the hash expired = %d, %v", len(l), err)
	}
	if n, _ := client.SCard(ctx, prefix+"user:alice").Result(); n != 0 {
		t.Errorf("user set keeps %d expired members", n)
	}
}

// A session record that something else wrote badly is an error, never a
// session and never "no session".
func TestRedisMalformedRecord(t *testing.T) {
	ctx := context.Background()
	r, client, _ := newTestRedis(t)
	m := newManager(t, r, newClock(), Options{})
	tok, _, _ := newToken()
	h, _ := parseToken(tok)
	client.HSet(ctx, r.key(h[:]), "uid", "alice", "exp", "soon")
	s, err := m.Lookup(ctx, tok)
	if err == nil || errors.Is(err, ErrNoSession) || s != nil {
		t.Errorf("Lookup of a malformed record = %v, %v; want an error that is not ErrNoSession", s, err)
	}
}

// A Redis that does not answer: every operation fails closed.
func TestRedisUnavailable(t *testing.T) {
	redisURL(t) // the same skip rule as the other Redis tests
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	m, err := New(NewRedis(client, "moat-test:down:"), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, _, _ := newToken()
	s, err := m.Lookup(ctx, tok)
	if err == nil || errors.Is(err, ErrNoSession) || s != nil {
		t.Errorf("Lookup = %v, %v; want an error that is not ErrNoSession", s, err)
	}
	if _, _, err := m.Create(ctx, "alice", nil, time.Time{}); err == nil {
		t.Error("Create succeeded")
	}
	if err := m.Revoke(ctx, tok); err == nil {
		t.Error("Revoke succeeded")
	}
	if _, _, err := m.Rotate(ctx, tok, nil, time.Time{}); err == nil || errors.Is(err, ErrNoSession) {
		t.Errorf("Rotate = %v, want an error that is not ErrNoSession", err)
	}
	if _, err := m.RevokeUser(ctx, "alice"); err == nil {
		t.Error("RevokeUser succeeded")
	}
	if _, err := m.List(ctx, "alice"); err == nil {
		t.Error("List succeeded")
	}
	if m.cacheLive.Load() {
		t.Error("the cache is live without a revocation feed")
	}
}

// tcpProxy forwards loopback connections to target until cut.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	t.Cleanup(p.Cut)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				in.Close()
				out.Close()
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

// Cut closes the listener and every forwarded connection.
func (p *tcpProxy) Cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
}

// When the revocation feed breaks, revocations may be missed: the cache is
// dropped and sessions are checked against Redis again, so a Redis that is
// gone means errors, not cached sessions.
func TestRedisFeedLossFailsClosed(t *testing.T) {
	ctx := context.Background()
	direct := newRedisClient(t)
	prefix := redisPrefix(t, direct)
	proxy := newTCPProxy(t, direct.Options().Addr)
	opt := *direct.Options()
	opt.Addr = proxy.ln.Addr().String()
	opt.DialTimeout = 200 * time.Millisecond
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	viaProxy := redis.NewClient(&opt)
	t.Cleanup(func() { viaProxy.Close() })

	clk := newClock()
	m1 := newManager(t, NewRedis(direct, prefix), clk, Options{})
	m2 := newManager(t, NewRedis(viaProxy, prefix), clk, Options{CacheTTL: time.Hour})
	tok, _, err := m1.Create(ctx, "alice", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Lookup(ctx, tok); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s, err := m2.Lookup(ctx, tok)
		if err != nil {
			if errors.Is(err, ErrNoSession) || s != nil {
				t.Fatalf("Lookup = %v, %v; want an error that is not ErrNoSession", s, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sessions are still served from the cache 3s after Redis went away")
		}
		time.Sleep(time.Millisecond)
	}
	if m2.cacheLive.Load() {
		t.Error("the cache is still live")
	}
}

// recorder is a revocationWatcher that writes down what it hears.
type recorder struct{ got []string }

func (r *recorder) feedUp()                            { r.got = append(r.got, "up") }
func (r *recorder) feedDown(error)                     { r.got = append(r.got, "down") }
func (r *recorder) revokedSession(h [sha256.Size]byte) { r.got = append(r.got, "s") }
func (r *recorder) revokedUser(u string)               { r.got = append(r.got, "u:"+u) }
func (r *recorder) revokedUnknown()                    { r.got = append(r.got, "?") }

func TestDispatchRevocation(t *testing.T) {
	hexID := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	for _, tc := range []struct{ name, msg, want string }{
		{"session", "s:" + hexID, "s"},
		{"user", "u:alice", "u:alice"},
		{"empty user", "u:", "?"},
		{"short hash", "s:" + hexID[:62], "?"},
		{"long hash", "s:" + hexID + "00", "?"},
		{"not hex", "s:" + hexID[:62] + "zz", "?"},
		{"unknown kind", "x:1", "?"},
		{"empty", "", "?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			dispatchRevocation(tc.msg, &r)
			if len(r.got) != 1 || r.got[0] != tc.want {
				t.Errorf("heard %v, want [%s]", r.got, tc.want)
			}
		})
	}
}

func TestEscapeGlob(t *testing.T) {
	if got, want := escapeGlob(`a*b?c[d]e\f^`), `a\*b\?c\[d\]e\\f\^`; got != want {
		t.Errorf("escapeGlob = %q, want %q", got, want)
	}
}
