// Package cors answers cross-origin resource sharing (CORS) for the routes
// Moat protects, from a policy compiled once per route, so that only Moat's
// policy speaks: it answers preflight requests itself, never forwarding
// them, and replaces whatever Access-Control-* fields the upstream sends.
//
// A Policy allows a list of origins, each an exact origin or a pattern with
// one wildcard label ("https://*.example.com" allows
// "https://app.example.com" but neither "https://example.com" nor
// "https://a.b.example.com"), with scheme and port matched exactly. It
// never reflects an origin it has not matched, never answers "*" to a
// credentialed request, and refuses the "null" origin unless it is listed
// literally (and then not with credentials).
//
// CORS relaxes the same-origin policy for reading responses; it does not
// protect the application against cross-site requests, which browsers send
// whatever the policy says (see package csrf for that).
//
// See https://fetch.spec.whatwg.org/#http-cors-protocol.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// MaxMaxAge is the longest preflight cache lifetime a Policy accepts; no
// browser caches longer (Chromium caps at 2 hours, Firefox at 24).
const MaxMaxAge = 24 * time.Hour

// maxRequestHeaders bounds the names in Access-Control-Request-Headers a
// preflight may ask for.
const maxRequestHeaders = 64

// Rules name the check that refused a preflight, for security events.
const (
	RuleOrigin  = "cors.origin"  // the origin is not allowed
	RuleMethod  = "cors.method"  // the requested method is not allowed
	RuleHeaders = "cors.headers" // a requested header is not allowed
)

// Error is a refused preflight: the rule that refused it and a short
// detail for the log.
type Error struct {
	Rule   string // one of the Rule constants
	Detail string
}

func (e *Error) Error() string { return "cors: " + e.Rule + ": " + e.Detail }

// Config is the CORS configuration of one route.
type Config struct {
	// AllowedOrigins are exact origins (scheme://host[:port], lower case
	// after compilation, default port dropped), patterns with "*" as the
	// whole leftmost label of the host ("https://*.example.com:8443"),
	// "null" (literally), or "*" alone for any origin (not with
	// AllowCredentials, and answered with a literal "*"). At least one.
	AllowedOrigins []string
	// AllowedMethods a preflight may ask for, matched case-sensitively as
	// browsers send them (upper case for the standard methods). Default
	// GET, HEAD, POST.
	AllowedMethods []string
	// AllowedHeaders a preflight may ask for, matched case-insensitively.
	// Accept, Accept-Language and Content-Language are always allowed;
	// Content-Type must be listed for anything but a form or plain text.
	AllowedHeaders []string
	// ExposedHeaders scripts may read from responses, besides the
	// CORS-safelisted ones.
	ExposedHeaders []string
	// AllowCredentials lets scripts send cookies and read the responses.
	AllowCredentials bool
	// MaxAge is how long a browser may cache a preflight answer, in
	// whole seconds, up to MaxMaxAge. Zero leaves it to the browser
	// (5 seconds).
	MaxAge time.Duration
}

// Policy is the compiled CORS policy of one route. It is immutable after
// New and safe for concurrent use.
type Policy struct {
	any         bool                // "*": any origin but null, answered with "*"
	null        bool                // "null" listed
	exact       map[string]struct{} // exact origins
	patterns    []pattern
	methods     map[string]struct{}
	headers     map[string]struct{} // lower case
	credentials bool

	allowMethods  string // Access-Control-Allow-Methods
	allowHeaders  string // Access-Control-Allow-Headers, "" for none
	exposeHeaders string // Access-Control-Expose-Headers, "" for none
	maxAge        string // Access-Control-Max-Age, "" for none
}

