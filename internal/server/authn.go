package server

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/assertion"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/authz"
	"github.com/moatgw/moat/internal/jwtauth"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// Headers that carry the identity to the upstream. Clients' own copies never
// get through: the proxy drops every X-Moat-* header they send.
const (
	headerUser  = "X-Moat-User"
	headerRoles = "X-Moat-Roles"
)

// methodSet is the set of authentication methods a route accepts.
type methodSet uint8

const (
	acceptSession methodSet = 1 << iota
	acceptJWT
	acceptAPIKey
	acceptMTLS
)

func parseMethods(names []string) methodSet {
	var m methodSet
	for _, n := range names {
		switch n {
		case authn.MethodSession:
			m |= acceptSession
		case authn.MethodJWT:
			m |= acceptJWT
		case authn.MethodAPIKey:
			m |= acceptAPIKey
		case authn.MethodMTLS:
			m |= acceptMTLS
		}
	}
	return m
}

func (m methodSet) has(x methodSet) bool { return m&x != 0 }

// isPortalPath reports whether p is the login portal's: /.moat or below.
func isPortalPath(p string) bool {
	return strings.HasPrefix(p, portal.Prefix) || p == strings.TrimSuffix(portal.Prefix, "/")
}

// authenticate establishes who makes a request to a route whose policy is
// authenticated, with one of the methods the route accepts, and checks the
// route's roles. It sets info.Principal and returns true when the request
// may go on; otherwise it has answered.
//
// Credentials a client sends explicitly come first: an API key or a bearer
// token in the request's headers is checked, and a bad one is refused even
// when the request also carries a good session cookie, so a client learns
// its credential is wrong rather than being served as someone else. Then a
// client certificate, then the session cookie. Every check that cannot be
// made (the store, Redis or an issuer's keys unreachable) refuses with
// 503: Moat fails closed.
//
// On a public route with access rules (rt.optional) credentials are
// checked only when the request brings some: an anonymous request goes on
// to the rules, which decide.
func (g gateway) authenticate(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) bool {
	p, ok := g.identify(w, r, info, snap, rt)
	if !ok {
		return false
	}
	info.Principal = p
	if p != nil && !p.HasRole(rt.roles...) {
		g.refuse(w, r, info, snap, "policy.roles", &problem.Error{Status: http.StatusForbidden})
		return false
	}
	if !g.checkCSRF(w, r, info, snap, rt) {
		return false
	}
	if !g.authorize(w, r, info, snap, rt) {
		return false
	}
	if len(rt.post) > 0 && !g.rateLimit(w, r, info, snap, rt, rt.post) {
		return false
	}
	if p != nil && g.s.assertions != nil {
		tok, err := g.s.assertions.Sign(p, rt.name, info.ID)
		if err != nil {
			// An upstream may trust only the assertion: never send the
			// request on without it.
			g.unavailable(w, r, info, snap, "assertion.unavailable", "signing the identity assertion", err)
			return false
		}
		info.Assertion = tok
	}
	return true
}

