package server

import (
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/admin"
	"github.com/moatgw/moat/internal/assertion"
	"github.com/moatgw/moat/internal/clientip"
	"github.com/moatgw/moat/internal/cors"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/framing"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// gateway is the HTTPS listener's handler. It reads the current snapshot
// once per request, so a reload never changes the rules in the middle of a
// request.
type gateway struct {
	s *Server
}

func (g gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := g.s.snap.Load()
	info := &request.Info{Start: time.Now(), Scheme: "https"}
	info.Peer = clientip.PeerAddr(r)
	info.ClientIP, info.Trusted = snap.trusted.Resolve(info.Peer, r.Header)
	if info.Trusted {
		info.ID = trustedRequestID(r.Header.Get("X-Request-Id"))
	}
	if info.ID == "" {
		info.ID = newRequestID()
	}
	r = r.WithContext(request.With(r.Context(), info))

	var rt *compiledRoute
	switch {
	case strings.HasPrefix(r.URL.Path, admin.Prefix):
		rt = snap.admin
	case isPortalPath(r.URL.Path):
		rt = snap.portal
	case r.URL.Path == assertion.JWKSPath:
		rt = snap.jwks
	default:
		rt, _ = snap.routes.Match(r.Host, r.URL.Path)
	}
	var rw *responseWriter
	if rt != nil {
		rw = newResponseWriter(w, rt.headers)
	} else {
		rw = newResponseWriter(w, snap.ownHeaders)
	}
	rw.Header().Set("X-Request-Id", info.ID)
	defer g.finish(r, info, snap, rt, rw)

	if c, ok := framing.FromContext(r.Context()); ok {
		if rule := c.Next(r); rule != "" {
			// What follows on the connection cannot be trusted to start a
			// request: answer this one and close it.
			rw.Header().Set("Connection", "close")
			g.refuse(rw, r, info, snap, rule, &problem.Error{Status: http.StatusBadRequest, Detail: "The request's message framing is ambiguous."})
			return
		}
	}

	chk := snap.ownHygiene
	if rt != nil && rt.hygiene != nil {
		chk = rt.hygiene
	}
	if ref := chk.Check(r); ref != nil {
		g.refuse(rw, r, info, snap, ref.Rule, ref.Problem())
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Caps by content type, JSON depth and form fields, enforced as
		// the body streams to the portal or the upstream.
		r.Body = chk.Body(r)
	}
	if rt == nil {
		g.refuse(rw, r, info, snap, "route.none", &problem.Error{Status: http.StatusNotFound})
		return
	}
	info.Route = rt.name
	if rt.policy != policyDeny {
		// Deny wins: a deny route that covers the request in any spelling a
		// backend might accept refuses it, whichever route matched first.
		if d, ok := snap.denies.MatchLoose(r.Host, r.URL.Path); ok {
			info.Route = d.name
			g.refuse(rw, r, info, snap, "policy.deny", &problem.Error{Status: http.StatusForbidden})
			return
		}
	}
	if rt.cors != nil && cors.IsPreflight(r) && rt.policy != policyDeny {
		// Moat answers preflights itself, before authentication: a
		// browser sends them without credentials.
		if _, err := rt.cors.Preflight(rw, r); err != nil {
			g.s.recordDenied(r, info, corsRule(err))
		}
		return
	}
	if rt.policy != policyDeny {
		release, ok := g.shedLoad(rw, r, info, snap, rt)
		if !ok {
			return
		}
		defer release()
		if !g.rateLimit(rw, r, info, snap, rt, snap.limits, rt.pre) {
			return
		}
	}
	switch rt.policy {
	case policyPublic:
		if rt.optional {
			if g.authenticate(rw, r, info, snap, rt) {
				g.forward(rw, r, info, rt)
			}
			return
		}
		// No one is identified here; only key expressions of the
		// limits decided after authentication have something to count.
		if len(rt.post) == 0 || g.rateLimit(rw, r, info, snap, rt, rt.post) {
			g.forward(rw, r, info, rt)
		}
	case policyPortal, policyMoat:
		rt.handler.ServeHTTP(rw, r)
	case policyAuthenticated:
		if g.authenticate(rw, r, info, snap, rt) {
			g.forward(rw, r, info, rt)
		}
	default:
		g.refuse(rw, r, info, snap, "policy.deny", &problem.Error{Status: http.StatusForbidden})
	}
}

// finish records the request in the metrics and the access log, and
// returns the pooled writer. It runs deferred so that a response aborted
// midway (the proxy panics with http.ErrAbortHandler) is recorded too.
func (g gateway) finish(r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute, rw *responseWriter) {
	p := recover()
	if rw.status == 0 {
		rw.status = http.StatusOK // a handler that wrote nothing
	}
	elapsed := time.Since(info.Start)
	if rt != nil {
		rt.metrics.observe(rw.status, elapsed.Seconds())
	} else {
		snap.noRoute.observe(rw.status, elapsed.Seconds())
	}
	if snap.accessLog {
		g.s.logAccess(r, info, rw, elapsed, p != nil)
	}
	rw.release()
	if p != nil {
		panic(p)
	}
}

// refuse answers a request Moat itself decided to turn away, and records
// the decision as a security event.
func (g gateway) refuse(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rule string, e *problem.Error) {
	w.Header().Set("Content-Security-Policy", ownCSP)
	if e.Status == http.StatusNotFound {
		// A plain 404 that reveals nothing about the configured routes.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("404 page not found\n"))
	} else {
		problem.Write(w, r, info.ID, e)
	}
	g.s.recordDenied(r, info, rule)
}

// recordDenied records a request Moat turned away as a security event.
func (s *Server) recordDenied(r *http.Request, info *request.Info, rule string) {
	e := event.Event{
		Time:      time.Now(),
		Kind:      "request.denied",
		Outcome:   event.Denied,
		ClientIP:  info.ClientIP.String(),
		Route:     info.Route,
		RequestID: info.ID,
		Rule:      rule,
		Details:   map[string]string{"method": r.Method, "path": truncate(r.URL.Path, 256)},
	}
	if info.Principal != nil {
		e.Principal = info.Principal.Name
	}
	s.events.Record(r.Context(), e)
}

// logAccess writes one access-log line. It logs no header, so credentials
// (Authorization, Cookie, Set-Cookie) never reach it, and the path without
// its query string, where tokens sometimes travel.
func (s *Server) logAccess(r *http.Request, info *request.Info, rw *responseWriter, elapsed time.Duration, aborted bool) {
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("host", truncate(r.Host, 256)),
		slog.String("path", truncate(r.URL.Path, 1024)),
		slog.String("route", info.Route),
		slog.Int("status", rw.status),
		slog.Int64("bytes", rw.written),
		slog.Duration("duration", elapsed),
		slog.String("client_ip", info.ClientIP.String()),
		slog.String("request_id", info.ID),
		slog.String("proto", r.Proto),
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	s.access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// newRequestID returns 128 random bits in URL-safe base64.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// trustedRequestID returns id when it is a plausible request id (1 to 128
// characters from a safe alphabet), otherwise "".
func trustedRequestID(id string) string {
	if id == "" || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return ""
		}
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
