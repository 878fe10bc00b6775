package authz

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// benchPolicy is a route's policy of ten rules with mixed conditions and
// one expression, which the benchmarked request reaches last.
func benchPolicy() Policy {
	yes := true
	return Policy{
		Deny: []Rule{
			{Name: "blocked-networks", SourceIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}},
			{Name: "no-contractors-on-admin", Roles: []string{"contractor"}, Paths: []string{"/admin"}},
			{Name: "no-delete-for-keys", Methods: []string{"DELETE"}, AuthMethods: []string{"apikey"}},
		},
		Allow: []Rule{
			{Name: "health", Authenticated: new(false), Methods: []string{"GET", "HEAD"}, Paths: []string{"/healthz", "/readyz"}},
			{Name: "admins", Roles: []string{"admin"}, Paths: []string{"/admin"}, MFAMaxAge: 15 * time.Minute},
			{Name: "ops", Roles: []string{"ops", "sre"}, SourceIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Name: "writers", Scopes: []string{"items:write", "items:read"}, Methods: []string{"POST", "PUT", "PATCH"}, Paths: []string{"/api/items"}},
			{Name: "passkey-only", AuthMethods: []string{"webauthn"}, Paths: []string{"/billing"}},
			{Name: "signed-in-readers", Authenticated: &yes, Methods: []string{"GET"}, Paths: []string{"/api/public"}},
			{Name: "tenant", Roles: []string{"user"}, Paths: []string{"/api"}, Expr: `request.headers["x-tenant"] == principal.claims["tenant"] && request.method in ["GET", "POST"]`},
		},
	}
}

func benchRequest() *Request {
	return &Request{
		Method: "GET",
		Path:   "/api/items/42",
		Header: http.Header{
			"Accept":     {"application/json"},
			"User-Agent": {"bench"},
			"X-Tenant":   {"acme"},
			"X-Trace":    {"abc"},
		},
		ClientIP: netip.MustParseAddr("192.0.2.10"),
		Time:     time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Principal: &authn.Principal{
			Subject:     "u-123",
			Name:        "alice",
			Method:      authn.MethodSession,
			Roles:       []string{"user", "reader"},
			Scopes:      []string{"items:read"},
			AuthMethods: []string{authn.AMRPassword},
			AuthTime:    time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC),
			Issuer:      authn.LocalIssuer,
			Claims:      map[string]any{"tenant": "acme"},
		},
	}
}

// BenchmarkDecide decides on a request that only the last rule, the one
// with an expression, allows: every rule is checked.
func BenchmarkDecide(b *testing.B) {
	c, err := Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	r := benchRequest()
	if d := c.Decide(r); d.Outcome != Allowed || d.Rule != "tenant" {
		b.Fatalf("Decide = %+v, want allowed by tenant", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Decide(r)
	}
}

// BenchmarkDecideTracked is BenchmarkDecide with an expression whose cost
// grows faster than its inputs, so that it runs under the cost limit.
func BenchmarkDecideTracked(b *testing.B) {
	p := benchPolicy()
	last := &p.Allow[len(p.Allow)-1]
	last.Expr = `request.headers["x-tenant"] == principal.claims["tenant"] && principal.roles.exists(r, principal.scopes.exists(s, s.startsWith(r)))`
	c, err := Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	if !c.allow[len(c.allow)-1].expr.tracked {
		b.Fatal("the expression runs without the cost limit")
	}
	r := benchRequest()
	r.Principal.Scopes = append(r.Principal.Scopes, "user:x")
	if d := c.Decide(r); d.Outcome != Allowed || d.Rule != "tenant" {
		b.Fatalf("Decide = %+v, want allowed by tenant", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Decide(r)
	}
}

// BenchmarkExplain explains the request of BenchmarkDecide.
func BenchmarkExplain(b *testing.B) {
	c, err := Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	r := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		c.Explain(r)
	}
}

// BenchmarkDecideNoExpr decides with the same rules but a request that a
// rule without an expression allows first.
func BenchmarkDecideNoExpr(b *testing.B) {
	c, err := Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	r := benchRequest()
	r.Path = "/api/public/x"
	if d := c.Decide(r); d.Outcome != Allowed || d.Rule != "signed-in-readers" {
		b.Fatalf("Decide = %+v, want allowed by signed-in-readers", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Decide(r)
	}
}

func BenchmarkDecideParallel(b *testing.B) {
	c, err := Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := benchRequest()
		for pb.Next() {
			c.Decide(r)
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	p := benchPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
