package authz

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	admins := Rule{Name: "admins", Roles: []string{"admin"}}
	type want struct{ route, rule, msg string } // msg: a part of the message
	tests := []struct {
		name   string
		routes []LintRoute
		want   []want
	}{
		{
			name: "a sound config has no findings",
			routes: []LintRoute{
				{Name: "app", Path: "/", Policy: "authenticated", Access: Policy{Allow: []Rule{{Name: "users", Roles: []string{"user"}}}}},
				{Name: "admin", Path: "/admin", Policy: "authenticated", Roles: []string{"admin"}},
				{Name: "admin-api", Path: "/api/admin", Policy: "authenticated", Access: Policy{
					Deny:  []Rule{{Name: "no-contractors", Roles: []string{"contractor"}}},
					Allow: []Rule{{Name: "read", Methods: []string{"GET"}, Roles: []string{"ops"}}, admins},
				}},
				{Name: "other-site", Hosts: []string{"docs.example.com"}, Path: "/app/docs", Policy: "public"},
				{Name: "health", Path: "/healthz", Policy: "public"},
				{Name: "apex", Hosts: []string{"example.com"}, Path: "/", Policy: "authenticated", Roles: []string{"user"}},
				{Name: "static", Hosts: []string{"*.example.com"}, Path: "/static", Policy: "public"},
			},
		},
		{
			name: "public route inside an authenticated route",
			routes: []LintRoute{
				{Name: "app", Path: "/app", Policy: "authenticated", Roles: []string{"user"}},
				{Name: "docs", Path: "/app/docs/", Policy: "public"},
			},
			want: []want{{"docs", "", `public route "docs" (path /app/docs) takes precedence over authenticated route "app" (path /app)`}},
		},
		{
			name: "public route inside a deny route on a shared host",
			routes: []LintRoute{
				{Name: "internal", Hosts: []string{"a.example.com", "b.example.com"}, Path: "/internal", Policy: "deny"},
				{Name: "leak", Hosts: []string{"b.example.com"}, Path: "/internal/status", Policy: "public"},
			},
			want: []want{{"leak", "", `over deny route "internal"`}},
		},
		{
			name: "public route with an exact host over a wildcard route",
			routes: []LintRoute{
				{Name: "apps", Hosts: []string{"*.example.com"}, Path: "/app", Policy: "authenticated", Roles: []string{"user"}},
				{Name: "site", Hosts: []string{"www.example.com"}, Path: "/", Policy: "public"},
			},
			want: []want{{"site", "", `route "apps"`}},
		},
		{
			name: "public route with a less specific host does not shadow",
			routes: []LintRoute{
				{Name: "app", Hosts: []string{"app.example.com"}, Path: "/", Policy: "authenticated", Roles: []string{"user"}},
				{Name: "docs", Path: "/docs", Policy: "public"},
				{Name: "wild", Hosts: []string{"*.example.com"}, Path: "/x", Policy: "public"},
			},
		},
		{
			name: "public route beside, not inside",
			routes: []LintRoute{
				{Name: "app", Path: "/app", Policy: "authenticated", Roles: []string{"user"}},
				{Name: "apps", Path: "/apps", Policy: "public"},
				{Name: "root", Path: "/", Policy: "public"},
			},
		},
		{
			name: "public admin path",
			routes: []LintRoute{
				{Name: "console", Path: "/Admin", Policy: "public"},
			},
			want: []want{{"console", "", "public route on admin path /Admin lets anyone use every method"}},
		},
		{
			name: "admin route open to every signed-in user",
			routes: []LintRoute{
				{Name: "admin-ui", Path: "/ui", Policy: "authenticated"},
				{Name: "tools", Path: "/admin", Policy: "authenticated", Access: Policy{Allow: []Rule{{Name: "office", SourceIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}},
			},
			want: []want{
				{"admin-ui", "", `authenticated route "admin-ui" lets every signed-in user in: add roles`},
				{"tools", "", `authenticated route "tools" lets every signed-in user in`},
				{"tools", "office", "opens every method on admin path /admin"},
			},
		},
		{
			name: "admin route with roles in an allow rule",
			routes: []LintRoute{
				{Name: "admin", Path: "/admin", Policy: "authenticated", Access: Policy{Allow: []Rule{admins}}},
			},
		},
		{
			name: "rule opening an admin path",
			routes: []LintRoute{
				{Name: "api", Path: "/api", Policy: "authenticated", Access: Policy{Allow: []Rule{
					{Name: "admin-open", Paths: []string{"/api/admin"}, MFA: true},
					{Name: "admin-read", Paths: []string{"/api/admin"}, Methods: []string{"GET"}},
					{Name: "admin-expr", Paths: []string{"/api/admin"}, Expr: `request.ip.startsWith("10.")`},
					{Name: "users", Roles: []string{"user"}},
				}}},
			},
			want: []want{{"api", "admin-open", "the rule opens every method on admin path /api/admin to anyone it lets in: restrict it with methods, roles, scopes or expr"}},
		},
		{
			name: "expression always true",
			routes: []LintRoute{
				{Name: "api", Path: "/api", Policy: "authenticated", Roles: []string{"user"}, Access: Policy{Allow: []Rule{
					{Name: "lit", Expr: " true "},
					{Name: "or", Roles: []string{"x"}, Expr: `principal.name == "bob" || (true)`},
					{Name: "and", Roles: []string{"x"}, Expr: `true && true`},
					{Name: "real", Roles: []string{"x"}, Expr: `true && principal.authenticated`},
					{Name: "broken", Roles: []string{"x"}, Expr: `true ||`},
				}}},
			},
			want: []want{
				{"api", "lit", `expr " true " is always true, so it restricts nothing`},
				{"api", "or", "is always true"},
				{"api", "and", "is always true"},
			},
		},
		{
			name: "unconditional allow rule before others",
			routes: []LintRoute{
				{Name: "api", Path: "/api", Policy: "public", Access: Policy{Allow: []Rule{{}, admins}}},
			},
			want: []want{{"api", "allow[0]", "so the allow rules after it are never reached"}},
		},
		{
			name: "unconditional allow rule with deny rules on an authenticated route",
			routes: []LintRoute{
				{Name: "app", Path: "/app", Policy: "authenticated", Access: Policy{
					Deny:  []Rule{{Name: "no-contractors", Roles: []string{"contractor"}}},
					Allow: []Rule{{Name: "everyone"}},
				}},
				{Name: "with-roles", Path: "/b", Policy: "authenticated", Roles: []string{"user"}, Access: Policy{
					Deny:  []Rule{{Name: "no-contractors", Roles: []string{"contractor"}}},
					Allow: []Rule{{Name: "everyone"}},
				}},
			},
			want: []want{{"app", "everyone", "every signed-in user the deny rules miss gets in"}},
		},
		{
			name: "unconditional deny rule",
			routes: []LintRoute{
				{Name: "app", Path: "/app", Policy: "authenticated", Roles: []string{"user"}, Access: Policy{Deny: []Rule{{}}}},
			},
			want: []want{{"app", "deny[0]", "denies every request: give the rule conditions, or set the route's policy to deny"}},
		},
		{
			name: "source ips of a whole family",
			routes: []LintRoute{
				{Name: "app", Path: "/", Policy: "authenticated", Roles: []string{"user"}, Access: Policy{Allow: []Rule{
					{Name: "any", SourceIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::/0")}},
				}}},
			},
			want: []want{{"app", "any", "source_ips ::/0 matches every address of its family"}},
		},
		{
			name: "rule paths outside the route",
			routes: []LintRoute{
				{Name: "api", Path: "/api", Policy: "authenticated", Roles: []string{"user"}, Access: Policy{
					Deny: []Rule{
						{Name: "never", Paths: []string{"/apix"}},
						{Name: "loose", Paths: []string{"/API/v1"}},
					},
					Allow: []Rule{
						{Name: "elsewhere", Paths: []string{"/other", "/apis"}},
						{Name: "inside", Paths: []string{"/api/v1", "/other"}},
						{Name: "above", Paths: []string{"/"}},
					},
				}},
			},
			want: []want{
				{"api", "never", "paths [/apix] lie outside the route's path /api, so the rule never applies"},
				{"api", "elsewhere", "paths [/other /apis] lie outside"},
			},
		},
		{
			name: "deny routes' own rules are not checked",
			routes: []LintRoute{
				{Name: "gone", Path: "/admin", Policy: "deny", Access: Policy{Allow: []Rule{{}, {}}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lint(tt.routes)
			if len(got) != len(tt.want) {
				t.Errorf("Lint found %d, want %d:", len(got), len(tt.want))
				for _, f := range got {
					t.Errorf("  %+v", f)
				}
				return
			}
			for i, w := range tt.want {
				f := got[i]
				if f.Route != w.route || f.Rule != w.rule || !strings.Contains(f.Message, w.msg) {
					t.Errorf("finding %d = %+v, want route %q rule %q message containing %q", i, f, w.route, w.rule, w.msg)
				}
				if !strings.Contains(f.Message, ": ") {
					t.Errorf("finding %d does not say what to change: %q", i, f.Message)
				}
			}
		})
	}
}

func TestHostsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"", "a.example.com", true},
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"a.example.com", "*.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"*.example.com", "*.example.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			if got := hostsOverlap(tt.a, tt.b); got != tt.want {
				t.Errorf("hostsOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
