package server

import (
	"errors"
	"net/http"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/cors"
	"github.com/moatgw/moat/internal/csrf"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// checkCSRF refuses an unsafe request that a browser may have been made to
// send from another site: one authenticated by the session cookie or by a
// client certificate, both of which a browser attaches on its own. Bearer
// tokens and API keys are attached by the caller's code and cannot be
// forged that way. It returns true when the request may go on; otherwise it
// has answered 403.
func (g gateway) checkCSRF(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) bool {
	p := info.Principal
	if rt.csrf == nil || p == nil {
		return true
	}
	var err error
	switch p.Method {
	case authn.MethodSession:
		err = rt.csrf.Check(r, csrfBinding(p))
	case authn.MethodMTLS:
		err = rt.csrf.CheckOrigin(r)
	default:
		return true
	}
	if err == nil {
		return true
	}
	rule := "csrf.refused"
	var ce *csrf.Error
	if errors.As(err, &ce) {
		rule = ce.Rule
	}
	g.refuse(w, r, info, snap, rule, &problem.Error{Status: http.StatusForbidden,
		Detail: "This request was refused because it may have been sent by another site."})
	return false
}

// csrfBinding ties a CSRF token to the session it was made for.
func csrfBinding(p *authn.Principal) []byte { return []byte("session:" + p.SessionID) }

// forward sends an admitted request to the route's handler (which sets
// the route's CORS headers, see compileRoute), adding for a signed-in
// browser the CSRF token: a readable cookie, or a field in each form of an
// HTML page.
func (g gateway) forward(w http.ResponseWriter, r *http.Request, info *request.Info, rt *compiledRoute) {
	if p := info.Principal; rt.csrf != nil && p != nil && p.Method == authn.MethodSession {
		b := csrfBinding(p)
		if rt.csrfJar {
			rt.csrf.SetCookie(w, r, b)
		}
		if rt.csrfForm {
			// Pages must come uncompressed to have forms found in them.
			r.Header.Del("Accept-Encoding")
			w = rt.csrf.InjectForms(w, r, b)
		}
	}
	rt.handler.ServeHTTP(w, r)
}

// corsRule names a refused preflight for its event.
func corsRule(err error) string {
	var ce *cors.Error
	if errors.As(err, &ce) {
		return ce.Rule
	}
	return "cors.refused"
}
