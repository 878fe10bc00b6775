package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/session"
)

// Headers that carry the identity to the upstream. Clients' own copies never
// get through: the proxy drops every X-Moat-* header they send.
const (
	headerUser  = "X-Moat-User"
	headerRoles = "X-Moat-Roles"
)

// isPortalPath reports whether p is the login portal's: /.moat or below.
func isPortalPath(p string) bool {
	return strings.HasPrefix(p, portal.Prefix) || p == strings.TrimSuffix(portal.Prefix, "/")
}

// authenticate establishes who makes a request to a route that needs a
// signed-in user, and checks the route's roles. It sets info.Principal and
// returns true when the request may go on; otherwise it has answered: a
// login redirect or 401, 403 for a missing role, 503 when the session
// store cannot answer (fail closed).
func (g gateway) authenticate(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) bool {
	var p *accounts.Principal
	if tok := session.TokenFromRequest(r); tok != "" {
		var err error
		p, err = g.s.accounts.Service.Authenticate(r.Context(), tok)
		switch {
		case errors.Is(err, session.ErrNoSession):
			session.ClearCookie(w) // ended, expired or unknown: let the browser forget it
		case err != nil:
			g.s.logger.Error("checking a session", "request_id", info.ID, "err", err)
			w.Header().Set("Retry-After", "5")
			g.refuse(w, r, info, snap, "session.unavailable", &problem.Error{Status: http.StatusServiceUnavailable,
				Detail: "Moat cannot check sessions right now. Try again shortly."})
			return false
		}
	}
	if p == nil || p.Pending != "" {
		g.challenge(w, r, info, snap, p)
		return false
	}
	pr := &authn.Principal{
		Subject: p.UserID, Name: p.Username, Roles: p.Roles, Method: authn.MethodSession, Issuer: authn.LocalIssuer,
		AuthMethods: p.Methods, AuthTime: p.AuthTime,
	}
	info.Principal = pr
	if !pr.HasRole(rt.roles...) {
		g.refuse(w, r, info, snap, "policy.roles", &problem.Error{Status: http.StatusForbidden})
		return false
	}
	return true
}

// challenge answers a request that needs a login it does not have. A
// browser loading a page is sent to the login page (or to the second
// factor its unfinished login waits for), with the address to come back
// to; anything else (an API call, a form post, a script) gets 401
// problem+json, since a redirect would only hand it an HTML page.
func (g gateway) challenge(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, pending *accounts.Principal) {
	rule := "authn.required"
	if pending != nil {
		rule = "authn.unfinished"
	}
	if !wantsPage(r) {
		w.Header().Set("WWW-Authenticate", `Cookie realm="moat", login="`+portal.PathLogin+`"`)
		g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusUnauthorized,
			Detail: "Sign in first: this route needs an authenticated user."})
		return
	}
	back := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		back += "?" + r.URL.RawQuery
	}
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

// identityHeaders passes the principal to the upstream.
func identityHeaders(r *http.Request, h http.Header) {
	info := request.From(r.Context())
	if info == nil || info.Principal == nil {
		return
	}
	h[headerUser] = []string{info.Principal.Name}
	if len(info.Principal.Roles) > 0 {
		h[headerRoles] = []string{strings.Join(info.Principal.Roles, ",")}
	}
}
