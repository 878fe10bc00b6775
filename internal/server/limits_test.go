package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
)

// TestRateLimitsThroughGateway: a global limit by address and a route
// limit by principal answer 429 with Retry-After and the RateLimit
// headers; CORS preflights use up nothing; refusals are aggregated events.
func TestRateLimitsThroughGateway(t *testing.T) {
	up := echoUpstream(t)
	extra := `rate_limits:
  global:
    - {name: per-ip, key: ip, rate: 3, per: 1h, burst: 3}`
	routes := fmt.Sprintf(`  - name: api
    path: /api
    policy: authenticated
    accept: [apikey]
    upstreams: [%[1]q]
    rate_limits:
      - {name: per-key, key: apikey, rate: 1, per: 1h, burst: 1}
  - name: site
    path: /
    policy: public
    upstreams: [%[1]q]
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), extra, routes))

	preflight := map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
	for range 5 {
		resp, _ := g.do(t, "OPTIONS", "/", preflight)
		if resp.StatusCode == http.StatusTooManyRequests {
			t.Fatal("a CORS preflight used up the allowance")
		}
	}
	for i := range 3 {
		resp, _ := g.do(t, "GET", "/", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, resp.StatusCode)
		}
		if !strings.Contains(resp.Header.Get("RateLimit-Policy"), `"per-ip"`) || resp.Header.Get("RateLimit") == "" {
			t.Errorf("request %d: RateLimit-Policy %q RateLimit %q", i+1, resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit"))
		}
	}
	for range 3 {
		resp, body := g.do(t, "GET", "/", nil)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("over the limit: %d Retry-After %q %s\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
		}
	}
	var limited []string
	for _, e := range g.events.all() {
		if e.Kind == "request.limited" {
			limited = append(limited, e.Rule)
		}
	}
	if len(limited) != 1 || limited[0] != "ratelimit.per-ip" {
		t.Errorf("limited events %q, want one (the others aggregated)", limited)
	}
}

// TestRouteLimitByKey: the route's limit counts per API key, after
// authentication.
func TestRouteLimitByKey(t *testing.T) {
	up := echoUpstream(t)
	routes := fmt.Sprintf(`  - name: api
    path: /api
    policy: authenticated
    accept: [apikey]
    upstreams: [%q]
    rate_limits:
      - {name: per-key, key: apikey, rate: 1, per: 1h, burst: 2}
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	key := func(name string) string {
		k, _, err := g.srv.apikeys.Create(t.Context(), name, "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := key("a"), key("b")
	for i, want := range []int{200, 200, 429} {
		if resp, _ := g.do(t, "GET", "/api/x", map[string]string{"X-API-Key": a}); resp.StatusCode != want {
			t.Fatalf("key a, request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	if resp, _ := g.do(t, "GET", "/api/x", map[string]string{"X-API-Key": b}); resp.StatusCode != http.StatusOK {
		t.Errorf("key b has an allowance of its own: %d", resp.StatusCode)
	}
	if resp, _ := g.do(t, "GET", "/api/x", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401 (authentication comes before the key's limit)", resp.StatusCode)
	}
}

// TestLoadShedding: a route that serves one request at once makes a
// second wait, then refuses it with 503 and Retry-After once its wait is
// over; the first still completes.
func TestLoadShedding(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	slow := newSlowUpstream(t, release)
	routes := fmt.Sprintf(`  - name: slow
    path: /
    policy: public
    max_in_flight: 1
    upstreams: [%q]
`, slow)
	g := startGateway(t, testConfig(t.TempDir(), "load_shedding: {max_queue: 1, queue_wait: 50ms}", routes))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	first := make(chan int, 1)
	go func() {
		resp, _ := g.do(t, "GET", "/first", nil)
		first <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for g.srv.snap.Load().list[0].shed.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, _ := g.do(t, "GET", "/second", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request while the first runs: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	once.Do(func() { close(release) })
	if code := <-first; code != http.StatusOK {
		t.Errorf("first request: %d", code)
	}
	if e := g.events.find("request.shed", "shed.route"); e == nil {
		t.Error("no request.shed event")
	}
}

// all returns a copy of the recorded events.
func (r *recorder) all() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// newSlowUpstream answers each request once release is closed.
func newSlowUpstream(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte("done"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSharedLimitThroughRedis: two gateways with store redis count one
// client against one allowance.
func TestSharedLimitThroughRedis(t *testing.T) {
	url := os.Getenv("MOAT_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MOAT_TEST_REDIS_URL is not set in CI")
		}
		t.Skip("MOAT_TEST_REDIS_URL is not set")
	}
	up := echoUpstream(t)
	name := fmt.Sprintf("shared-%d", time.Now().UnixNano()%1_000_000_000)
	extra := fmt.Sprintf(`rate_limits:
  store: redis
  redis_url: %s
  global:
    - {name: %s, key: ip, rate: 1, per: 1h, burst: 3}`, url, name)
	g1 := startGateway(t, testConfig(t.TempDir(), extra, standardRoutes(up.URL)))
	g2 := startGateway(t, testConfig(t.TempDir(), extra, standardRoutes(up.URL)))
	for i, g := range []*testGateway{g1, g2, g1} {
		if resp, _ := g.do(t, "GET", "/items/1", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, resp.StatusCode)
		}
	}
	for i, g := range []*testGateway{g2, g1} {
		if resp, _ := g.do(t, "GET", "/items/1", nil); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("request %d over the shared allowance: %d, want 429", i+4, resp.StatusCode)
		}
	}
}

// TestLimitByExpression: a limit keyed by a CEL expression counts each
// value apart, and requests it has no answer for share one allowance.
func TestLimitByExpression(t *testing.T) {
	up := echoUpstream(t)
	routes := fmt.Sprintf(`  - name: api
    path: /
    policy: public
    upstreams: [%q]
    rate_limits:
      - {name: per-tenant, key: expr, expr: 'request.headers["x-tenant"]', rate: 1, per: 1h, burst: 2}
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	for i, tc := range []struct {
		tenant string
		want   int
	}{
		{"a", 200}, {"a", 200}, {"a", 429},
		{"b", 200},
		{"", 200}, {"", 200}, {"", 429},
		{"b", 200}, {"b", 429},
	} {
		hdr := map[string]string{}
		if tc.tenant != "" {
			hdr["X-Tenant"] = tc.tenant
		}
		if resp, body := g.do(t, "GET", "/x", hdr); resp.StatusCode != tc.want {
			t.Fatalf("request %d (tenant %q): %d, want %d\n%s", i+1, tc.tenant, resp.StatusCode, tc.want, body)
		}
	}
}
