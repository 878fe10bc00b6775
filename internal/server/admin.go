package server

import (
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves the admin listener: liveness, readiness and metrics.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("shutting down\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// redirector is the plain-HTTP listener's handler: every request is sent to
// the same URL over HTTPS with 308, which keeps the method and body. Only
// hosts that routes name or that Moat has a certificate for are redirected;
// others get 404, so the listener is no open redirector.
type redirector struct{ s *Server }

func (rd redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := rd.s.snap.Load()
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || !snap.redirects.has(strings.Trim(host, "[]")) {
		http.NotFound(w, r)
		return
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if _, port, err := net.SplitHostPort(snap.cfg.Listen.HTTPS); err == nil && port != "443" {
		if a := rd.s.Addr("https"); a != nil {
			_, port, _ = net.SplitHostPort(a.String())
		}
		host += ":" + port
	}
	w.Header().Set("Connection", "close")
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}
