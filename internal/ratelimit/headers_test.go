package ratelimit

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

func TestHeaders(t *testing.T) {
	ip := Limit{Name: "ip", Rate: 10, Period: time.Second, Burst: 20}          // w = 2s
	user := Limit{Name: "user", Rate: 100, Period: time.Minute, Burst: 100}    // w = 60s
	fast := Limit{Name: "fast", Rate: 10, Period: time.Second, Burst: 1}       // w = 0.1s, shown as 1
	third := Limit{Name: "third", Rate: 3, Period: 10 * time.Second, Burst: 2} // w = 6.67s, shown as 7
	for _, tc := range []struct {
		name        string
		results     []Result
		policy      string
		state       string
		retryAfter  string
		existing    http.Header
		wantMissing []string
	}{
		{
			name:        "nothing",
			wantMissing: []string{"RateLimit", "RateLimit-Policy", "Retry-After"},
		},
		{
			name:    "one allowed",
			results: []Result{{Allowed: true, Limit: ip, Remaining: 19, Reset: 100 * ms}},
			policy:  `"ip";q=20;w=2`, state: `"ip";r=19;t=1`,
			wantMissing: []string{"Retry-After"},
		},
		{
			name:    "full allowance",
			results: []Result{{Allowed: true, Limit: user, Remaining: 100}},
			policy:  `"user";q=100;w=60`, state: `"user";r=100;t=0`,
		},
		{
			name:    "refused: retry after rounded up",
			results: []Result{{Limit: ip, RetryAfter: 1100 * ms, Reset: 2 * time.Second}},
			policy:  `"ip";q=20;w=2`, state: `"ip";r=0;t=2`, retryAfter: "2",
		},
		{
			name:    "refused for under a second: retry after 1",
			results: []Result{{Limit: fast, RetryAfter: 30 * ms, Reset: 100 * ms}},
			policy:  `"fast";q=1;w=1`, state: `"fast";r=0;t=1`, retryAfter: "1",
		},
		{
			name: "fewer remaining first",
			results: []Result{
				{Allowed: true, Limit: user, Remaining: 93, Reset: 5 * time.Second},
				{Allowed: true, Limit: ip, Remaining: 2, Reset: 1800 * ms},
			},
			policy: `"ip";q=20;w=2, "user";q=100;w=60`,
			state:  `"ip";r=2;t=2, "user";r=93;t=5`,
		},
		{
			name: "the refusal first, whatever the order given",
			results: []Result{
				{Allowed: true, Limit: ip, Remaining: 0, Reset: 2 * time.Second},
				{Limit: user, Remaining: 0, RetryAfter: 600 * ms, Reset: time.Minute},
				{Allowed: true, Limit: third, Remaining: 1, Reset: 3 * time.Second},
			},
			policy:     `"user";q=100;w=60, "ip";q=20;w=2, "third";q=2;w=7`,
			state:      `"user";r=0;t=60, "ip";r=0;t=2, "third";r=1;t=3`,
			retryAfter: "1",
		},
		{
			name: "the longest wait first and in Retry-After",
			results: []Result{
				{Limit: ip, RetryAfter: 100 * ms, Reset: 2 * time.Second},
				{Limit: user, RetryAfter: 30 * time.Second, Reset: time.Minute},
			},
			policy:     `"user";q=100;w=60, "ip";q=20;w=2`,
			state:      `"user";r=0;t=60, "ip";r=0;t=2`,
			retryAfter: "30",
		},
		{
			name:     "replaces what was there",
			existing: http.Header{"Ratelimit": {"stale"}, "Ratelimit-Policy": {"stale"}, "Retry-After": {"99"}},
			results:  []Result{{Allowed: true, Limit: ip, Remaining: 20}},
			policy:   `"ip";q=20;w=2`, state: `"ip";r=20;t=0`,
			wantMissing: []string{"Retry-After"},
		},
		{
			name:    "a name that needs escaping is escaped",
			results: []Result{{Allowed: true, Limit: Limit{Name: "a\"b\\c\n", Rate: 1, Period: time.Second, Burst: 1}, Remaining: 1}},
			policy:  `"a\"b\\c";q=1;w=1`, state: `"a\"b\\c";r=1;t=0`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.existing {
				h[k] = v
			}
			Headers(h, tc.results...)
			for _, f := range []struct{ name, want string }{
				{"RateLimit-Policy", tc.policy},
				{"RateLimit", tc.state},
				{"Retry-After", tc.retryAfter},
			} {
				if f.want == "" {
					continue
				}
				if got := h.Values(f.name); len(got) != 1 || got[0] != f.want {
					t.Errorf("%s: %q, want %q", f.name, got, f.want)
				}
			}
			for _, name := range tc.wantMissing {
				if got := h.Values(name); len(got) != 0 {
					t.Errorf("%s: %q, want none", name, got)
				}
			}
		})
	}
}

