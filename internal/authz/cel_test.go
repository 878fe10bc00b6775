package authz

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// TestExprVariables checks what expressions see of a request, each case an
// expression that must be true.
func TestExprVariables(t *testing.T) {
	full := func() *Request {
		return &Request{
			Method: "POST",
			Path:   "/api/items",
			Header: http.Header{
				"X-Tenant": {"acme", "second"},
				"Accept":   {"application/json"},
			},
			Query:    map[string][]string{"page": {"2", "3"}, "empty": {}},
			ClientIP: netip.MustParseAddr("::ffff:10.1.2.3"),
			Time:     t0,
			Principal: &authn.Principal{
				Subject:     "u-42",
				Name:        "alice",
				Method:      authn.MethodJWT,
				Issuer:      "https://idp.example.com",
				Roles:       []string{"user", "admin"},
				Scopes:      []string{"items:read"},
				AuthMethods: []string{authn.AMRPassword, authn.AMRTOTP},
				AuthTime:    t0.Add(-time.Hour),
				Claims: map[string]any{
					"tenant": "acme",
					"level":  float64(3),
					"org":    map[string]any{"id": "o-1", "teams": []any{"red", "blue"}},
				},
			},
		}
	}
	anonymous := func() *Request {
		r := full()
		r.Principal = nil
		r.Header = nil
		r.Query = nil
		r.ClientIP = netip.Addr{}
		return r
	}
	rawHeader := func() *Request {
		r := full()
		r.Header = http.Header{"x-raw": {"v"}, "X-RAW": {"w"}}
		return r
	}
	tests := []struct {
		name string
		req  func() *Request
		expr string
	}{
		{"method", full, `request.method == "POST"`},
		{"path", full, `request.path == "/api/items"`},
		{"header by lower-case name, first value", full, `request.headers["x-tenant"] == "acme"`},
		{"header presence", full, `"accept" in request.headers && !("x-other" in request.headers)`},
		{"header names are lower-case", full, `request.headers.all(k, k == k.lowerAscii())`},
		{"header iteration", full, `request.headers.exists(k, k == "x-tenant")`},
		{"header count", full, `size(request.headers) == 2`},
		{"header with has()", full, `has(request.headers.accept)`},
		{"header upper-case name is absent", full, `!("X-Tenant" in request.headers)`},
		{"header map equality", full, `request.headers == {"x-tenant": "acme", "accept": "application/json"}`},
		{"header in a hand-made map", rawHeader, `request.headers["x-raw"] == "w" && size(request.headers) == 1`},
		{"query first value", full, `request.query["page"] == "2"`},
		{"query without values is absent", full, `!("empty" in request.query) && size(request.query) == 1`},
		{"ip unmapped", full, `request.ip == "10.1.2.3"`},
		{"time", full, `request.time == timestamp("2026-03-01T12:00:00Z") && request.time.getHours() == 12`},
		{"authenticated", full, `principal.authenticated`},
		{"subject, name, method, issuer", full, `principal.subject == "u-42" && principal.name == "alice" && principal.method == "jwt" && principal.issuer == "https://idp.example.com"`},
		{"roles", full, `"admin" in principal.roles && principal.roles.size() == 2`},
		{"scopes", full, `principal.scopes == ["items:read"]`},
		{"amr", full, `"otp" in principal.amr`},
		{"auth time", full, `request.time - principal.auth_time == duration("1h")`},
		{"claims by field", full, `principal.claims.tenant == "acme"`},
		{"claims by index", full, `principal.claims["tenant"] == request.headers["x-tenant"]`},
		{"claims number", full, `principal.claims.level >= 3.0`},
		{"claims nested", full, `principal.claims.org.id == "o-1" && "red" in principal.claims.org.teams`},
		{"claims presence", full, `has(principal.claims.org) && !has(principal.claims.nope)`},
		{"claims iteration", full, `principal.claims.exists(k, k == "level")`},
		{"fields of a dyn value", full, `dyn(request).method == "POST" && dyn(principal).roles.size() == 2 && [request][0].path == "/api/items"`},
		{"strings extension", full, `request.path.lowerAscii().split("/").size() == 3`},
		{"anonymous principal", anonymous, `!principal.authenticated && principal.subject == "" && principal.name == "" && principal.method == "" && principal.issuer == ""`},
		{"anonymous lists", anonymous, `size(principal.roles) == 0 && size(principal.scopes) == 0 && size(principal.amr) == 0`},
		{"anonymous claims", anonymous, `size(principal.claims) == 0 && !has(principal.claims.tenant)`},
		{"anonymous auth time", anonymous, `principal.auth_time == timestamp("0001-01-01T00:00:00Z")`},
		{"no headers", anonymous, `size(request.headers) == 0 && !("x-tenant" in request.headers)`},
		{"no query", anonymous, `size(request.query) == 0`},
		{"unknown ip", anonymous, `request.ip == ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, Policy{Allow: []Rule{{Name: "x", Expr: tt.expr}}})
			r := tt.req()
			if d := c.Decide(r); !d.Allowed() {
				t.Errorf("Decide = %+v, want allowed; explanation: %+v", d, c.Explain(r).Rules)
			}
			// The negation must not hold: the expression really looked.
			c = mustCompile(t, Policy{Allow: []Rule{{Name: "x", Expr: "!(" + tt.expr + ")"}}})
			if d := c.Decide(r); d.Allowed() {
				t.Errorf("negated: Decide = %+v, want not allowed", d)
			}
		})
	}
}

// TestExprStateReset checks that a pooled activation forgets the previous
// request: what one request built (its header map) must not leak into
// the next.
func TestExprStateReset(t *testing.T) {
	c := mustCompile(t, Policy{Allow: []Rule{{Expr: `size(request.headers) == 1 && request.headers["x-a"] == "1"`}}})
	first := &Request{Method: "GET", Path: "/", Header: http.Header{"X-A": {"1"}}}
	second := &Request{Method: "GET", Path: "/", Header: http.Header{"X-A": {"2"}, "X-B": {"3"}}}
	for range 3 {
		if d := c.Decide(first); !d.Allowed() {
			t.Fatalf("first: Decide = %+v, want allowed", d)
		}
		if d := c.Decide(second); d.Allowed() {
			t.Fatalf("second: Decide = %+v, want not allowed", d)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"x-tenant", "X-Tenant", true},
		{"accept", "Accept", true},
		{"x--a", "X--A", true},
		{"www-authenticate", "Www-Authenticate", true},
		{"x-1a", "X-1a", true},
		{"X-Tenant", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := canonicalKey(nil, tt.in)
			if ok != tt.ok || string(got) != tt.want {
				t.Errorf("canonicalKey(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}
