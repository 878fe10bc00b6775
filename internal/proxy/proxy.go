// Package proxy is Moat's reverse proxy for one route: it balances requests
// over the route's upstreams, keeps their health, rewrites forwarding headers
// so that an upstream only believes what Moat established, strips hop-by-hop,
// reserved and banner headers, caps bodies, masks upstream errors, and passes
// WebSockets and streamed responses through.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/moatgw/moat/internal/clientip"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/hygiene"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Options configure a Proxy. Zero values give the documented defaults.
type Options struct {
	Route       string      // route name for logs and events
	Upstreams   []*url.URL  // http or https base URLs; a base path is prefixed to every request path
	StripPrefix string      // path prefix removed before proxying, at a segment boundary; "" for none
	UpstreamTLS *tls.Config // for https upstreams, from UpstreamTLSConfig; nil uses Go's defaults
	// MaxFails transport failures in a row take an upstream out for
	// FailTimeout (default 10s). 0 turns passive marking off.
	MaxFails    int
	FailTimeout time.Duration
	HealthCheck *HealthCheck // active checks; nil for none
	// Largest request and response bodies in bytes; 0 means unlimited.
	MaxRequestBody, MaxResponseBody int64
	// Time allowed for an upstream to start its response once the request
	// is written; 0 means no limit.
	Timeout time.Duration
	// Replace the body of every upstream 5xx answer with a generic problem.
	MaskErrors bool
	// Largest number of connections open to each upstream, busy or idle;
	// 0 means 1024. A request that finds them all busy waits for one, for
	// at most Timeout, then gets 503.
	MaxUpstreamConns int
	// Largest number of WebSocket tunnels open at once through this Proxy;
	// 0 means 1024. Past it an upgrade request gets 503.
	MaxTunnels int
	// A WebSocket tunnel on which no data has moved in either direction for
	// this long is closed; 0 means 5 minutes.
	TunnelIdleTimeout time.Duration
	// Request headers never passed to an upstream, in addition to X-Moat-*.
	ReservedHeaders []string
	// Decorate, when set, is called with the client's request and the
	// sanitised header about to go upstream, and may add to it: it is how
	// Moat's own X-Moat-* headers, such as an identity assertion, are sent.
	// It must be safe for concurrent use.
	Decorate func(r *http.Request, h http.Header)
	// Inspect, when set, is called with each upstream response before it
	// is passed on (not with 5xx answers masked by MaskErrors, nor with
	// protocol switches). It may read the body if it puts the same bytes
	// back, and must not change anything else. It must be safe for
	// concurrent use.
	Inspect func(resp *http.Response)
	// Cookies are attributes added to the upstream's Set-Cookie fields
	// where it left them out.
	Cookies CookieFlags
	Logger  *slog.Logger   // scoped by the caller (Moat's server adds the route); nil discards
	Events  event.Recorder // receives upstream and size-limit events; nil discards
}

// Proxy forwards requests to the upstreams of one route. It is safe for
// concurrent use; build one per route and Close it when the route goes away.
type Proxy struct {
	route         string
	upstreams     []*upstream
	next          atomic.Uint32
	strip         string
	maxFails      int32
	failTimeout   time.Duration
	hc            *HealthCheck
	maxReq        int64
	maxResp       int64
	timeout       time.Duration
	maxConns      int64
	inflight      atomic.Int64 // requests between pick and the end of their response, tunnels aside
	mask          bool
	maxTunnels    int
	tunnelIdle    time.Duration
	reservedNames []string
	decorate      func(*http.Request, http.Header)
	inspect       func(*http.Response)
	cookies       CookieFlags
	transport     *http.Transport
	log           *slog.Logger
	events        event.Recorder
	now           func() time.Time

	mu      sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc
	wg      sync.WaitGroup
	tunnels map[*tunnel]struct{} // open or opening; guarded by mu
}

// Transport defaults.
const (
	dialTimeout         = 5 * time.Second
	tlsHandshakeTimeout = 5 * time.Second
	idleConnTimeout     = 90 * time.Second
	maxIdlePerHost      = 1024
	defaultMaxConns     = 1024
	maxResponseHeader   = 1 << 20
	defaultFailTimeout  = 10 * time.Second
	defaultInterval     = 10 * time.Second
	defaultCheckTimeout = 2 * time.Second
)