// New compiles cfg, reporting every problem at once.
func New(cfg Config) (*Policy, error) {
	var errs []error
	p := &Policy{
		exact:       make(map[string]struct{}),
		methods:     make(map[string]struct{}),
		headers:     map[string]struct{}{"accept": {}, "accept-language": {}, "content-language": {}},
		credentials: cfg.AllowCredentials,
	}
	if len(cfg.AllowedOrigins) == 0 {
		errs = append(errs, errors.New("allowed origins: at least one is required"))
	}
	for i, o := range cfg.AllowedOrigins {
		switch {
		case o == "*":
			if cfg.AllowCredentials {
				errs = append(errs, fmt.Errorf("allowed origin %d: \"*\" cannot be combined with credentials; list the origins", i))
			}
			p.any = true
		case o == "null":
			if cfg.AllowCredentials {
				errs = append(errs, fmt.Errorf("allowed origin %d: \"null\" cannot be combined with credentials: any sandboxed page or local file sends it", i))
			}
			p.null = true
		case strings.Contains(o, "*"):
			pt, err := parsePattern(o)
			if err != nil {
				errs = append(errs, fmt.Errorf("allowed origin %d: %w", i, err))
				continue
			}
			p.patterns = append(p.patterns, pt)
		default:
			n, err := parseOrigin(o)
			if err != nil {
				errs = append(errs, fmt.Errorf("allowed origin %d: %w", i, err))
				continue
			}
			p.exact[n] = struct{}{}
		}
	}

	methods := cfg.AllowedMethods
	if len(methods) == 0 {
		methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	}
	var list []string
	for i, m := range methods {
		if !httpguts.ValidHeaderFieldName(m) || m == "*" {
			errs = append(errs, fmt.Errorf("allowed method %d: %q is not a method name (wildcards are not supported)", i, clip(m)))
			continue
		}
		if _, dup := p.methods[m]; !dup {
			p.methods[m] = struct{}{}
			list = append(list, m)
		}
	}
	p.allowMethods = strings.Join(list, ", ")

	list = nil
	for i, h := range cfg.AllowedHeaders {
		if !httpguts.ValidHeaderFieldName(h) || h == "*" {
			errs = append(errs, fmt.Errorf("allowed header %d: %q is not a header name (wildcards are not supported)", i, clip(h)))
			continue
		}
		list = append(list, h)
		p.headers[strings.ToLower(h)] = struct{}{}
	}
	p.allowHeaders = strings.Join(list, ", ")

	list = nil
	for i, h := range cfg.ExposedHeaders {
		if !httpguts.ValidHeaderFieldName(h) || h == "*" {
			errs = append(errs, fmt.Errorf("exposed header %d: %q is not a header name (wildcards are not supported)", i, clip(h)))
			continue
		}
		list = append(list, h)
	}
	p.exposeHeaders = strings.Join(list, ", ")

	switch {
	case cfg.MaxAge < 0 || cfg.MaxAge > MaxMaxAge:
		errs = append(errs, fmt.Errorf("max age %v: must be between 0 and %v", cfg.MaxAge, MaxMaxAge))
	case cfg.MaxAge >= time.Second:
		p.maxAge = strconv.Itoa(int(cfg.MaxAge / time.Second))
	}

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cors: %w", err)
	}
	return p, nil
}

// AllowOrigin reports whether the policy grants origin, the value of an
// Origin header, access. It is safe for concurrent use.
func (p *Policy) AllowOrigin(origin string) bool {
	if origin == "" {
		return false
	}
	if origin == "null" {
		return p.null
	}
	if p.any {
		return true
	}
	if _, ok := p.exact[origin]; ok {
		return true
	}
	for _, pt := range p.patterns {
		if pt.match(origin) {
			return true
		}
	}
	return false
}

// Credentialed reports whether the policy lets pages of origin send
// credentialed requests and read the answers: it allows credentials and
// origin. Such origins are trusted by the route's owner with the user's
// session, so the gateway may pass this method as csrf.Config.TrustOrigin.
// It is safe for concurrent use.
func (p *Policy) Credentialed(origin string) bool {
	return p.credentials && p.AllowOrigin(origin)
}

// IsPreflight reports whether r is a CORS preflight request: OPTIONS with
// Origin and Access-Control-Request-Method.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// CheckPreflight decides the preflight r without writing anything: nil
// when the policy allows its origin, method and headers, an *Error naming
// the rule otherwise. It fails closed on several Origin or
// Access-Control-Request-Method headers and on more than 64 requested
// headers. It is safe for concurrent use.
func (p *Policy) CheckPreflight(r *http.Request) error {
	origin, ok := single(r.Header, "Origin")
	if !ok || !p.AllowOrigin(origin) {
		return &Error{Rule: RuleOrigin, Detail: fmt.Sprintf("origin %q not allowed", clip(origin))}
	}
	method, ok := single(r.Header, "Access-Control-Request-Method")
	if _, allowed := p.methods[method]; !ok || !allowed {
		return &Error{Rule: RuleMethod, Detail: fmt.Sprintf("method %q not allowed", clip(method))}
	}
	n := 0
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if n++; n > maxRequestHeaders {
				return &Error{Rule: RuleHeaders, Detail: fmt.Sprintf("more than %d headers requested", maxRequestHeaders)}
			}
			if _, ok := p.headers[strings.ToLower(name)]; !ok {
				return &Error{Rule: RuleHeaders, Detail: fmt.Sprintf("header %q not allowed", clip(name))}
			}
		}
	}
	return nil
}

