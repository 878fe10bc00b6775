package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
)

// recorder keeps the events a test gateway records.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Record(_ context.Context, e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) find(kind, rule string) *event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.events {
		if r.events[i].Kind == kind && r.events[i].Rule == rule {
			e := r.events[i]
			return &e
		}
	}
	return nil
}

type testGateway struct {
	srv    *Server
	client *http.Client
	base   string // https://127.0.0.1:port
	events *recorder
	logs   *bytes.Buffer
	logMu  *sync.Mutex
	dir    string
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// testConfig returns a config text for a gateway on loopback ports chosen by
// the kernel, with a development certificate; routes is YAML for the routes
// list, with %s replaced by upstream.
func testConfig(dir, extra, routes string) string {
	return fmt.Sprintf(`data_dir: %s
keys:
  master_key: file:%s
listen:
  https: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
limits:
  read_header_timeout: 1s
  shutdown_timeout: 5s
tls:
  dev: {}
%s
routes:
%s
`, dir, writeMasterKey(dir), extra, routes)
}

// writeMasterKey writes a fresh master key file into dir (once) and returns
// its path.
func writeMasterKey(dir string) string {
	path := filepath.Join(dir, "master.key")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		panic(err)
	}
	return path
}

func startGateway(t *testing.T, yml string) *testGateway {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	g := &testGateway{events: &recorder{}, logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{g.logMu, g.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g.srv, err = New(Options{Config: cfg, Logger: logger, Events: g.events, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
		if t.Failed() {
			g.logMu.Lock()
			t.Logf("gateway log:\n%s", g.logs.String())
			g.logMu.Unlock()
		}
	})
	pem, err := os.ReadFile(g.srv.certs.Load().m.Dev().CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	g.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	t.Cleanup(g.client.CloseIdleConnections)
	g.base = "https://" + g.srv.Addr("https").String()
	g.dir = cfg.DataDir
	return g
}

func (g *testGateway) do(t *testing.T, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, g.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// echoUpstream answers with the request headers it received as JSON, and
// sets the banners an application framework would.
func echoUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "gunicorn/19.9.0")
		w.Header().Set("X-Powered-By", "Express")
		w.Header().Set("X-Frame-Options", "ALLOWALL")
		switch r.URL.Path {
		case "/boom":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "Traceback (most recent call last): secret.py line 42 password=hunter2")
			return
		case "/slow":
			time.Sleep(700 * time.Millisecond)
		}
		h := map[string]any{"path": r.URL.Path, "headers": r.Header}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	}))
	t.Cleanup(up.Close)
	return up
}

func upstreamSaw(t *testing.T, body string) http.Header {
	t.Helper()
	var v struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("upstream body %q: %v", body, err)
	}
	return v.Headers
}

func standardRoutes(upstream string) string {
	return fmt.Sprintf(`  - name: admin
    path: /admin
    policy: deny
  - name: app
    path: /
    policy: public
    upstreams: [%s]
`, upstream)
}

func TestSecurityHeadersAndBanners(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	for _, path := range []string{"/", "/admin/x", "/boom"} {
		t.Run(path, func(t *testing.T) {
			resp, _ := g.do(t, "GET", path, nil)
			want := map[string]string{
				"Strict-Transport-Security":  "max-age=63072000; includeSubDomains",
				"X-Content-Type-Options":     "nosniff",
				"X-Frame-Options":            "DENY",
				"Referrer-Policy":            "strict-origin-when-cross-origin",
				"Cross-Origin-Opener-Policy": "same-origin",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"Permissions-Policy", "Content-Security-Policy", "X-Request-Id"} {
				if resp.Header.Get(k) == "" {
					t.Errorf("%s missing", k)
				}
			}
			for _, k := range []string{"Server", "X-Powered-By"} {
				if v := resp.Header.Get(k); v != "" {
					t.Errorf("banner %s = %q reached the client", k, v)
				}
			}
		})
	}
}

func TestHTTP2Negotiated(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	resp, _ := g.do(t, "GET", "/", nil)
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
}

