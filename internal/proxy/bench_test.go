package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/request"
)

// benchBody is what the benchmark upstream answers: a small JSON document,
// the common case for an API gateway.
var benchBody = `{"id":42,"name":"widget","tags":["a","b","c"],"price":9.99}` + "\n"

func benchUpstream(b *testing.B) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "bench")
		_, _ = io.WriteString(w, benchBody)
	}))
	b.Cleanup(s.Close)
	return s
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}
}

// runClients sends GET requests to url from parallel goroutines.
func runClients(b *testing.B, url string) {
	c := benchClient()
	b.Cleanup(c.CloseIdleConnections)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Forwarded-For", "198.51.100.1")
		for pb.Next() {
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func withBenchInfo(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := netip.MustParseAddrPort(r.RemoteAddr).Addr()
		info := &request.Info{ID: "0123456789abcdef", ClientIP: peer, Peer: peer, Scheme: "https"}
		h.ServeHTTP(w, r.WithContext(request.With(r.Context(), info)))
	})
}

// BenchmarkProxy measures a whole request through Moat's proxy: client,
// front server, proxy, upstream, all on loopback. Everything in the process
// counts, so compare it with BenchmarkHTTPUtilProxy rather than read it
// alone.
func BenchmarkProxy(b *testing.B) {
	up := benchUpstream(b)
	p, err := New(Options{
		Route: "bench", Upstreams: urls(b, up.URL), MaxFails: 3, MaskErrors: true,
		MaxRequestBody: 1 << 20, ReservedHeaders: []string{"X-Internal"},
		Logger: slog.New(slog.DiscardHandler),
	})
	must(b, err)
	b.Cleanup(p.Close)
	f := httptest.NewServer(withBenchInfo(p))
	b.Cleanup(f.Close)
	runClients(b, f.URL+"/api/items/42?fields=all")
}

// BenchmarkHTTPUtilProxy is the same path through httputil.ReverseProxy
// with the default transport, for comparison.
func BenchmarkHTTPUtilProxy(b *testing.B) {
	up := benchUpstream(b)
	target := mustURL(b, up.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	f := httptest.NewServer(withBenchInfo(rp))
	b.Cleanup(f.Close)
	runClients(b, f.URL+"/api/items/42?fields=all")
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }

// BenchmarkServeHTTP calls ServeHTTP directly, leaving out the client and
// the front server, to show the proxy's own cost (with the transport and
// upstream).
func BenchmarkServeHTTP(b *testing.B) {
	up := benchUpstream(b)
	p, err := New(Options{Route: "bench", Upstreams: urls(b, up.URL), MaxFails: 3, MaskErrors: true})
	must(b, err)
	b.Cleanup(p.Close)
	info := &request.Info{ID: "0123456789abcdef", ClientIP: netip.MustParseAddr("198.51.100.1"),
		Peer: netip.MustParseAddr("198.51.100.1"), Scheme: "https"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "https://app.example/api/items/42?fields=all", nil)
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "application/json")
		req = req.WithContext(request.With(req.Context(), info))
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			p.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
}

// BenchmarkOutboundHeader measures the request header sanitiser alone.
func BenchmarkOutboundHeader(b *testing.B) {
	p, err := New(Options{Upstreams: urls(b, "http://127.0.0.1:1"), ReservedHeaders: []string{"X-Internal"}})
	must(b, err)
	in := http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip, deflate, br"},
		"Accept-Language": {"en-GB,en;q=0.9"},
		"Cookie":          {"session=" + strings.Repeat("a", 40)},
		"User-Agent":      {"Mozilla/5.0"},
		"X-Forwarded-For": {"198.51.100.1"},
		"Connection":      {"keep-alive"},
	}
	info := &request.Info{ID: "0123456789abcdef", ClientIP: netip.MustParseAddr("198.51.100.1"),
		Peer: netip.MustParseAddr("198.51.100.1"), Scheme: "https"}
	b.ReportAllocs()
	for b.Loop() {
		p.outboundHeader(in, info, "app.example", "", new([numSlots]string))
	}
}
