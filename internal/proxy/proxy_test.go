package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/request"
)

// namedUpstream answers every request with its name and counts them.
func namedUpstream(t testing.TB, name string, hits *atomic.Int64) string {
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, name)
	}).URL
}

// flakyUpstream drops the connection without answering while broken is set.
func flakyUpstream(t testing.TB, name string, broken *atomic.Bool, hits *atomic.Int64) string {
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		hits.Add(1)
		_, _ = io.WriteString(w, name)
	}).URL
}

func TestRoundRobin(t *testing.T) {
	var a, b, c atomic.Int64
	p, _ := newProxy(t, Options{Upstreams: urls(t,
		namedUpstream(t, "a", &a), namedUpstream(t, "b", &b), namedUpstream(t, "c", &c))})
	f := front(t, p, nil)
	seq := ""
	for range 30 {
		seq += readBody(t, get(t, f.URL+"/"))
	}
	if a.Load() != 10 || b.Load() != 10 || c.Load() != 10 {
		t.Errorf("hits a=%d b=%d c=%d, want 10 each", a.Load(), b.Load(), c.Load())
	}
	// Strict rotation: no upstream twice in a row.
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("sequence %q sends two requests in a row to %c", seq, seq[i])
		}
	}
}

func TestPassiveFailureMarking(t *testing.T) {
	var broken atomic.Bool
	var goodHits, flakyHits atomic.Int64
	broken.Store(true)
	good := namedUpstream(t, "good", &goodHits)
	flaky := flakyUpstream(t, "flaky", &broken, &flakyHits)
	p, rec := newProxy(t, Options{Upstreams: urls(t, good, flaky), MaxFails: 2, FailTimeout: time.Minute})
	clock := newFakeClock()
	p.now = clock.Now
	f := front(t, p, nil)

	// GETs that land on the broken upstream are retried on the good one.
	for i := range 6 {
		if body := readBody(t, get(t, f.URL+"/")); body != "good" {
			t.Fatalf("request %d answered %q, want good", i, body)
		}
	}
	st := p.Upstreams()
	if !st[0].Healthy || st[1].Healthy {
		t.Fatalf("status %+v: want only the flaky upstream marked down", st)
	}
	if st[1].DownUntil.IsZero() || st[1].LastError == "" {
		t.Errorf("status %+v: want a down-until time and the last error", st[1])
	}
	if e, ok := rec.find("upstream.down"); !ok || e.Rule != "max_fails" {
		t.Errorf("events %v: want upstream.down by max_fails", rec.kinds())
	}
	if p.Healthy() != 1 {
		t.Errorf("Healthy() = %d, want 1", p.Healthy())
	}

	// While down it is not even tried.
	broken.Store(false)
	before := flakyHits.Load()
	for range 4 {
		readBody(t, get(t, f.URL+"/"))
	}
	if flakyHits.Load() != before {
		t.Errorf("the marked-down upstream got %d requests", flakyHits.Load()-before)
	}

	// After FailTimeout it is back.
	clock.Advance(time.Minute + time.Second)
	if p.Healthy() != 2 {
		t.Fatalf("Healthy() = %d after the fail timeout, want 2", p.Healthy())
	}
	for range 4 {
		readBody(t, get(t, f.URL+"/"))
	}
	if flakyHits.Load() != before+2 {
		t.Errorf("the recovered upstream got %d of 4 requests, want 2", flakyHits.Load()-before)
	}
}

func TestRetryOnlyWithoutBody(t *testing.T) {
	var broken atomic.Bool
	var hits atomic.Int64
	broken.Store(true)
	p, _ := newProxy(t, Options{Upstreams: urls(t,
		flakyUpstream(t, "flaky", &broken, &hits), namedUpstream(t, "good", &hits))})
	f := front(t, p, nil)

	var posts502 int
	for range 4 {
		if body := readBody(t, get(t, f.URL+"/")); body != "good" {
			t.Fatalf("GET answered %q, want good after a retry", body)
		}
		resp, err := http.Post(f.URL+"/", "text/plain", strings.NewReader("payload"))
		must(t, err)
		readBody(t, resp)
		if resp.StatusCode == http.StatusBadGateway {
			posts502++
		}
	}
	if posts502 == 0 {
		t.Error("no POST was answered 502: a request with a body must not be retried")
	}
}