func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "reserved_headers: [X-Internal-User]", standardRoutes(up.URL)))
	resp, body := g.do(t, "GET", "/", map[string]string{
		"X-Forwarded-For":   "6.6.6.6",
		"X-Forwarded-Host":  "evil.test",
		"X-Forwarded-Proto": "http",
		"Forwarded":         "for=6.6.6.6;proto=http",
		"X-Real-Ip":         "6.6.6.6",
		"X-Moat-User":       "admin",
		"X-Moat-Roles":      "admin",
		"X-Internal-User":   "root",
		"X-Request-Id":      "attacker-chosen",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	saw := upstreamSaw(t, body)
	if got := saw.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q, want the real client 127.0.0.1", got)
	}
	if got := saw.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("upstream saw X-Forwarded-Proto %q", got)
	}
	if got := saw.Get("X-Forwarded-Host"); strings.Contains(got, "evil") {
		t.Errorf("upstream saw X-Forwarded-Host %q", got)
	}
	if got := saw.Get("Forwarded"); strings.Contains(got, "6.6.6.6") {
		t.Errorf("upstream saw Forwarded %q", got)
	}
	for _, k := range []string{"X-Moat-User", "X-Moat-Roles", "X-Internal-User", "X-Real-Ip"} {
		if v := saw.Get(k); v != "" {
			t.Errorf("upstream saw %s: %q", k, v)
		}
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || id == "attacker-chosen" || saw.Get("X-Request-Id") != id {
		t.Errorf("request id: response %q, upstream %q", id, saw.Get("X-Request-Id"))
	}
}

func TestTrustedProxyChain(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "trusted_proxies: [127.0.0.1/32]", standardRoutes(up.URL)))
	_, body := g.do(t, "GET", "/", map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "lb-123"})
	saw := upstreamSaw(t, body)
	if got := saw.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q, want the trusted chain extended", got)
	}
	if got := saw.Get("X-Request-Id"); got != "lb-123" {
		t.Errorf("request id from a trusted proxy not kept: %q", got)
	}
}

