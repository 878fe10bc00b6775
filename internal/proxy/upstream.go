package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/event"
)

// HealthCheck configures active health checks: every Interval each upstream
// is sent GET Path; any 2xx or 3xx answer within Timeout means healthy.
type HealthCheck struct {
	Path     string        // path, with an optional query, requested from each upstream
	Interval time.Duration // time between checks; 0 means 10s
	Timeout  time.Duration // time allowed for one check; 0 means 2s
}

// upstream is one upstream server and its health. The health fields are
// atomics: they are read on every request and written on failures and by
// the health checker.
type upstream struct {
	scheme, host  string
	name          string // scheme://host[/base], for logs and status; never holds credentials
	basePath      string // decoded base path without its trailing slash; "" for none
	baseEscaped   string // escaped form of basePath
	baseRawNeeded bool   // basePath's default encoding is not right
	checkURL      *url.URL

	fails     atomic.Int32 // consecutive transport failures
	downUntil atomic.Int64 // unix nanoseconds until which passive marking keeps it out; 0 when never marked
	checkDown atomic.Bool  // the last active health check failed
	lastErr   atomic.Pointer[string]
}

func newUpstream(u *url.URL, hc *HealthCheck) (*upstream, error) {
	switch {
	case u == nil:
		return nil, errors.New("upstream is nil")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("upstream %q: no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("upstream %q: credentials in the URL are not supported", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("upstream %q: a query or fragment is not allowed", u.Redacted())
	case u.Opaque != "":
		return nil, fmt.Errorf("upstream %q: not a base URL", u.Redacted())
	}
	up := &upstream{scheme: u.Scheme, host: u.Host}
	if base := strings.TrimSuffix(u.Path, "/"); base != "" {
		up.basePath = base
		esc := (&url.URL{Path: u.Path, RawPath: u.RawPath}).EscapedPath()
		up.baseEscaped = strings.TrimSuffix(esc, "/")
		up.baseRawNeeded = u.RawPath != "" && esc != (&url.URL{Path: u.Path}).EscapedPath()
	}
	up.name = u.Scheme + "://" + u.Host + up.baseEscaped
	if hc != nil {
		cu, err := url.ParseRequestURI(hc.Path)
		if err != nil {
			return nil, fmt.Errorf("health check path %q: %w", hc.Path, err)
		}
		path, raw := upstreamPath(cu, "", up)
		up.checkURL = &url.URL{Scheme: up.scheme, Host: up.host, Path: path, RawPath: raw, RawQuery: cu.RawQuery}
	}
	return up, nil
}

// available reports whether up may be sent requests. The clock is read
// only when passive marking has ever taken up out.
func (up *upstream) available(now func() time.Time) bool {
	if up.checkDown.Load() {
		return false
	}
	if d := up.downUntil.Load(); d != 0 && now().UnixNano() < d {
		return false
	}
	return true
}

// pick returns the next available upstream in round-robin order, skipping
// not, or nil when none is available.
func (p *Proxy) pick(not *upstream) *upstream {
	n := uint32(len(p.upstreams))
	if n == 1 {
		if up := p.upstreams[0]; up != not && up.available(p.now) {
			return up
		}
		return nil
	}
	start := p.next.Add(1)
	for i := range n {
		up := p.upstreams[(start+i)%n]
		if up != not && up.available(p.now) {
			return up
		}
	}
	return nil
}

// succeeded records a response from up.
func (p *Proxy) succeeded(up *upstream) {
	if up.fails.Load() != 0 {
		up.fails.Store(0)
	}
}

// failed records a transport failure of up; the MaxFails-th in a row takes
// it out for FailTimeout and starts a new count.
func (p *Proxy) failed(ctx context.Context, up *upstream, err error) {
	up.lastErr.Store(ptr(err.Error()))
	if p.maxFails <= 0 {
		return
	}
	if up.fails.Add(1) < p.maxFails {
		return
	}
	up.fails.Store(0)
	up.downUntil.Store(p.now().Add(p.failTimeout).UnixNano())
	p.log.LogAttrs(ctx, slog.LevelWarn, "upstream marked down",
		slog.String("upstream", up.name), slog.Int("max_fails", int(p.maxFails)),
		slog.Duration("for", p.failTimeout), slog.Any("error", err))
	p.events.Record(ctx, event.Event{
		Time: p.now(), Kind: "upstream.down", Outcome: event.Failure, Route: p.route,
		Rule: "max_fails", Details: map[string]string{"upstream": up.name},
	})
}

func ptr[T any](v T) *T { return &v }

// UpstreamStatus is a snapshot of one upstream's health, for readiness
// checks and metrics.
type UpstreamStatus struct {
	URL       string    // scheme://host[/base]
	Healthy   bool      // requests are being sent to it
	CheckOK   bool      // the last active health check passed (true without checks)
	DownUntil time.Time // when passive marking lets it back in; zero when not marked
	Fails     int       // consecutive transport failures so far
	LastError string    // the last transport or health-check failure, for operators only
}

// Upstreams returns the health of every upstream, in configuration order.
// It is safe for concurrent use.
func (p *Proxy) Upstreams() []UpstreamStatus {
	now := p.now()
	out := make([]UpstreamStatus, len(p.upstreams))
	for i, up := range p.upstreams {
		s := UpstreamStatus{
			URL:     up.name,
			Healthy: up.available(func() time.Time { return now }),
			CheckOK: !up.checkDown.Load(),
			Fails:   int(up.fails.Load()),
		}
		if d := up.downUntil.Load(); d != 0 && now.UnixNano() < d {
			s.DownUntil = time.Unix(0, d)
		}
		if e := up.lastErr.Load(); e != nil {
			s.LastError = *e
		}
		out[i] = s
	}
	return out
}

// Healthy returns how many upstreams are currently sent requests. A route
// with none answers every request with 502. It is safe for concurrent use.
func (p *Proxy) Healthy() int {
	n := 0
	for _, up := range p.upstreams {
		if up.available(p.now) {
			n++
		}
	}
	return n
}

// Start begins active health checks, one goroutine per upstream, when they
// are configured; otherwise it does nothing. Checks stop when ctx is done or
// Close is called. Start may be called once; later calls do nothing.
func (p *Proxy) Start(ctx context.Context) {
	if p.hc == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	ctx, p.stop = context.WithCancel(ctx)
	for _, up := range p.upstreams {
		p.wg.Go(func() { p.checkLoop(ctx, up) })
	}
}

// Close stops health checks, waits for them to end, closes every WebSocket
// tunnel (both its connections) and idle upstream connections. From then
// on upgrade requests are refused with 503; other requests in flight are
// not interrupted. Close may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	p.closeTunnels()
	p.wg.Wait()
	p.transport.CloseIdleConnections()
}

