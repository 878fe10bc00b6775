package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/request"
)

// Temporary: serves the proxy for CPU-per-request measurement.
func TestServeForMeasurement(t *testing.T) {
	addr := os.Getenv("PROXY_MEASURE_ADDR")
	if addr == "" {
		t.Skip()
	}
	p, err := New(Options{Route: "m", Upstreams: urls(t, "http://127.0.0.1:18090"), MaxFails: 3, FailTimeout: 10e9,
		MaskErrors: true, MaxRequestBody: 10 << 20, Timeout: 30e9, Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := netip.MustParseAddrPort(r.RemoteAddr).Addr()
		info := &request.Info{ID: "0123456789abcdef", ClientIP: peer, Peer: peer, Scheme: "https"}
		p.ServeHTTP(w, r.WithContext(request.With(r.Context(), info)))
	})
	if os.Getenv("PROXY_MEASURE_HTTPUTIL") != "" {
		target := mustURL(t, "http://127.0.0.1:18090")
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() }}
		if os.Getenv("PROXY_MEASURE_HTTPUTIL") == "tuned" {
			rp.Transport = p.transport
		}
		h = http.HandlerFunc(rp.ServeHTTP)
	}
	srv := &http.Server{Addr: addr, Handler: h}
	if secs, _ := strconv.Atoi(os.Getenv("PROXY_MEASURE_SECS")); secs > 0 {
		time.AfterFunc(time.Duration(secs)*time.Second, func() { srv.Close() })
	}
	_ = srv.ListenAndServe()
}