func TestNoHealthyUpstream(t *testing.T) {
	p, rec := newProxy(t, Options{Upstreams: urls(t, deadAddr(t)), MaxFails: 1, FailTimeout: time.Hour})
	f := front(t, p, nil)
	readBody(t, get(t, f.URL+"/")) // marks the only upstream down
	start := time.Now()
	resp := get(t, f.URL+"/")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("answer took %v, want it at once", d)
	}
	var pb struct {
		Status    int    `json:"status"`
		RequestID string `json:"request_id"`
	}
	must(t, json.Unmarshal([]byte(body), &pb))
	if pb.Status != 502 || !strings.HasPrefix(pb.RequestID, "req-") {
		t.Errorf("problem %s: want status 502 and the request id", body)
	}
	if e, ok := rec.find("upstream.error"); !ok || e.Outcome != "failure" {
		t.Errorf("events %v: want upstream.error failure", rec.kinds())
	}
}

func TestUpstreamErrors(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	slow := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	tests := []struct {
		name     string
		upstream string
		status   int
		rule     string
	}{
		{"connection refused", deadAddr(t), http.StatusBadGateway, "unreachable"},
		{"response header timeout", slow.URL, http.StatusGatewayTimeout, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, rec := newProxy(t, Options{Upstreams: urls(t, tt.upstream), Timeout: 100 * time.Millisecond})
			f := front(t, p, nil)
			resp := get(t, f.URL+"/x")
			body := readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want problem+json", ct)
			}
			for _, leak := range []string{"dial", "refused", "127.0.0.1", "timeout awaiting", "net/http"} {
				if strings.Contains(body, leak) {
					t.Errorf("body %q leaks %q", body, leak)
				}
			}
			if !strings.Contains(body, `"request_id":"req-`) {
				t.Errorf("body %q: want the request id", body)
			}
			e, ok := rec.find("upstream.error")
			if !ok || e.Outcome != "failure" || e.Rule != tt.rule || e.RequestID == "" || e.Route != "test" {
				t.Errorf("event %+v (found %v): want upstream.error failure rule %s", e, ok, tt.rule)
			}
		})
	}
}

func TestMaskErrors(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Powered-By", "PHP/5.3")
		w.Header().Set("Retry-After", "30")
		w.Header().Set("X-Debug", "on")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "Traceback: password=hunter2 at db.internal:5432")
	})
	tests := []struct {
		name   string
		mask   bool
		accept string
	}{
		{"masked json", true, "application/json"},
		{"masked html", true, "text/html"},
		{"passed through", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL), MaskErrors: tt.mask})
			f := front(t, p, nil)
			req, _ := http.NewRequest(http.MethodGet, f.URL+"/", nil)
			req.Header.Set("Accept", tt.accept)
			resp := do(t, req)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503 kept", resp.StatusCode)
			}
			if resp.Header.Get("Retry-After") != "30" {
				t.Errorf("Retry-After %q, want it kept", resp.Header.Get("Retry-After"))
			}
			if resp.Header.Get("X-Powered-By") != "" {
				t.Error("X-Powered-By reached the client")
			}
			leaked := strings.Contains(body, "hunter2")
			if tt.mask {
				if leaked || resp.Header.Get("X-Debug") != "" {
					t.Errorf("masked answer leaks the upstream's: %q %v", body, resp.Header)
				}
				if !strings.Contains(body, "req-") || !strings.Contains(body, "Service Unavailable") {
					t.Errorf("masked body %q: want a generic title and the request id", body)
				}
			} else if !leaked {
				t.Errorf("body %q: want the upstream's body when masking is off", body)
			}
		})
	}
}