// New checks o and builds a Proxy with its own connection pool.
func New(o Options) (*Proxy, error) {
	var errs []error
	if len(o.Upstreams) == 0 {
		errs = append(errs, errors.New("no upstream"))
	}
	if o.MaxFails < 0 || o.FailTimeout < 0 || o.MaxRequestBody < 0 || o.MaxResponseBody < 0 || o.Timeout < 0 ||
		o.MaxUpstreamConns < 0 || o.MaxTunnels < 0 || o.TunnelIdleTimeout < 0 {
		errs = append(errs, errors.New("max fails, fail timeout, body limits, timeouts and connection limits must not be negative"))
	}
	strip := strings.TrimSuffix(o.StripPrefix, "/")
	if o.StripPrefix != "" && o.StripPrefix[0] != '/' {
		errs = append(errs, fmt.Errorf("strip prefix %q must start with /", o.StripPrefix))
	}
	var hc *HealthCheck
	if o.HealthCheck != nil {
		c := *o.HealthCheck
		if _, err := url.ParseRequestURI(c.Path); err != nil || c.Path[0] != '/' {
			errs = append(errs, fmt.Errorf("health check path %q must be a path starting with /", c.Path))
			c.Path = "/"
		}
		if c.Interval < 0 || c.Timeout < 0 {
			errs = append(errs, errors.New("health check interval and timeout must not be negative"))
		}
		if c.Interval == 0 {
			c.Interval = defaultInterval
		}
		if c.Timeout == 0 {
			c.Timeout = defaultCheckTimeout
		}
		hc = &c
	}
	p := &Proxy{
		route:       o.Route,
		strip:       strip,
		maxFails:    int32(min(o.MaxFails, 1<<30)),
		failTimeout: o.FailTimeout,
		hc:          hc,
		maxReq:      o.MaxRequestBody,
		maxResp:     o.MaxResponseBody,
		timeout:     o.Timeout,
		maxConns:    int64(o.MaxUpstreamConns),
		mask:        o.MaskErrors,
		maxTunnels:  o.MaxTunnels,
		tunnelIdle:  o.TunnelIdleTimeout,
		decorate:    o.Decorate,
		inspect:     o.Inspect,
		cookies:     o.Cookies,
		log:         o.Logger,
		events:      o.Events,
		now:         time.Now,
	}
	if p.failTimeout == 0 {
		p.failTimeout = defaultFailTimeout
	}
	if p.maxConns == 0 {
		p.maxConns = defaultMaxConns
	}
	if p.maxTunnels == 0 {
		p.maxTunnels = defaultMaxTunnels
	}
	if p.tunnelIdle == 0 {
		p.tunnelIdle = defaultTunnelIdle
	}
	https := false
	for _, u := range o.Upstreams {
		up, err := newUpstream(u, hc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		https = https || up.scheme == "https"
		p.upstreams = append(p.upstreams, up)
	}
	for _, h := range o.ReservedHeaders {
		cn := canonicalName(strings.TrimSpace(h))
		if !httpguts.ValidHeaderFieldName(cn) {
			errs = append(errs, fmt.Errorf("reserved header %q is not a header name", h))
			continue
		}
		p.reservedNames = append(p.reservedNames, cn)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("proxy for route %q: %w", o.Route, err)
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "proxy")
	if p.events == nil {
		p.events = event.Discard{}
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		Proxy:                  nil, // never the environment's proxy
		DialContext:            dialer.DialContext,
		TLSClientConfig:        o.UpstreamTLS,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ForceAttemptHTTP2:      https,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    min(maxIdlePerHost, int(p.maxConns)),
		MaxConnsPerHost:        int(p.maxConns),
		IdleConnTimeout:        idleConnTimeout,
		ResponseHeaderTimeout:  o.Timeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeader,
	}
	return p, nil
}

// fallbackInfo describes a request that reached the proxy without a
// request.Info: nothing in its headers is believed.
func fallbackInfo(r *http.Request) *request.Info {
	peer := clientip.PeerAddr(r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &request.Info{ClientIP: peer, Peer: peer, Scheme: scheme}
}

// ServeHTTP forwards r to an available upstream and copies the answer back.
// Errors are answered with problem documents carrying the request id:
// 405 for CONNECT, 413 for a body over the limit, 502 when no upstream is
// available or one cannot be reached, 504 when it does not answer in time,
// 503 when no upstream connection or WebSocket tunnel is free in time, and,
// with MaskErrors, a generic problem for an upstream 5xx. Once the response
// has started, a failure (the upstream breaking off, or its body passing the
// limit) aborts the response with http.ErrAbortHandler so that the client
// sees it incomplete rather than cut short in silence.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := request.From(r.Context())
	if info == nil {
		info = fallbackInfo(r)
	}
	if r.Method == http.MethodConnect {
		// A route forwards requests; it never opens tunnels.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		p.reject(w, r, info, http.StatusMethodNotAllowed, "", nil)
		return
	}
	if p.maxReq > 0 && r.ContentLength > p.maxReq {
		p.tooLarge(w, r, info)
		return
	}
	up := p.pick(nil)
	if up == nil {
		p.upstreamError(w, r, info, nil, http.StatusBadGateway, "no_upstream", errors.New("no healthy upstream"))
		return
	}
	if upgrade := upgradeType(r); upgrade != "" {
		p.serveTunnel(w, r, info, up, upgrade)
		return
	}
	// Past MaxUpstreamConns requests in flight, a request may have to wait
	// for a connection: only then is the wait watched, so that the usual
	// request pays nothing for it.
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	p.forward(w, r, info, up, "", nil, p.timeout > 0 && n > p.maxConns)
}

// forward sends r to up and copies the answer back. upgrade is the protocol
// being switched to, with tun its tunnel, or "" and nil. When bounded is
// set, getting a connection to the upstream may take at most the route's
// Timeout.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, upgrade string, tun *tunnel, bounded bool) {
	ctx := r.Context()
	o := new(outRequest)
	hdr := p.outboundHeader(r.Header, info, r.Host, upgrade, &o.vals)
	if p.decorate != nil {
		p.decorate(r, hdr)
	}
	// src is r with the context of the round trip.
	src := r
	var cw *connWatch
	if bounded || tun != nil {
		src, cw = p.watchConn(r, bounded)
		defer cw.release()
	}
	var body *requestBody
	out := p.outbound(o, src, up, hdr)
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &requestBody{rc: r.Body, left: -1}
		if p.maxReq > 0 {
			body.left = p.maxReq
		}
		out.Body = body
	}

	resp, err := p.transport.RoundTrip(out)
	if err != nil && body == nil && r.ContentLength == 0 && idempotent(r.Method) && src.Context().Err() == nil && !isTimeout(err) {
		// Nothing was lost on the way: try once more elsewhere.
		if next := p.pick(up); next != nil {
			p.failed(ctx, up, err)
			p.log.LogAttrs(ctx, slog.LevelDebug, "retrying on another upstream",
				slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.Any("error", err))
			up = next
			resp, err = p.transport.RoundTrip(p.outbound(new(outRequest), src, up, hdr))
		}
	}
	if cw != nil && cw.settle() && ctx.Err() == nil {
		// No connection came within the timeout. A response that raced
		// the cancellation would break off on its first read.
		if err == nil {
			resp.Body.Close()
		}
		w.Header()["Retry-After"] = []string{"1"}
		p.upstreamError(w, r, info, up, http.StatusServiceUnavailable, "upstream_conns", errConnWait)
		return
	}
	if err != nil {
		p.roundTripError(w, r, info, up, body, err)
		return
	}
	p.succeeded(up)
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusSwitchingProtocols {
		var upConn net.Conn
		if cw != nil {
			upConn = cw.conn()
		}
		p.serveUpgrade(w, r, info, up, upgrade, resp, tun, upConn)
		return
	}
	if p.mask && resp.StatusCode >= 500 {
		p.maskError(w, r, info, up, resp)
		return
	}
	if p.inspect != nil {
		p.inspect(resp)
	}
	if p.maxResp > 0 && resp.ContentLength > p.maxResp {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "response_too_large",
			errors.New("upstream response of "+strconv.FormatInt(resp.ContentLength, 10)+" bytes is over the limit"))
		return
	}

	h := w.Header()
	copyResponseHeader(h, resp.Header)
	hardenCookies(h, p.cookies)
	setRequestID(h, info, &o.vals)
	if len(resp.Trailer) > 0 {
		announceTrailers(h, resp.Header["Connection"], resp.Trailer)
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0 || isEventStream(resp.Header["Content-Type"])
	if stream {
		_ = http.NewResponseController(w).Flush()
	}
	_, err = copyResponse(w, resp.Body, resp.ContentLength, stream, p.maxResp)
	switch {
	case err == nil:
		if len(resp.Trailer) > 0 {
			copyTrailers(h, resp.Header["Connection"], resp.Trailer)
		}
	case errors.Is(err, errClientWrite) || ctx.Err() != nil:
		// The client went away; nothing to tell it.
	case errors.Is(err, errResponseTooLarge):
		p.log.LogAttrs(ctx, slog.LevelWarn, "upstream response cut off at the limit",
			slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.Int64("limit", p.maxResp))
		panic(http.ErrAbortHandler)
	default:
		p.log.LogAttrs(ctx, slog.LevelWarn, "upstream response broke off",
			slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.Any("error", err))
		panic(http.ErrAbortHandler)
	}
}

