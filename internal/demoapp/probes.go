package demoapp

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/moatgw/moat/assertion"
)

// echo is the body of GET /headers.
type echo struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Host       string              `json:"host"`
	RemoteAddr string              `json:"remote_addr"`
	Proto      string              `json:"proto"`
	Headers    map[string][]string `json:"headers"` // encoded with sorted names
}

// echoHeaders answers with the request as the backend received it, so that
// a user can check which headers Moat added, replaced or stripped. The
// values of credential headers are redacted: a page script able to call
// this endpoint must not read cookies that are meant to be HttpOnly.
func (a *App) echoHeaders(w http.ResponseWriter, r *http.Request) {
	e := echo{
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		Proto:      r.Proto,
		Headers:    make(map[string][]string, len(r.Header)),
	}
	for name, values := range r.Header {
		out := make([]string, len(values))
		for i, v := range values {
			out[i] = redactHeader(name, v)
		}
		e.Headers[name] = out
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, e)
}

// redactHeader hides the secret part of a credential header's value and
// returns any other value unchanged. A cookie keeps its name and an
// authorization keeps its scheme, which is what a demo needs to show.
func redactHeader(name, value string) string {
	const hidden = "[redacted]"
	switch http.CanonicalHeaderKey(name) {
	case "Cookie":
		cookies, err := http.ParseCookie(value)
		if err != nil {
			return hidden
		}
		parts := make([]string, len(cookies))
		for i, c := range cookies {
			parts[i] = c.Name + "=" + hidden
		}
		return strings.Join(parts, "; ")
	case "Authorization", "Proxy-Authorization":
		scheme, _, ok := strings.Cut(strings.TrimSpace(value), " ")
		if !ok {
			return hidden
		}
		return scheme + " " + hidden
	}
	return value
}

// fakeTrace is what a careless backend prints when it fails: internal file
// paths, function names and a query. None of it is real.
const fakeTrace = `panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x6c1f2e]

goroutine 1 [running]:
main.handler(...)
	/srv/app/internal/secret/db.go:42 +0x2e
main.(*OrderStore).Lookup(0xc000126000, {0xc00001e0f0, 0x24})
	/srv/app/internal/secret/db.go:42 +0x1a5
main.ordersHandler({0x7f3a20, 0xc0001c8000}, 0xc0001b4000)
	/srv/app/cmd/shop/orders.go:117 +0x2c8
net/http.HandlerFunc.ServeHTTP(...)
	/usr/local/go/src/net/http/server.go:2294
query: SELECT id, email, card_last4 FROM customers WHERE id = $1
db: postgres://shop_rw@db-primary.internal:5432/shop
exit status 2
`

// boom fails on purpose, the way a careless backend does: a 500 whose body
// is a stack trace. Moat replaces the body with a generic error page.
func (a *App) boom(w http.ResponseWriter, r *http.Request) {
	a.logger.Warn("serving a deliberate 500 with a fake stack trace", "request_id", r.Header.Get("X-Request-Id"))
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(fakeTrace)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, fakeTrace)
}

// admin is an admin area with no login. Moat's demo configuration denies
// it, so reaching it through Moat means that policy is missing.
func (a *App) admin(w http.ResponseWriter, r *http.Request) {
	a.logger.Warn("admin area reached; through Moat a deny policy should have stopped this request",
		"path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id"))
	a.render(w, r, http.StatusOK, "admin.html", struct{ Path string }{r.URL.Path})
}

// whoami is what the backend learns about the signed-in user: only what
// Moat passes on in X-Moat-User and X-Moat-Roles.
type whoami struct {
	User  string   `json:"user"`
	Roles []string `json:"roles"`
	Note  string   `json:"note"`
}

// me answers with the identity Moat passed on. Behind a route whose policy
// is authenticated, the headers come only from Moat: it removes any copy a
// client sends.
func (a *App) me(w http.ResponseWriter, r *http.Request) {
	who := whoami{User: r.Header.Get("X-Moat-User"), Roles: []string{}}
	if roles := r.Header.Get("X-Moat-Roles"); roles != "" {
		who.Roles = strings.Split(roles, ",")
	}
	who.Note = "set by Moat from the signed-in session; the backend checks no password"
	if who.User == "" {
		who.Note = "no user: this request did not come through a Moat route that requires a login"
	}
	writeJSON(w, http.StatusOK, who)
}

// ops is an area Moat's demo opens only to users with the admin role.
func (a *App) ops(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"area": "operations",
		"user": r.Header.Get("X-Moat-User"),
		"note": "only users with the admin role (and so a second factor) reach this",
	})
}

// whoamiAPI answers with the claims of the identity assertion Moat signed
// for this request, after checking its signature against Moat's published
// keys: the way a backend can trust who is calling without trusting the
// network between it and Moat.
func (a *App) whoamiAPI(w http.ResponseWriter, r *http.Request) {
	v := a.verifier.Load()
	if v == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the assertion verifier is not set up"})
		return
	}
	claims, err := v.Verify(r.Context(), r.Header.Get(assertion.Header))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no valid X-Moat-Assertion: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"verified": true, "subject": claims.Subject, "name": claims.Name, "method": claims.Method,
		"roles": claims.Roles, "scopes": claims.Scopes, "amr": claims.AMR, "issuer": claims.Issuer, "audience": claims.Audience,
		"expires": claims.Expiry,
	})
}