func TestBannersRemoved(t *testing.T) {
	banners := []string{"Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version",
		"X-Runtime", "X-Generator", "Via", "X-Debug-Token", "Alt-Svc"}
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		for _, b := range banners {
			w.Header().Set(b, "leaky/1.0")
		}
		w.Header().Set("X-App", "kept")
		w.Header().Set("Connection", "X-Hop-Response")
		w.Header().Set("X-Hop-Response", "gone")
		_, _ = io.WriteString(w, "ok")
	})
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	resp := get(t, front(t, p, nil).URL+"/")
	readBody(t, resp)
	for _, b := range append(banners, "X-Hop-Response") {
		if v := resp.Header.Get(b); v != "" {
			t.Errorf("%s: %q reached the client", b, v)
		}
	}
	if resp.Header.Get("X-App") != "kept" {
		t.Errorf("X-App %q, want kept", resp.Header.Get("X-App"))
	}
}

func TestRequestBodyLimit(t *testing.T) {
	var hits atomic.Int64
	var got atomic.Int64
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, err := io.Copy(io.Discard, r.Body)
		got.Store(n)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	p, rec := newProxy(t, Options{Upstreams: urls(t, up.URL), MaxRequestBody: 1000})
	f := front(t, p, nil)
	tests := []struct {
		name      string
		size      int
		chunked   bool
		status    int
		reachesUp string // "yes", "no", or "" when it depends on timing
	}{
		{"length at the limit", 1000, false, 200, "yes"},
		{"length over the limit", 1001, false, 413, "no"},
		{"chunked at the limit", 1000, true, 200, "yes"},
		{"chunked over the limit", 64 << 10, true, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			var body io.Reader = strings.NewReader(strings.Repeat("x", tt.size))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest(http.MethodPost, f.URL+"/", body)
			resp := do(t, req)
			out := readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, out, tt.status)
			}
			if tt.status == 413 {
				if !strings.Contains(out, "req-") {
					t.Errorf("413 body %q: want the request id", out)
				}
				if e, ok := rec.find("request.body_too_large"); !ok || e.Outcome != "denied" {
					t.Errorf("events %v: want request.body_too_large denied", rec.kinds())
				}
			}
			if reached := hits.Load() > before; tt.reachesUp != "" && reached != (tt.reachesUp == "yes") {
				t.Errorf("upstream reached: %v, want %s", reached, tt.reachesUp)
			}
			if tt.status == 200 && got.Load() != int64(tt.size) {
				t.Errorf("upstream got %d bytes, want %d", got.Load(), tt.size)
			}
		})
	}
}

func TestResponseBodyLimit(t *testing.T) {
	big := strings.Repeat("y", 5000)
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			_, _ = io.WriteString(w, big[:2500])
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, big[2500:])
			return
		}
		w.Header().Set("Content-Length", "5000")
		_, _ = io.WriteString(w, big)
	})
	p, rec := newProxy(t, Options{Upstreams: urls(t, up.URL), MaxResponseBody: 1000})
	f := front(t, p, nil)

	t.Run("declared length over the limit", func(t *testing.T) {
		resp := get(t, f.URL+"/")
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "yyy") {
			t.Errorf("status %d body %q, want 502 without the upstream's body", resp.StatusCode, body)
		}
		if e, ok := rec.find("upstream.error"); !ok || e.Rule != "response_too_large" {
			t.Errorf("events %v: want upstream.error response_too_large", rec.kinds())
		}
	})
	t.Run("streamed body over the limit", func(t *testing.T) {
		resp := get(t, f.URL+"/chunked")
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("read %d bytes and a clean end, want the response broken off", len(b))
		}
		if len(b) > 1000 {
			t.Errorf("client got %d bytes, want at most 1000", len(b))
		}
	})
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no upstream", Options{}, "no upstream"},
		{"bad scheme", Options{Upstreams: urls(t, "ftp://h")}, "scheme"},
		{"credentials", Options{Upstreams: urls(t, "http://u:p@h")}, "credentials"},
		{"query", Options{Upstreams: urls(t, "http://h/?a=1")}, "query"},
		{"relative prefix", Options{Upstreams: urls(t, "http://h"), StripPrefix: "api"}, "strip prefix"},
		{"health path", Options{Upstreams: urls(t, "http://h"), HealthCheck: &HealthCheck{Path: "health"}}, "health check path"},
		{"reserved name", Options{Upstreams: urls(t, "http://h"), ReservedHeaders: []string{"bad name"}}, "reserved header"},
		{"negative", Options{Upstreams: urls(t, "http://h"), MaxRequestBody: -1}, "negative"},
		{"negative tunnel idle", Options{Upstreams: urls(t, "http://h"), TunnelIdleTimeout: -1}, "negative"},
		{"negative conns", Options{Upstreams: urls(t, "http://h"), MaxUpstreamConns: -1, MaxTunnels: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error about %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "u:p") {
				t.Errorf("error %q shows credentials", err)
			}
		})
	}
}