// identify returns the request's principal, or answers and returns false.
func (g gateway) identify(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) (*authn.Principal, bool) {
	ctx := r.Context()
	if key := apikey.FromRequest(r); key != "" {
		if !rt.methods.has(acceptAPIKey) {
			g.unauthorized(w, r, info, snap, rt, "authn.method", "This route does not accept API keys.")
			return nil, false
		}
		rec, err := g.s.apikeys.Verify(ctx, key)
		switch {
		case errors.Is(err, apikey.ErrInvalid):
			w.Header().Add("WWW-Authenticate", `Bearer error="invalid_token", error_description="the API key is not valid"`)
			g.unauthorized(w, r, info, snap, rt, "apikey."+apikey.Reason(err), "The API key is not valid: it is unknown, expired or revoked.")
			return nil, false
		case err != nil:
			g.unavailable(w, r, info, snap, "apikey.unavailable", "checking an API key", err)
			return nil, false
		}
		p := g.s.apikeys.Principal(rec)
		if rec.Owner != "service" {
			// A user's key acts as the user: with the user's roles, and
			// not at all once the user is disabled or gone.
			u, err := g.s.accounts.Service.KeyOwner(ctx, rec.Owner)
			switch {
			case errors.Is(err, store.ErrNotFound) || err == nil && u.Status != accounts.StatusActive:
				w.Header().Add("WWW-Authenticate", `Bearer error="invalid_token", error_description="the API key is not valid"`)
				g.unauthorized(w, r, info, snap, rt, "apikey.owner_inactive", "The API key is not valid: it is unknown, expired or revoked.")
				return nil, false
			case err != nil:
				g.unavailable(w, r, info, snap, "apikey.unavailable", "checking an API key's owner", err)
				return nil, false
			}
			p.Subject, p.Roles = u.ID, u.Roles
		}
		return p, true
	}
	if tok := jwtauth.FromRequest(r); tok != "" {
		if !rt.methods.has(acceptJWT) || g.s.jwt == nil {
			g.unauthorized(w, r, info, snap, rt, "authn.method", "This route does not accept bearer tokens.")
			return nil, false
		}
		p, err := g.s.jwt.Verify(ctx, tok)
		var je *jwtauth.Error
		switch {
		case errors.As(err, &je) && je.Status() == http.StatusServiceUnavailable:
			g.unavailable(w, r, info, snap, "jwt.unavailable", "checking a bearer token", err)
			return nil, false
		case errors.As(err, &je):
			w.Header().Set("WWW-Authenticate", je.WWWAuthenticate())
			g.refuse(w, r, info, snap, "jwt."+je.Reason, &problem.Error{Status: je.Status(), Detail: sentence(je.Description)})
			return nil, false
		case err != nil:
			g.unavailable(w, r, info, snap, "jwt.unavailable", "checking a bearer token", err)
			return nil, false
		}
		return p, true
	}
	if r.Header.Get("Authorization") != "" {
		g.unauthorized(w, r, info, snap, rt, "authn.scheme", "The Authorization header holds no credential this route accepts.")
		return nil, false
	}
	if rt.methods.has(acceptMTLS) && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		p, err := rt.mtls.Verify(r.TLS)
		if err != nil {
			g.s.logger.Info("client certificate refused", "request_id", info.ID, "route", rt.name, "err", err)
			g.unauthorized(w, r, info, snap, rt, "mtls.refused", "The client certificate is not accepted on this route.")
			return nil, false
		}
		return p, true
	}
	if !rt.methods.has(acceptSession) {
		if rt.optional {
			return nil, true
		}
		g.unauthorized(w, r, info, snap, rt, "authn.required", "This route needs credentials.")
		return nil, false
	}
	var sp *accounts.Principal
	if tok := session.TokenFromRequest(r); tok != "" {
		var err error
		sp, err = g.s.accounts.Service.Authenticate(ctx, tok)
		switch {
		case errors.Is(err, session.ErrNoSession):
			session.ClearCookie(w) // ended, expired or unknown: let the browser forget it
		case err != nil:
			g.unavailable(w, r, info, snap, "session.unavailable", "checking a session", err)
			return nil, false
		}
	}
	if sp == nil || sp.Pending != "" {
		if rt.optional {
			return nil, true
		}
		g.challenge(w, r, info, snap, rt, sp)
		return nil, false
	}
	return &authn.Principal{
		Subject: sp.UserID, Name: sp.Username, Roles: sp.Roles, Method: authn.MethodSession, Issuer: authn.LocalIssuer,
		AuthMethods: sp.Methods, AuthTime: sp.AuthTime, SessionID: sp.SessionID,
	}, true
}

// unauthorized answers 401 problem+json with a challenge for each method
// the route accepts.
func (g gateway) unauthorized(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute, rule, detail string) {
	h := w.Header()
	if len(h.Values("WWW-Authenticate")) == 0 {
		if rt.methods.has(acceptJWT | acceptAPIKey) {
			h.Add("WWW-Authenticate", `Bearer realm="moat"`)
		}
		if rt.methods.has(acceptSession) {
			h.Add("WWW-Authenticate", `Cookie realm="moat", login="`+portal.PathLogin+`"`)
		}
	}
	g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusUnauthorized, Detail: detail})
}

// unavailable answers 503 when a credential could not be checked.
func (g gateway) unavailable(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rule, what string, err error) {
	g.s.logger.Error(what, "request_id", info.ID, "err", err)
	w.Header().Set("Retry-After", "5")
	g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusServiceUnavailable,
		Detail: "Moat cannot check credentials right now. Try again shortly."})
}

