package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/moatgw/moat/internal/authz"
	"github.com/moatgw/moat/internal/clientcert"
	"github.com/moatgw/moat/internal/clientip"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/cors"
	"github.com/moatgw/moat/internal/csrf"
	"github.com/moatgw/moat/internal/headers"
	"github.com/moatgw/moat/internal/hygiene"
	"github.com/moatgw/moat/internal/openapi"
	"github.com/moatgw/moat/internal/proxy"
	"github.com/moatgw/moat/internal/route"
	"github.com/moatgw/moat/internal/shed"
	"github.com/moatgw/moat/internal/waf"
)

// ownCSP is the Content-Security-Policy of responses Moat writes itself.
const ownCSP = headers.OwnPagesCSP

type policy int

const (
	policyDeny policy = iota // the zero value denies
	policyPublic
	policyAuthenticated
	policyPortal // Moat's own login portal
	policyMoat   // Moat's other own public documents (the assertion keys)
)

// portalRoute names the login portal in metrics, logs and events; route
// names from the config cannot start with a dot.
const (
	portalRoute = ".moat"
	adminRoute  = ".moat-admin"
)

// compiledRoute is one route, ready to serve: everything the request path
// needs is resolved here, once.
type compiledRoute struct {
	name     string
	hygiene  *hygiene.Checker // nil for Moat's own routes: the snapshot's
	csrf     *csrf.Protection // nil when off
	csrfForm bool             // insert the token into HTML forms
	csrfJar  bool             // hand the token out in a readable cookie
	cors     *cors.Policy     // nil when the route has no CORS policy
	waf      *waf.WAF         // nil when the route has none, or it is off
	policy   policy
	roles    []string             // with policyAuthenticated: any of these, or any user when empty
	methods  methodSet            // with policyAuthenticated: how callers may authenticate
	mtls     *clientcert.Verifier // with the mtls method
	access   *authz.Compiled      // the allow and deny rules; nil for a public route without rules
	query    bool                 // some rule's expression reads the query string
	optional bool                 // a public route with rules: callers with credentials are identified
	pre      []routeLimit         // rate limits decided before authentication (by address or route)
	post     []routeLimit         // rate limits decided after it (by principal or API key)
	shed     *shed.Limiter        // the route's cap on requests in flight; nil: none
	headers  *headers.Set
	handler  http.Handler // the proxy; nil for deny routes
	proxy    *proxy.Proxy
	metrics  *routeMetrics
}

// snapshot is an immutable compiled configuration. A reload builds a new
// one and swaps it in whole.
type snapshot struct {
	cfg         *config.Config
	routes      *route.Table[*compiledRoute]
	denies      *route.Table[*compiledRoute] // deny routes only, matched loosely
	list        []*compiledRoute
	redirects   hostSet // hosts the plain-HTTP listener redirects
	trusted     *clientip.Trusted
	ownHeaders  *headers.Set     // for responses that match no route
	ownHygiene  *hygiene.Checker // for requests to Moat's own paths and to no route
	admin       *compiledRoute   // the administration API under admin.Prefix
	limits      []routeLimit     // global rate limits
	shed        *shed.Limiter    // global cap on requests in flight; nil: none
	portal      *compiledRoute
	jwks        *compiledRoute // the assertion keys at assertion.JWKSPath
	clientCerts *clientCerts   // when some route accepts client certificates
	noRoute     *routeMetrics
	accessLog   bool
}

