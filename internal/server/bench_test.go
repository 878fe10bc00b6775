package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/moatgw/moat/internal/config"
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
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	yml := testConfig(b.TempDir(), "log: {access: false}", standardRoutes(up.URL))
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