func TestKeyIP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ip     string
		prefix int
		want   string
	}{
		{"IPv4 as is", "203.0.113.7", 64, "203.0.113.7"},
		{"IPv4 ignores the IPv6 prefix", "203.0.113.7", 48, "203.0.113.7"},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:203.0.113.7", 64, "203.0.113.7"},
		{"IPv6 grouped by /64", "2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"same /64, same key", "2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
		{"another /64, another key", "2001:db8:1:3::1", 64, "2001:db8:1:3::/64"},
		{"IPv6 grouped by /48", "2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"IPv6 whole", "2001:db8::1", 128, "2001:db8::1/128"},
		{"default prefix for 0", "2001:db8:1:2:3:4:5:6", 0, "2001:db8:1:2::/64"},
		{"default prefix out of range", "2001:db8:1:2:3:4:5:6", 200, "2001:db8:1:2::/64"},
		{"zone dropped", "fe80::1%eth0", 64, "fe80::/64"},
		{"invalid", "", 64, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			if got := KeyIP(ip, tc.prefix); got != tc.want {
				t.Errorf("KeyIP(%s, %d) = %q, want %q", tc.ip, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit Limit
		want  []string // substrings of the error; none for a valid limit
	}{
		{"valid", Limit{Name: "ip-burst", Rate: 10, Period: time.Second, Burst: 20}, nil},
		{"one a day", Limit{Name: "daily.login_v2", Rate: 1, Period: 24 * time.Hour, Burst: 5}, nil},
		{"a million a second", Limit{Name: "x", Rate: 1_000_000, Period: time.Second, Burst: 1}, nil},
		{"zero", Limit{}, []string{"name is empty", "rate is 0", "period is 0s", "burst is 0"}},
		{"negative", Limit{Name: "x", Rate: -1, Period: -time.Second, Burst: -1}, []string{"rate is -1", "period is -1s", "burst is -1"}},
		{"name with a space", Limit{Name: "ip burst", Rate: 1, Period: time.Second, Burst: 1}, []string{`name has ' '`}},
		{"name with a quote", Limit{Name: `ip"`, Rate: 1, Period: time.Second, Burst: 1}, []string{`name has '"'`}},
		{"name with a colon", Limit{Name: "a:b", Rate: 1, Period: time.Second, Burst: 1}, []string{`name has ':'`}},
		{"long name", Limit{Name: strings.Repeat("n", 65), Rate: 1, Period: time.Second, Burst: 1}, []string{"longer than 64"}},
		{"faster than a microsecond", Limit{Name: "x", Rate: 2_000_000, Period: time.Second, Burst: 1}, []string{"more than one per 1µs"}},
		{"burst refilling for decades", Limit{Name: "x", Rate: 1, Period: 24 * time.Hour, Burst: 5000}, []string{"takes more than"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limit.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A round trip through a real server: a limited handler answers 429 with
// the fields a client reads, and lets requests through again once the
// interval has passed.
func TestHTTPRoundTrip(t *testing.T) {
	clk := testclock.New(start)
	m := NewMemory(MemoryOptions{Now: clk.Now})
	l := Limit{Name: "ip", Rate: 1, Period: 2 * time.Second, Burst: 2}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		res, _ := m.Take(r.Context(), KeyIP(netip.MustParseAddr(host), 64), l, 1)
		Headers(w.Header(), res)
		if !res.Allowed {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	for i, want := range []struct {
		advance    time.Duration
		status     int
		state      string
		retryAfter string
	}{
		{0, 200, `"ip";r=1;t=2`, ""},
		{0, 200, `"ip";r=0;t=4`, ""},
		{0, 429, `"ip";r=0;t=4`, "2"},
		{time.Second, 429, `"ip";r=0;t=3`, "1"},
		{time.Second, 200, `"ip";r=0;t=4`, ""},
	} {
		clk.Advance(want.advance)
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want.status {
			t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, want.status)
		}
		if got := resp.Header.Get("RateLimit-Policy"); got != `"ip";q=2;w=4` {
			t.Errorf("request %d: RateLimit-Policy %q", i, got)
		}
		if got := resp.Header.Get("RateLimit"); got != want.state {
			t.Errorf("request %d: RateLimit %q, want %q", i, got, want.state)
		}
		if got := resp.Header.Get("Retry-After"); got != want.retryAfter {
			t.Errorf("request %d: Retry-After %q, want %q", i, got, want.retryAfter)
		}
	}
}

func TestFailureModeString(t *testing.T) {
	for mode, want := range map[FailureMode]string{FailClosed: "fail_closed", FailOpen: "fail_open", 7: "FailureMode(7)"} {
		if got := mode.String(); got != want {
			t.Errorf("%d: %q, want %q", int(mode), got, want)
		}
	}
}