// setRequestID makes Moat's request id the response's only one. Moat's
// server sets it before the proxy runs, and the upstream's own is never
// copied (see responseDrop); this covers a proxy used on its own. vals
// holds the id, as outboundHeader left it, or is nil.
func setRequestID(h http.Header, info *request.Info, vals *[numSlots]string) {
	if _, ok := h["X-Request-Id"]; ok || info.ID == "" {
		return
	}
	if vals != nil && vals[slotRequestID] == info.ID {
		// Shared with the upstream request's header; neither is modified.
		h["X-Request-Id"] = vals[slotRequestID : slotRequestID+1 : slotRequestID+1]
		return
	}
	h["X-Request-Id"] = []string{info.ID}
}

// outRequest is a request to an upstream with its URL and the values of
// the headers Moat sets, in one allocation.
type outRequest struct {
	req  http.Request
	url  url.URL
	vals [numSlots]string
}

// outbound builds in o the request sent to up: a shallow copy of r (same
// context and body) with the upstream's URL and host, the sanitised header,
// and no trailers.
func (p *Proxy) outbound(o *outRequest, r *http.Request, up *upstream, hdr http.Header) *http.Request {
	o.req = *r
	out := &o.req
	path, raw := upstreamPath(r.URL, p.strip, up)
	o.url = url.URL{Scheme: up.scheme, Host: up.host, Path: path, RawPath: raw, RawQuery: r.URL.RawQuery}
	out.URL = &o.url
	out.Host = ""
	out.RequestURI = ""
	out.Header = hdr
	out.Trailer = nil
	out.TransferEncoding = nil
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil
	}
	return out
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v := ct[0]
	const want = "text/event-stream"
	return len(v) >= len(want) && strings.EqualFold(v[:len(want)], want) &&
		(len(v) == len(want) || v[len(want)] == ';' || v[len(want)] == ' ')
}