func TestDenyAndNoRoute(t *testing.T) {
	hits := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer up.Close()
	routes := fmt.Sprintf(`  - name: admin
    path: /admin
    policy: deny
  - name: api
    hosts: [api.example.test]
    path: /v1
    policy: public
    upstreams: [%s]
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))

	resp, body := g.do(t, "GET", "/admin/users", map[string]string{"Accept": "application/json"})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("deny route: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, resp.Header.Get("X-Request-Id")) {
		t.Errorf("problem body lacks the request id: %s", body)
	}
	if e := g.events.find("request.denied", "policy.deny"); e == nil || e.Route != "admin" || e.ClientIP != "127.0.0.1" {
		t.Errorf("deny event: %+v", e)
	}

	for _, c := range []struct{ host, path string }{
		{"", "/v1/x"},                  // wrong host
		{"api.example.test", "/v2"},    // wrong path
		{"api.example.test", "/v1abc"}, // not a segment boundary
	} {
		resp, body := g.do(t, "GET", c.path, map[string]string{"Host": c.host})
		if resp.StatusCode != 404 || body != "404 page not found\n" {
			t.Errorf("%s%s: %d %q, want a plain 404", c.host, c.path, resp.StatusCode, body)
		}
	}
	resp, _ = g.do(t, "GET", "/v1/items", map[string]string{"Host": "API.example.test"})
	if resp.StatusCode != 200 {
		t.Errorf("matching route: %d", resp.StatusCode)
	}
	if hits != 1 {
		t.Errorf("upstream hit %d times, want 1", hits)
	}
}

func TestPathHygiene(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	addr := g.srv.Addr("https").String()
	for _, p := range []string{"/x/../admin/", "/./admin", "//admin", "/%2Fadmin", "/a%2fb", "/x/..", "/%2e%2e/admin", "/a%00b", "/a\\..\\admin",
		"/admin;x", "/x/..;/admin/users", "/admin;/users", "/a%3bb"} {
		t.Run(p, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", p)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
		})
	}
}

func TestUpstreamErrorMasked(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	resp, body := g.do(t, "GET", "/boom", map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Contains(body, "Traceback") || strings.Contains(body, "hunter2") {
		t.Errorf("upstream error body leaked: %s", body)
	}
	if !strings.Contains(body, resp.Header.Get("X-Request-Id")) {
		t.Errorf("masked body lacks the request id: %s", body)
	}
}

func TestSlowlorisCut(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	conn, err := tls.Dial("tcp", g.srv.Addr("https").String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\n")
	// Trickle header bytes, never finishing the header block.
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := conn.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("connection cut after %v (%v), want about the 1s header timeout", elapsed, err)
			}
			return
		case <-tick.C:
			if _, err := io.WriteString(conn, "X-A: b\r\n"); err != nil {
				return // cut while writing: fine
			}
		}
	}
}

func TestGracefulStop(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	res := make(chan int, 1)
	go func() {
		resp, err := g.client.Get(g.base + "/slow")
		if err != nil {
			res <- -1
			return
		}
		resp.Body.Close()
		res <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // the request is now in flight
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- g.srv.Shutdown(ctx) }()
	time.Sleep(100 * time.Millisecond)
	// While draining, the admin listener is still up and says not ready.
	resp, err := http.Get("http://" + g.srv.Addr("admin").String() + "/readyz")
	if err != nil {
		t.Fatalf("readyz while draining: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d, want 503", resp.StatusCode)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code := <-res; code != 200 {
		t.Errorf("in-flight request got %d, want 200", code)
	}
	for _, name := range []string{"https", "admin"} {
		if _, err := net.DialTimeout("tcp", g.srv.Addr(name).String(), time.Second); err == nil {
			t.Errorf("%s: new connections still accepted after shutdown", name)
		}
	}
}

func TestReloadKeepsServingOnError(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	g := startGateway(t, testConfig(dir, "", standardRoutes(up.URL)))

	// A config that validates but cannot be compiled: an upstream CA bundle
	// file that holds no certificate.
	ca := dir + "/empty-ca.pem"
	if err := os.WriteFile(ca, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badRoutes := standardRoutes("https://127.0.0.1:1") + "    upstream_tls: {ca: " + ca + "}\n"
	bad, err := config.Parse("bad.yaml", []byte(testConfig(dir, "", badRoutes)))
	if err != nil {
		t.Fatalf("the bad config should pass validation and fail compiling: %v", err)
	}
	if err := g.srv.Reload(bad); err == nil {
		t.Fatal("reload of a bad config succeeded")
	}
	if resp, _ := g.do(t, "GET", "/", nil); resp.StatusCode != 200 {
		t.Errorf("after a failed reload: %d", resp.StatusCode)
	}

	// A good reload swaps the routes: now / is denied.
	good, err := config.Parse("good.yaml", []byte(testConfig(dir, "", "  - name: all\n    path: /\n    policy: deny\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Reload(good); err != nil {
		t.Fatal(err)
	}
	if resp, _ := g.do(t, "GET", "/", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after reload: %d, want 403", resp.StatusCode)
	}
}

func TestRedirectAndAdmin(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Post("http://"+g.srv.Addr("http").String()+"/a/b?c=d", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := g.base + "/a/b?c=d"
	want = strings.Replace(want, "127.0.0.1", "127.0.0.1", 1)
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	g.do(t, "GET", "/", nil)
	admin := "http://" + g.srv.Addr("admin").String()
	for path, want := range map[string]string{
		"/healthz":           "ok",
		"/readyz":            "ready",
		"/metrics":           `moat_requests_total{code="2xx",route="app"} 1`,
		"/metrics#upstreams": `moat_upstream_healthy{route="app",upstream="` + up.URL + `"} 1`,
	} {
		resp, err := http.Get(admin + strings.Split(path, "#")[0])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

func TestAccessLogHasNoSecrets(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	g.do(t, "GET", "/items?token=sekrit-query", map[string]string{
		"Authorization": "Bearer sekrit-bearer",
		"Cookie":        "session=sekrit-cookie",
	})
	g.logMu.Lock()
	logs := g.logs.String()
	g.logMu.Unlock()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"path":"/items"`) {
		t.Fatalf("no access log line:\n%s", logs)
	}
	if strings.Contains(logs, "sekrit") {
		t.Errorf("a secret reached the log:\n%s", logs)
	}
}