func TestTrailers(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("Trailer", "X-Checksum, Server, X-Powered-By, X-Hop, X-Request-Id")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set("Server", "leaky/1.0")
		w.Header().Set("X-Powered-By", "PHP/5.3")
		w.Header().Set("X-Hop", "gone")
		w.Header().Set("X-Request-Id", "upstream-id")
		// Trailers that were not announced.
		w.Header().Set(http.TrailerPrefix+"X-Runtime", "0.042")
		w.Header().Set(http.TrailerPrefix+"X-Signature", "sig")
	})
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	resp := get(t, front(t, p, nil).URL+"/")
	// Before the body is read, Trailer holds the announced names.
	var announced []string
	for k := range resp.Trailer {
		announced = append(announced, k)
	}
	if len(announced) != 1 || announced[0] != "X-Checksum" {
		t.Errorf("announced trailers %q, want only X-Checksum", announced)
	}
	if body := readBody(t, resp); body != "body" {
		t.Fatalf("body %q", body)
	}
	for k, want := range map[string]string{"X-Checksum": "abc123", "X-Signature": "sig"} {
		if got := resp.Trailer.Get(k); got != want {
			t.Errorf("trailer %s %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"Server", "X-Powered-By", "X-Hop", "X-Runtime", "X-Request-Id"} {
		if v := resp.Trailer.Get(k); v != "" {
			t.Errorf("trailer %s: %q reached the client", k, v)
		}
	}
}

func TestResponseRequestID(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Request-Id", "upstream-1")
		w.Header().Add("X-Request-Id", "upstream-2")
		w.Header().Add("x_request_id", "upstream-3")
		_, _ = io.WriteString(w, "ok")
	})
	tests := []struct {
		name    string
		gateway bool // the front sets the id on the response first, as Moat's server does
	}{
		{"behind Moat's server", true},
		{"on its own", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
			f := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				info := untrusted(r)
				info.ID = "moat-id"
				if tt.gateway {
					w.Header()["X-Request-Id"] = []string{info.ID}
				}
				p.ServeHTTP(w, r.WithContext(request.With(r.Context(), info)))
			}))
			t.Cleanup(f.Close)
			resp := get(t, f.URL+"/")
			readBody(t, resp)
			if ids := resp.Header["X-Request-Id"]; len(ids) != 1 || ids[0] != "moat-id" {
				t.Errorf("X-Request-Id %q, want Moat's id alone", ids)
			}
			if v := resp.Header.Get("X_request_id"); v != "" {
				t.Errorf("X_request_id %q reached the client", v)
			}
		})
	}
}