// compile builds a snapshot from a validated config. It starts nothing;
// start does.
func (s *Server) compile(cfg *config.Config) (*snapshot, error) {
	trusted, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	hsts := &cfg.TLS.HSTS
	own, err := headers.Compile(cfg.Headers, config.Headers{}, hsts)
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	ownHygiene, err := hygiene.Compile(hygiene.Limits{MaxBodyBytes: 1 << 20})
	if err != nil {
		return nil, err
	}
	snap := &snapshot{
		cfg:        cfg,
		trusted:    trusted,
		ownHeaders: own,
		ownHygiene: ownHygiene,
		noRoute:    s.metrics.forRoute(""),
		accessLog:  cfg.Log.AccessEnabled(),
	}
	// The portal is built once the store is open, after the first compile:
	// look it up at each request.
	portal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.portal.ServeHTTP(w, r) })
	var globalPost []routeLimit
	if snap.limits, globalPost, err = s.compileLimits(cfg.RateLimits.Global); err != nil {
		return nil, err
	}
	if len(globalPost) > 0 {
		return nil, errors.New("rate_limits.global: limits by principal or API key belong on routes")
	}
	snap.shed = newShed(cfg.LoadShedding.MaxInFlight, cfg.LoadShedding)
	snap.portal = &compiledRoute{name: portalRoute, policy: policyPortal, headers: own, handler: portal, metrics: s.metrics.forRoute(portalRoute)}
	adminAPI := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.adminAPI.ServeHTTP(w, r) })
	// The administration API: callers sign in like on any authenticated
	// route (a session, or an API key a user owns); the handler checks
	// Moat's own roles and permissions.
	snap.admin = &compiledRoute{name: adminRoute, policy: policyAuthenticated, methods: acceptSession | acceptAPIKey,
		headers: own, handler: adminAPI, metrics: s.metrics.forRoute(adminRoute)}
	jwks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.assertions.Handler().ServeHTTP(w, r) })
	snap.jwks = &compiledRoute{name: portalRoute, policy: policyMoat, headers: own, handler: jwks, metrics: snap.portal.metrics}
	var specs, denySpecs []route.Spec[*compiledRoute]
	var errs []error
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		cr, err := s.compileRoute(cfg, rc, hsts)
		if err == nil {
			err = compileClientCerts(snap, rc, cr, s.now)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", rc.Name, err))
			continue
		}
		snap.list = append(snap.list, cr)
		specs = append(specs, route.Spec[*compiledRoute]{Hosts: rc.Hosts, Path: rc.Path, Value: cr})
		if cr.policy == policyDeny {
			denySpecs = append(denySpecs, specs[len(specs)-1])
		}
	}
	if err := errors.Join(errs...); err != nil {
		snap.close()
		return nil, err
	}
	snap.routes, err = route.New(specs)
	if err == nil {
		snap.denies, err = route.New(denySpecs)
	}
	if err != nil {
		snap.close()
		return nil, err
	}
	snap.redirects = redirectHosts(cfg, snap.routes)
	return snap, nil
}

func (s *Server) compileRoute(cfg *config.Config, rc *config.Route, hsts *config.HSTS) (*compiledRoute, error) {
	hs, err := headers.Compile(cfg.Headers, rc.Headers, hsts)
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	cr := &compiledRoute{name: rc.Name, headers: hs, metrics: s.metrics.forRoute(rc.Name), shed: newShed(rc.MaxInFlight, cfg.LoadShedding)}
	if cr.hygiene, err = hygiene.Compile(rc.Hygiene()); err != nil {
		return nil, err
	}
	if rc.CORS != nil {
		if cr.cors, err = cors.New(rc.CORSConfig()); err != nil {
			return nil, fmt.Errorf("cors: %w", err)
		}
	}
	if !rc.CSRF.Disabled {
		cc := csrf.Config{TrustedOrigins: rc.CSRF.TrustedOrigins}
		if cr.cors != nil {
			// Origins the route lets send credentials may also post.
			cc.TrustOrigin = cr.cors.Credentialed
		}
		if cr.csrf, err = csrf.New(s.csrfKey, cc); err != nil {
			return nil, fmt.Errorf("csrf: %w", err)
		}
		cr.csrfForm, cr.csrfJar = rc.CSRF.InjectForms, rc.CSRF.TokenCookie
	}
	if cr.pre, cr.post, err = s.compileLimits(rc.RateLimits); err != nil {
		return nil, err
	}
	for _, l := range rc.RateLimits {
		cr.query = cr.query || strings.Contains(l.Expr, "query")
	}
	switch rc.Policy {
	case config.PolicyPublic:
		cr.policy = policyPublic
		if len(rc.Allow)+len(rc.Deny) > 0 {
			cr.optional = true
			cr.methods = parseMethods(rc.Accept)
		}
	case config.PolicyAuthenticated:
		cr.policy = policyAuthenticated
		cr.roles = rc.Roles
		cr.methods = parseMethods(rc.Accept)
	case config.PolicyDeny:
		cr.policy = policyDeny
		return cr, nil // a deny route never reaches an upstream
	default:
		return nil, fmt.Errorf("unknown policy %q", rc.Policy)
	}
	if cr.policy == policyAuthenticated || cr.optional {
		ap := rc.AccessPolicy()
		if cr.access, err = authz.Compile(ap); err != nil {
			return nil, fmt.Errorf("access rules: %w", err)
		}
		for _, r := range append(ap.Allow, ap.Deny...) {
			cr.query = cr.query || strings.Contains(r.Expr, "query")
		}
	}
	ups := make([]*url.URL, 0, len(rc.Upstreams))
	for _, u := range rc.Upstreams {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", u, err)
		}
		ups = append(ups, pu)
	}
	tlsConf, err := proxy.UpstreamTLSConfig(rc.UpstreamTLS)
	if err != nil {
		return nil, err
	}
	opts := proxy.Options{
		Route:           rc.Name,
		Upstreams:       ups,
		UpstreamTLS:     tlsConf,
		MaxFails:        rc.MaxFails,
		FailTimeout:     rc.FailTimeout.D(),
		MaxRequestBody:  int64(rc.MaxRequestBody),
		MaxResponseBody: int64(rc.MaxResponseBody),
		Timeout:         rc.Timeout.D(),
		MaskErrors:      rc.MasksErrors(),
		ReservedHeaders: cfg.ReservedHeaders,
		Decorate:        identityHeaders,
		Cookies:         cookieFlags(rc.Cookies),
		Logger:          s.logger.With("route", rc.Name),
		Events:          s.events,
	}
	if rc.StripPrefix {
		opts.StripPrefix = rc.Path
	}
	if hc := rc.HealthCheck; hc != nil {
		opts.HealthCheck = &proxy.HealthCheck{Path: hc.Path, Interval: hc.Interval.D(), Timeout: hc.Timeout.D()}
	}
	var v *openapi.Validator
	if rc.OpenAPI != nil {
		if v, err = openapi.Load(rc.OpenAPI.Spec, rc.OpenAPIOptions(s.openAPIReport(rc.Name))); err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
		if rc.OpenAPI.Responses == config.ResponsesReport {
			opts.Inspect = func(resp *http.Response) { _ = v.ModifyResponse(resp) }
		}
	}
	p, err := proxy.New(opts)
	if err != nil {
		return nil, err
	}
	cr.proxy, cr.handler = p, p
	if rc.WAF != nil && rc.WAF.Mode != string(waf.Off) {
		if cr.waf, err = waf.New(rc.WAFConfig(), waf.WithRecorder(s.events), waf.WithLogger(s.logger.With("route", rc.Name))); err != nil {
			p.Close()
			return nil, fmt.Errorf("waf: %w", err)
		}
		// After the OpenAPI allowlist, which refuses what is not
		// documented more cheaply, and before the upstream.
		cr.handler = cr.waf.Handler(cr.handler)
	}
	if v != nil {
		cr.handler = validated{s: s, v: v, next: cr.handler}
	}
	if cr.cors != nil {
		// Sets the CORS headers of every answer the route passes on, in
		// place of the upstream's. Preflights are answered before this.
		cr.handler = cr.cors.Handler(cr.handler)
	}
	return cr, nil
}

