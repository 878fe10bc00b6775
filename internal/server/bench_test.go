package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/session"
)

// discardWriter is a minimal ResponseWriter, so the benchmark measures the
// gateway and not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkGatewayChain measures the whole handler chain of a public route,
// proxying to a loopback upstream: request id, client IP, routing, security
// headers, metrics, the proxy itself. The access log is off, as it is an
// I/O cost of its own.
func BenchmarkGatewayChain(b *testing.B) {
	benchChain(b, "", "")
}

// BenchmarkGatewayChainLimited is BenchmarkGatewayChain with two rate
// limits on the route (by address and for the whole route), generous
// enough never to refuse: the cost of deciding them on every request.
func BenchmarkGatewayChainLimited(b *testing.B) {
	benchChain(b, "", `    rate_limits:
      - {name: per-ip, key: ip, rate: 100000, per: 1s, burst: 1000000}
      - {name: whole, key: route, rate: 100000, per: 1s, burst: 1000000}
`)
}

func benchChain(b *testing.B, extra, routeExtra string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	yml := testConfig(b.TempDir(), "log: {access: false}"+extra, standardRoutes(up.URL)+routeExtra)
	cfg, err := config.Parse("bench.yaml", []byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.snap.Load().close()
	g := gateway{s: s}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "https://localhost/items/1", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			g.ServeHTTP(w, req)
		}
	})
}

// BenchmarkAuthenticatedRoute is BenchmarkGatewayChain on a route whose
// policy is authenticated, with a valid session cookie: the extra cost is
// reading the cookie and checking the session and its user, from the
// in-process caches on almost every request.
func BenchmarkAuthenticatedRoute(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	routes := fmt.Sprintf("  - {name: app, path: /, policy: authenticated, upstreams: [%q]}\n", up.URL)
	yml := testConfig(b.TempDir(), "log: {access: false}", routes)
	cfg, err := config.Parse("bench.yaml", []byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	ctx := context.Background()
	u, _, err := s.accounts.Service.CreateUser(ctx, "bench", "", "", []string{"user"})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := s.accounts.Sessions.Create(ctx, u.ID, []string{"pwd"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	g := gateway{s: s}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "https://localhost/items/1", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: tok})
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			g.ServeHTTP(w, req)
		}
	})
}

// BenchmarkSessionCheck is the authentication stage alone: the session
// cookie read and checked, and its user read, from the in-process caches.
func BenchmarkSessionCheck(b *testing.B) {
	yml := testConfig(b.TempDir(), "log: {access: false}", "  - {name: app, path: /, policy: authenticated, upstreams: [\"http://127.0.0.1:9\"]}\n")
	cfg, err := config.Parse("bench.yaml", []byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	ctx := context.Background()
	u, _, err := s.accounts.Service.CreateUser(ctx, "bench", "", "", []string{"user"})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := s.accounts.Sessions.Create(ctx, u.ID, []string{"pwd"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "https://localhost/", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: tok})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := s.accounts.Service.Authenticate(ctx, session.TokenFromRequest(req))
		if err != nil || p.Username != "bench" {
			b.Fatal(p, err)
		}
	}
}