// announceTrailers lists in h's Trailer header the upstream's trailers
// that may reach the client: the same hop-by-hop, banner and
// Connection-named headers are left out as from the header. conn holds the
// upstream's Connection values.
func announceTrailers(h http.Header, conn []string, trailer http.Header) {
	var buf [4]string
	tokens := connTokens(buf[:0], conn)
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		if !responseDropped(k, tokens) {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
}

// copyTrailers passes on the upstream's trailers, announced or not, less
// those announceTrailers leaves out.
func copyTrailers(h http.Header, conn []string, trailer http.Header) {
	var buf [4]string
	tokens := connTokens(buf[:0], conn)
	for k, vv := range trailer {
		if !responseDropped(k, tokens) {
			h[http.TrailerPrefix+k] = vv
		}
	}
}

// roundTripError answers a request whose upstream round trip failed.
func (p *Proxy) roundTripError(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, body *requestBody, err error) {
	ctx := r.Context()
	var state int32
	if body != nil {
		state = body.state.Load()
	}
	var ref *hygiene.Refusal
	if body != nil {
		ref = body.refusal.Load()
	}
	switch {
	case state == bodyTooLarge:
		p.tooLarge(w, r, info)
	case ref != nil:
		// The body broke one of the route's request limits on its way.
		p.events.Record(ctx, event.Event{
			Time: p.now(), Kind: "request.denied", Outcome: event.Denied,
			ClientIP: addrString(info.ClientIP), Route: p.route, RequestID: info.ID, Rule: ref.Rule,
			Details: map[string]string{"method": r.Method},
		})
		problem.Write(w, r, info.ID, ref.Problem())
	case ctx.Err() != nil || state == bodyClientErr:
		// The client went away or broke its upload: not the upstream's fault.
		p.log.LogAttrs(ctx, slog.LevelDebug, "client gave up",
			slog.String("request_id", info.ID), slog.Any("error", err))
		p.reject(w, r, info, http.StatusBadRequest, "", nil)
	case isTimeout(err):
		p.failed(ctx, up, err)
		p.upstreamError(w, r, info, up, http.StatusGatewayTimeout, "timeout", err)
	default:
		p.failed(ctx, up, err)
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "unreachable", err)
	}
}