// start begins the snapshot's background work (health checks).
func (snap *snapshot) start(ctx context.Context) {
	for _, r := range snap.list {
		if r.proxy != nil {
			r.proxy.Start(ctx)
		}
	}
}

// close stops the snapshot's background work and idle connections.
func (snap *snapshot) close() {
	for _, r := range snap.list {
		if r.proxy != nil {
			r.proxy.Close()
		}
		if r.waf != nil {
			_ = r.waf.Close()
		}
	}
}

// hostSet holds exact names and one-label wildcards ("*.example.com").
type hostSet map[string]bool

func (hs hostSet) has(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if hs[host] {
		return true
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return hs["*"+host[i:]]
	}
	return false
}

// redirectHosts are the names the plain-HTTP listener may redirect to: the
// hosts routes name, and the names Moat has certificates for. A route
// without hosts does not make every name acceptable, or the listener would
// redirect to whatever Host a client sends.
func redirectHosts(cfg *config.Config, routes *route.Table[*compiledRoute]) hostSet {
	hs := hostSet{}
	add := func(h string) { hs[strings.ToLower(strings.TrimSuffix(h, "."))] = true }
	for _, h := range routes.Hosts() {
		add(h)
	}
	if d := cfg.TLS.Dev; d != nil {
		for _, h := range d.Hosts {
			add(h)
		}
	}
	if a := cfg.TLS.ACME; a != nil {
		for _, h := range a.Domains {
			add(h)
		}
	}
	for _, c := range cfg.TLS.Certificates {
		pemBytes, err := os.ReadFile(c.Cert)
		if err != nil {
			continue
		}
		if block, _ := pem.Decode(pemBytes); block != nil {
			if leaf, err := x509.ParseCertificate(block.Bytes); err == nil {
				for _, h := range leaf.DNSNames {
					add(h)
				}
				for _, ip := range leaf.IPAddresses {
					add(ip.String())
				}
			}
		}
	}
	return hs
}

// cookieFlags turns a route's cookies section into the proxy's flags.
func cookieFlags(c config.UpstreamCookies) proxy.CookieFlags {
	f := proxy.CookieFlags{Secure: c.Secure, HTTPOnly: c.HTTPOnly}
	if c.SameSite != "" {
		f.SameSite = strings.ToUpper(c.SameSite[:1]) + c.SameSite[1:] // Lax, Strict, None
	}
	return f
}