func TestMaxUpstreamConns(t *testing.T) {
	// The upstream answers /slow with its headers at once and its body
	// only when released, so that its connection stays busy without the
	// route timeout running.
	held := make(chan chan struct{}, 1)
	var conns atomic.Int64
	us := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			release := make(chan struct{})
			held <- release
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "done")
	}))
	us.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	us.Start()
	t.Cleanup(us.Close)

	// slow sends a request to /slow and returns once the upstream holds it,
	// with the function that lets it finish, called at the latest when the
	// test ends.
	slow := func(t *testing.T, base string) (*http.Response, func()) {
		t.Helper()
		resp := get(t, base+"/slow")
		select {
		case release := <-held:
			done := sync.OnceFunc(func() { close(release) })
			t.Cleanup(done)
			return resp, done
		case <-time.After(5 * time.Second):
			t.Fatal("the slow request did not reach the upstream")
			return nil, nil
		}
	}

	t.Run("default", func(t *testing.T) {
		p, _ := newProxy(t, Options{Upstreams: urls(t, us.URL)})
		if got := p.transport.MaxConnsPerHost; got != defaultMaxConns {
			t.Errorf("MaxConnsPerHost %d, want %d", got, defaultMaxConns)
		}
	})
	t.Run("refused after the timeout", func(t *testing.T) {
		conns.Store(0)
		p, rec := newProxy(t, Options{Upstreams: urls(t, us.URL), MaxUpstreamConns: 1, Timeout: 300 * time.Millisecond})
		f := front(t, p, nil)
		slowResp, release := slow(t, f.URL)
		// Without a bound the request would wait as long as the client.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.URL+"/fast", nil)
		resp := do(t, req)
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if !strings.Contains(body, "req-") {
			t.Errorf("body %q: want a problem with the request id", body)
		}
		if e, ok := rec.find("upstream.error"); !ok || e.Rule != "upstream_conns" {
			t.Errorf("event %+v (found %v): want upstream.error rule upstream_conns", e, ok)
		}
		release()
		if b := readBody(t, slowResp); b != "done" {
			t.Errorf("held request got %q", b)
		}
		if resp := get(t, f.URL+"/fast"); resp.StatusCode != http.StatusOK {
			t.Errorf("status %d once the connection is free, want 200", resp.StatusCode)
		} else {
			readBody(t, resp)
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("upstream saw %d connections, want 1", n)
		}
		if s := p.Upstreams()[0]; s.Fails != 0 || !s.Healthy {
			t.Errorf("upstream %+v: waiting for a connection must not count against it", s)
		}
	})
	t.Run("waits for a free connection", func(t *testing.T) {
		conns.Store(0)
		p, _ := newProxy(t, Options{Upstreams: urls(t, us.URL), MaxUpstreamConns: 1, Timeout: 10 * time.Second})
		f := front(t, p, nil)
		slowResp, release := slow(t, f.URL)
		fast := make(chan int, 1)
		go func() {
			resp, err := http.Get(f.URL + "/fast")
			if err != nil {
				fast <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			fast <- resp.StatusCode
		}()
		select {
		case code := <-fast:
			t.Fatalf("second request answered %d while the only connection was busy", code)
		case <-time.After(200 * time.Millisecond):
		}
		release()
		readBody(t, slowResp)
		if code := <-fast; code != http.StatusOK {
			t.Errorf("status %d, want 200 once the connection is free", code)
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("upstream saw %d connections, want 1", n)
		}
	})
}

// TestWithoutRequestInfo checks that a request reaching the proxy without
// a request.Info is treated as coming from an untrusted client.
func TestWithoutRequestInfo(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	f := httptest.NewServer(p)
	t.Cleanup(f.Close)
	req, _ := http.NewRequest(http.MethodGet, f.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	s := decodeSeen(t, do(t, req))
	if got := s.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the peer only", got)
	}
}

func TestConnectRefused(t *testing.T) {
	var hits atomic.Int64
	p, _ := newProxy(t, Options{Upstreams: urls(t, namedUpstream(t, "a", &hits))})
	f := front(t, p, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.URL, "http://"))
	must(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || hits.Load() != 0 {
		t.Errorf("status %d with %d upstream hits, want 405 and none", resp.StatusCode, hits.Load())
	}
}