// challenge answers a request that needs a login it does not have. A
// browser loading a page is sent to the login page (or to the second
// factor its unfinished login waits for), with the address to come back
// to; anything else (an API call, a form post, a script) gets 401
// problem+json, since a redirect would only hand it an HTML page.
func (g gateway) challenge(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute, pending *accounts.Principal) {
	rule := "authn.required"
	if pending != nil {
		rule = "authn.unfinished"
	}
	if !wantsPage(r) {
		g.unauthorized(w, r, info, snap, rt, rule, "Sign in first: this route needs an authenticated user.")
		return
	}
	back := requestTarget(r)
	to := portal.PathLogin
	if pending != nil {
		switch pending.Pending {
		case accounts.PendingMFA:
			to = portal.PathLoginTOTP
		case accounts.PendingEnrollMFA:
			to = portal.PathTOTP
		}
	}
	if back != "/" {
		to += "?" + portal.FieldReturnTo + "=" + url.QueryEscape(back)
	}
	w.Header().Set("Location", to)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
	g.s.recordDenied(r, info, rule)
}

// wantsPage reports whether r is a browser loading a page: GET or HEAD,
// no Authorization header, and HTML among what it accepts.
func wantsPage(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("Authorization") != "" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// sentence turns a public error description into a sentence.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// identityHeaders passes the principal to the upstream: the user name and
// roles in plain headers, and everything in the signed assertion.
func identityHeaders(r *http.Request, h http.Header) {
	info := request.From(r.Context())
	if info == nil || info.Principal == nil {
		return
	}
	p := info.Principal
	h[headerUser] = []string{p.Name}
	if len(p.Roles) > 0 {
		h[headerRoles] = []string{strings.Join(p.Roles, ",")}
	}
	if info.Assertion != "" {
		h[assertion.Header] = []string{info.Assertion}
	}
}

// authorize applies the route's allow and deny rules to the request and
// its principal (nil when anonymous). It returns true when the request may
// go on; otherwise it has answered: a login challenge, a step-up, or 403.
func (g gateway) authorize(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) bool {
	if rt.access == nil {
		return true
	}
	req := authz.Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, ClientIP: info.ClientIP, Time: g.s.now(), Principal: info.Principal}
	if rt.query {
		req.Query = r.URL.Query()
	}
	d := rt.access.Decide(&req)
	if g.s.logger.Enabled(r.Context(), slog.LevelDebug) {
		who := ""
		if info.Principal != nil {
			who = info.Principal.Name
		}
		g.s.logger.Debug("access decision", "request_id", info.ID, "route", rt.name, "outcome", d.Outcome.String(), "rule", d.Rule, "principal", who)
	}
	switch d.Outcome {
	case authz.Allowed:
		return true
	case authz.NeedLogin:
		g.challenge(w, r, info, snap, rt, nil)
	case authz.NeedStepUp:
		g.stepUp(w, r, info, snap, rt)
	default:
		rule := "authz.no_rule"
		if d.Rule != "" {
			rule = "authz.deny." + d.Rule
		}
		g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusForbidden})
	}
	return false
}

// stepUp answers a signed-in caller whose second factor is missing or too
// old for the rule that would let them in: a browser with a session is
// sent to confirm it again; a bearer token gets RFC 9470's
// insufficient_user_authentication; anything else 403.
func (g gateway) stepUp(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) {
	p := info.Principal
	const rule = "authz.step_up"
	switch {
	case p.Method == authn.MethodSession && wantsPage(r):
		w.Header().Set("Location", portal.PathStepUp+"?"+portal.FieldReturnTo+"="+url.QueryEscape(requestTarget(r)))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusSeeOther)
		g.s.recordDenied(r, info, rule)
	case p.Method == authn.MethodJWT:
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_user_authentication", error_description="a more recent authentication with a second factor is required"`)
		g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusUnauthorized,
			Detail: "This request needs a more recent sign-in with a second factor."})
	default:
		g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusForbidden,
			Detail: "This request needs a recent confirmation with a second factor: sign in again."})
	}
}

// requestTarget is the path and query the request asked for: where a
// browser returns after signing in or confirming its second factor.
func requestTarget(r *http.Request) string {
	if r.URL.RawQuery != "" {
		return r.URL.EscapedPath() + "?" + r.URL.RawQuery
	}
	return r.URL.EscapedPath()
}