func TestDenyWinsInAnySpelling(t *testing.T) {
	up := echoUpstream(t)
	routes := standardRoutes(up.URL) + fmt.Sprintf(`  - name: api
    hosts: [api.example.test]
    path: /
    policy: public
    upstreams: [%s]
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	for _, c := range []struct{ host, path string }{
		{"", "/ADMIN/users"},
		{"", "/Admin"},
		{"", "/admin.json"},
		{"", "/admin%20"},
		{"", "/admin%09"},
		{"api.example.test", "/admin/users"}, // a host's own route does not override a deny route
	} {
		resp, _ := g.do(t, "GET", c.path, map[string]string{"Host": c.host})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s: %d, want 403", c.host, c.path, resp.StatusCode)
		}
	}
	for _, p := range []string{"/administrators", "/adm", "/x/admin"} {
		if resp, _ := g.do(t, "GET", p, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %d, want 200", p, resp.StatusCode)
		}
	}
}

func TestHostHeaderHygiene(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	addr := g.srv.Addr("https").String()
	for _, host := range []string{"api.example.test:,evil.example", "a.test:80x", "a.test:123456", "a b.test", "[::1", "[::1]x"} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Host %q: %d, want 400", host, resp.StatusCode)
		}
	}
}

func TestRedirectOnlyToKnownHosts(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for host, want := range map[string]int{"localhost": 308, "127.0.0.1": 308, "evil.example": 404, "evil.example;x": 404} {
		req, _ := http.NewRequest("GET", "http://"+g.srv.Addr("http").String()+"/login", nil)
		req.Host = host
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d (Location %q)", host, resp.StatusCode, want, resp.Header.Get("Location"))
		}
	}
}

func TestScheduledBackup(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	pass := filepath.Join(dir, "backup-pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("backup: {interval: 1h, retention: 2, passphrase: file:%s}", pass)
	g := startGateway(t, testConfig(dir, extra, standardRoutes(up.URL)))
	// A passphrase backup runs scrypt twice (encrypt, then verify), which
	// the race detector on a loaded machine slows to tens of seconds.
	deadline := time.Now().Add(120 * time.Second)
	for g.events.find("backup.verified", "backup.schedule") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no backup.verified event")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := g.events.find("backup.verified", "backup.schedule")
	if e.Outcome != event.Success {
		t.Fatalf("backup event %+v", e)
	}
	if fi, err := os.Stat(e.Details["file"]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file %q: %v %v", e.Details["file"], fi, err)
	}
	resp, err := http.Get("http://" + g.srv.Addr("admin").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "moat_backup_last_verify_ok 1") || strings.Contains(string(b), "moat_backup_last_success_timestamp_seconds 0") {
		t.Errorf("backup metrics not set:\n%s", grepLines(string(b), "moat_backup"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestRefusesToStartWithoutMasterKey(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	yml := testConfig(dir, "", standardRoutes(up.URL))
	cfg, err := config.Parse("t.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)

	// Another master key: the key ring it made does not open.
	writeKey := func(b byte) {
		k := make([]byte, 32)
		for i := range k {
			k[i] = b
		}
		if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte(base64.StdEncoding.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(7)
	if _, err := New(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "master key does not match") {
		t.Errorf("wrong master key: %v", err)
	}
	// An unreadable master key file.
	if err := os.Chmod(filepath.Join(dir, "master.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "keys.master_key") {
		t.Errorf("master key file readable by others: %v", err)
	}
	// Missing.
	if err := os.Remove(filepath.Join(dir, "master.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "keys.master_key") {
		t.Errorf("missing master key: %v", err)
	}
}