// Preflight answers r when it is a preflight (see IsPreflight) and reports
// whether it did. An allowed preflight gets 204 No Content with the
// policy's Access-Control-* fields; a refused one gets 403 Forbidden
// without them, so the browser blocks the actual request, and err says
// which rule refused it, for the security event. Both answers vary on
// Origin, Access-Control-Request-Method and Access-Control-Request-Headers.
// Any Access-Control-* field already on w is removed. Preflights are never
// forwarded to the upstream. It is safe for concurrent use.
func (p *Policy) Preflight(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	if !IsPreflight(r) {
		return false, nil
	}
	h := w.Header()
	StripUpstream(h)
	AddVary(h, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
	if err := p.CheckPreflight(r); err != nil {
		reqID := ""
		if info := request.From(r.Context()); info != nil {
			reqID = info.ID
		}
		problem.Write(w, r, reqID, &problem.Error{
			Status: http.StatusForbidden,
			Title:  "Cross-origin request not allowed",
			Err:    err,
		})
		return true, err
	}
	p.allowOrigin(h, r.Header.Get("Origin"))
	h.Set("Access-Control-Allow-Methods", p.allowMethods)
	if p.allowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", p.allowHeaders)
	}
	if p.maxAge != "" {
		h.Set("Access-Control-Max-Age", p.maxAge)
	}
	w.WriteHeader(http.StatusNoContent)
	return true, nil
}

// Decorate sets the CORS fields of the response to r, an actual (not
// preflight) request, on w's header, which it must be called on just
// before the header is written: it first removes every Access-Control-*
// field already there (the upstream's), then, when r's single Origin is
// allowed, sets Access-Control-Allow-Origin (the origin itself, or "*" for
// a policy of any origin without credentials), Access-Control-Allow-
// Credentials and Access-Control-Expose-Headers. The answer depends on the
// origin (even with "*", which "null" does not get), so it adds Origin to
// Vary on every response, those without Origin or to disallowed origins
// included, once, so that a shared cache never serves one origin's answer
// to another. It is safe for concurrent use with different responses.
func (p *Policy) Decorate(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	StripUpstream(h)
	AddVary(h, "Origin")
	origin, ok := single(r.Header, "Origin")
	if !ok || !p.AllowOrigin(origin) {
		return
	}
	p.allowOrigin(h, origin)
	if p.exposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", p.exposeHeaders)
	}
}

// allowOrigin sets Access-Control-Allow-Origin and -Credentials for an
// allowed origin.
func (p *Policy) allowOrigin(h http.Header, origin string) {
	if p.any && origin != "null" {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// Handler returns a handler that answers preflights with Preflight and
// runs next for every other request, applying Decorate to its response
// when next writes the header. The gateway, which records a security event
// for refused preflights, may call Preflight and Decorate itself instead.
func (p *Policy) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handled, _ := p.Preflight(w, r); handled {
			return
		}
		next.ServeHTTP(&decorateWriter{ResponseWriter: w, p: p, r: r}, r)
	})
}

type decorateWriter struct {
	http.ResponseWriter
	p    *Policy
	r    *http.Request
	done bool
}

func (w *decorateWriter) WriteHeader(code int) {
	if !w.done && code >= 200 {
		w.done = true
		w.p.Decorate(w.ResponseWriter, w.r)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *decorateWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *decorateWriter) Flush() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *decorateWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// StripUpstream removes every Access-Control-* field from h, so that only
// Moat's policy answers. The gateway calls it on every upstream response
// (in the reverse proxy's response path), on routes with and without a
// CORS policy.
func StripUpstream(h http.Header) {
	for k := range h {
		if len(k) >= len("Access-Control-") && strings.EqualFold(k[:len("Access-Control-")], "Access-Control-") {
			delete(h, k)
		}
	}
}

// AddVary adds each of names to h's Vary field unless it is there already
// (compared case-insensitively, over every Vary line) or Vary is "*".
func AddVary(h http.Header, names ...string) {
	have := h.Values("Vary")
	var add []string
	for _, n := range names {
		if !varyHas(have, n) && !varyHas(add, n) {
			add = append(add, n)
		}
	}
	if len(add) > 0 && !varyHas(have, "*") {
		h.Add("Vary", strings.Join(add, ", "))
	}
}

func varyHas(lines []string, name string) bool {
	for _, line := range lines {
		for v := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(strings.TrimSpace(v), name) {
				return true
			}
		}
	}
	return false
}

// single returns the value of h's field name when there is exactly one.
func single(h http.Header, name string) (string, bool) {
	v := h.Values(name)
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// clip shortens client-controlled values quoted in errors.
func clip(s string) string {
	const max = 100
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
