package proxy

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestActiveHealthCheck(t *testing.T) {
	var sick atomic.Bool
	var checks, sickHits, goodHits atomic.Int64
	sickURL := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/base/healthz" {
			checks.Add(1)
			if r.URL.RawQuery != "deep=1" || r.Header.Get("User-Agent") != "moat-health-check" {
				t.Errorf("health check %s %q, want /base/healthz?deep=1 from moat-health-check", r.URL, r.UserAgent())
			}
			if sick.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sickHits.Add(1)
		_, _ = io.WriteString(w, "sick")
	}).URL + "/base"
	goodURL := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			goodHits.Add(1)
		}
		// 3xx counts as healthy.
		if r.URL.Path == "/healthz" {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusFound)
		}
	}).URL
	p, rec := newProxy(t, Options{
		Upstreams:   urls(t, sickURL, goodURL),
		HealthCheck: &HealthCheck{Path: "/healthz?deep=1", Interval: 20 * time.Millisecond, Timeout: time.Second},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	p.Start(ctx) // a second Start does nothing
	f := front(t, p, nil)

	waitFor(t, "the first health checks", func() bool { return checks.Load() >= 2 })
	if p.Healthy() != 2 {
		t.Fatalf("Healthy() = %d, want 2", p.Healthy())
	}

	sick.Store(true)
	waitFor(t, "the sick upstream to be taken out", func() bool { return p.Healthy() == 1 })
	if st := p.Upstreams()[0]; st.Healthy || st.CheckOK || st.LastError == "" {
		t.Errorf("status %+v: want the sick upstream out, with its error", st)
	}
	before := sickHits.Load()
	for range 4 {
		readBody(t, get(t, f.URL+"/"))
	}
	if sickHits.Load() != before {
		t.Errorf("the sick upstream got %d requests while out", sickHits.Load()-before)
	}

	sick.Store(false)
	waitFor(t, "the upstream to be put back", func() bool { return p.Healthy() == 2 })
	before = sickHits.Load()
	for range 4 {
		readBody(t, get(t, f.URL+"/"))
	}
	if sickHits.Load() != before+2 {
		t.Errorf("the recovered upstream got %d of 4 requests, want 2", sickHits.Load()-before)
	}
	if e, ok := rec.find("upstream.down"); !ok || e.Rule != "health_check" {
		t.Errorf("events %v: want upstream.down by health_check", rec.kinds())
	}
	if _, ok := rec.find("upstream.up"); !ok {
		t.Errorf("events %v: want upstream.up", rec.kinds())
	}

	// Close stops the checks.
	p.Close()
	n := checks.Load()
	time.Sleep(100 * time.Millisecond)
	if checks.Load() != n {
		t.Errorf("%d health checks after Close", checks.Load()-n)
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	hang := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}).URL
	p, _ := newProxy(t, Options{
		Upstreams:   urls(t, hang),
		HealthCheck: &HealthCheck{Path: "/", Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond},
	})
	p.Start(context.Background())
	waitFor(t, "a hanging upstream to be taken out", func() bool { return p.Healthy() == 0 })
}