// reject answers with a client error problem.
func (p *Proxy) reject(w http.ResponseWriter, r *http.Request, info *request.Info, status int, detail string, err error) {
	problem.Write(w, r, info.ID, &problem.Error{Status: status, Detail: detail, Err: err})
}

// tooLarge answers 413 to a request whose body is over the limit and
// records a request.body_too_large event.
func (p *Proxy) tooLarge(w http.ResponseWriter, r *http.Request, info *request.Info) {
	p.events.Record(r.Context(), event.Event{
		Time: p.now(), Kind: "request.body_too_large", Outcome: event.Denied,
		ClientIP: addrString(info.ClientIP), Route: p.route, RequestID: info.ID, Rule: "max_request_body",
		Details: map[string]string{"limit": strconv.FormatInt(p.maxReq, 10)},
	})
	p.reject(w, r, info, http.StatusRequestEntityTooLarge, "The request body is larger than this service accepts.", nil)
}

// upstreamError logs err, records an upstream.error event and answers with a
// generic problem of the given status. err never reaches the client.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, status int, rule string, err error) {
	ctx := r.Context()
	name := ""
	if up != nil {
		name = up.name
	}
	p.log.LogAttrs(ctx, slog.LevelWarn, "upstream request failed",
		slog.String("upstream", name), slog.String("request_id", info.ID),
		slog.String("rule", rule), slog.Int("status", status), slog.Any("error", err))
	p.events.Record(ctx, event.Event{
		Time: p.now(), Kind: "upstream.error", Outcome: event.Failure,
		ClientIP: addrString(info.ClientIP), Route: p.route, RequestID: info.ID, Rule: rule,
		Details: map[string]string{"upstream": name, "status": strconv.Itoa(status)},
	})
	problem.Write(w, r, info.ID, &problem.Error{Status: status, Err: err})
}

// maskError replaces an upstream 5xx answer with a generic problem of the
// same status. Only Retry-After is kept from the upstream's header.
func (p *Proxy) maskError(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, resp *http.Response) {
	p.log.LogAttrs(r.Context(), slog.LevelDebug, "upstream error masked",
		slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.Int("status", resp.StatusCode))
	// Read a little so that the connection can be reused.
	bp := getBuf(resp.ContentLength)
	_, _ = resp.Body.Read(*bp)
	putBuf(bp)
	if ra := resp.Header["Retry-After"]; len(ra) > 0 {
		w.Header()["Retry-After"] = ra
	}
	title := http.StatusText(resp.StatusCode)
	if title == "" {
		title = "Upstream Error"
	}
	problem.Write(w, r, info.ID, &problem.Error{Status: resp.StatusCode, Title: title})
}
