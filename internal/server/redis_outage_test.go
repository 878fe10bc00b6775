package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/accounts"
)

// privateRedis is a redis-server of the test's own, which the test may
// stop and start again without disturbing other tests.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

// startPrivateRedis starts a redis-server on a free loopback port. It
// skips the test when there is no redis-server, and fails it under CI.
func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed in CI")
		}
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &privateRedis{t: t, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not answer within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *privateRedis) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// TestRedisStoppedMidTest: with the limiter's Redis killed while the
// gateway runs, a fail_closed limit refuses with 503, a fail_open limit
// goes on limiting in memory, and sign-in fails closed (no attempt that
// cannot be counted); when Redis comes back on the same address, all
// of it works again without a restart.
func TestRedisStoppedMidTest(t *testing.T) {
	rd := startPrivateRedis(t)
	extra := fmt.Sprintf(`rate_limits:
  store: redis
  redis_url: %q
accounts:
  lockout: {max_failures: 3, back_off: 0s}`, rd.url())
	g := startLoginGatewayWith(t, "", extra, func(up string) string {
		return fmt.Sprintf(`  - name: strict
    path: /strict
    policy: public
    upstreams: [%[1]q]
    rate_limits:
      - {name: strict, key: ip, rate: 100, per: 1h, burst: 100, failure_mode: fail_closed}
  - name: lenient
    path: /lenient
    policy: public
    upstreams: [%[1]q]
    rate_limits:
      - {name: lenient, key: ip, rate: 1, per: 1h, burst: 2, failure_mode: fail_open}
`, up)
	})
	b := g.newBrowser(t)
	get := func(path string) int {
		t.Helper()
		return b.do("GET", path, nil, nil).status
	}
	if s := get("/strict"); s != http.StatusOK {
		t.Fatalf("strict route with Redis up: %d", s)
	}
	if s := get("/lenient"); s != http.StatusOK {
		t.Fatalf("lenient route with Redis up: %d", s)
	}
	if r := b.login("nobody", "wrong password here", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("failed sign-in with Redis up: %s", r)
	}

	rd.stop()
	if s := get("/strict"); s != http.StatusServiceUnavailable {
		t.Errorf("fail_closed limit with Redis down: %d, want 503", s)
	}
	// fail_open: the local limiter decides, with its own allowance of 2.
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		if s := get("/lenient"); s != want {
			t.Errorf("fail_open request %d with Redis down: %d, want %d", i+1, s, want)
		}
	}
	if r := b.login("nobody", "wrong password here", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("sign-in with the failure counts unreachable: %s, want 503", r)
	}

	rd.start()
	// The stores ask Redis again a second after a failure.
	deadline := time.Now().Add(10 * time.Second)
	for get("/strict") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the fail_closed limit still refuses 10s after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		r := b.login("nobody", "wrong password here", "")
		if r.status == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-in still refused 10s after Redis came back: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLockoutSharedThroughRedis: two gateways counting failures in one
// Redis lock an account after max_failures in all, wherever they landed.
func TestLockoutSharedThroughRedis(t *testing.T) {
	rd := startPrivateRedis(t)
	extra := fmt.Sprintf(`rate_limits:
  store: redis
  redis_url: %q
accounts:
  lockout: {max_failures: 3, address_max_failures: 100, back_off: 0s}`, rd.url())
	g1 := startLoginGateway(t, "", extra)
	g2 := startLoginGateway(t, "", extra)
	ctx := t.Context()
	for i, g := range []*loginGateway{g1, g2, g1} {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		if _, err := g.srv.accounts.Service.PasswordLogin(ctx, "victim", "wrong password here", ip); err != accounts.ErrLoginFailed {
			t.Fatalf("attempt %d: %v, want ErrLoginFailed", i+1, err)
		}
	}
	if e := g1.events.find("account.locked", "lockout.account"); e == nil || e.Principal != "victim" {
		t.Fatalf("no account.locked event after three failures across two gateways: %+v", e)
	}
	if _, err := g2.srv.accounts.Service.PasswordLogin(ctx, "victim", "wrong password here", netip.MustParseAddr("192.0.2.9")); err != accounts.ErrLoginFailed {
		t.Fatalf("attempt on the locked account: %v", err)
	}
	if !g2.events.hasReason("login.failed", "victim", "account_locked") {
		t.Fatal("the other gateway did not refuse the locked account")
	}
}