// checkLoop checks up every Interval, give or take a tenth, after a first
// random delay of up to a fifth of it, so that upstreams and Moat instances
// do not check in step.
func (p *Proxy) checkLoop(ctx context.Context, up *upstream) {
	iv := p.hc.Interval
	t := time.NewTimer(jitter(0, iv/5))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.check(ctx, up)
		if ctx.Err() != nil {
			return
		}
		p.setChecked(ctx, up, err)
		t.Reset(jitter(iv-iv/10, iv/5))
	}
}

// jitter returns base plus a random duration in [0, spread).
func jitter(base, spread time.Duration) time.Duration {
	if spread <= 0 {
		return base
	}
	return base + rand.N(spread)
}

// check sends one health check to up.
func (p *Proxy) check(ctx context.Context, up *upstream) error {
	ctx, cancel := context.WithTimeout(ctx, p.hc.Timeout)
	defer cancel()
	req := (&http.Request{
		Method:     http.MethodGet,
		URL:        up.checkURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"moat-health-check"}},
		Host:       up.host,
	}).WithContext(ctx)
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return errors.New("health check answered " + strconv.Itoa(resp.StatusCode))
	}
	return nil
}

// setChecked records the result of a health check, logging and reporting
// a change of state.
func (p *Proxy) setChecked(ctx context.Context, up *upstream, err error) {
	down := err != nil
	if down {
		up.lastErr.Store(ptr(err.Error()))
	}
	if up.checkDown.Swap(down) == down {
		return
	}
	e := event.Event{
		Time: p.now(), Route: p.route, Rule: "health_check",
		Details: map[string]string{"upstream": up.name},
	}
	if down {
		p.log.LogAttrs(ctx, slog.LevelWarn, "upstream failed its health check",
			slog.String("upstream", up.name), slog.Any("error", err))
		e.Kind, e.Outcome = "upstream.down", event.Failure
	} else {
		p.log.LogAttrs(ctx, slog.LevelInfo, "upstream passed its health check",
			slog.String("upstream", up.name))
		e.Kind, e.Outcome = "upstream.up", event.Success
	}
	p.events.Record(ctx, e)
}
