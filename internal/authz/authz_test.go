package authz

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		want   []string // each must be in the error
	}{
		{
			name:   "syntax error",
			policy: Policy{Allow: []Rule{{Expr: `request.method == `}}},
			want:   []string{"allow[0]: expr: at column 19: Syntax error:"},
		},
		{
			name:   "unknown field names the rule by position and name",
			policy: Policy{Allow: []Rule{{}, {}, {Name: "writers", Expr: `request.methd == "GET"`}}},
			want:   []string{"allow[2] (writers): expr: at column 8: undefined field 'methd'"},
		},
		{
			name:   "unknown variable",
			policy: Policy{Deny: []Rule{{Expr: `user.name == "bob"`}}},
			want:   []string{"deny[0]: expr: at column 1: undeclared reference to 'user'"},
		},
		{
			name:   "not a bool",
			policy: Policy{Allow: []Rule{{Expr: `size(principal.roles)`}}},
			want:   []string{"allow[0]: expr: must have type bool, has type int"},
		},
		{
			name:   "wrong types",
			policy: Policy{Allow: []Rule{{Expr: `request.time == "noon"`}}},
			want:   []string{"allow[0]: expr: at column 14: found no matching overload for '_==_'"},
		},
		{
			name:   "line and column in a multi-line expression",
			policy: Policy{Allow: []Rule{{Expr: "principal.authenticated &&\n  principal.rolez.size() > 0"}}},
			want:   []string{"allow[0]: expr: at line 2, column 12: undefined field 'rolez'"},
		},
		{
			name:   "over-long",
			policy: Policy{Allow: []Rule{{Expr: "true" + strings.Repeat(" ", maxExprLen)}}},
			want:   []string{"allow[0]: expr: is 4100 bytes long, more than the limit of 4096"},
		},
		{
			name:   "blank",
			policy: Policy{Allow: []Rule{{Expr: "  "}}},
			want:   []string{"allow[0]: expr: is blank"},
		},
		{
			name: "every error is reported",
			policy: Policy{
				Deny:  []Rule{{Name: "a", Expr: `1`}},
				Allow: []Rule{{Expr: `nope`}, {Name: "b", Paths: []string{"admin"}}},
			},
			want: []string{
				"deny[0] (a): expr: must have type bool",
				"allow[0]: expr: at column 1: undeclared reference to 'nope'",
				`allow[1] (b): paths: "admin" does not start with "/"`,
			},
		},
		{
			name:   "method",
			policy: Policy{Allow: []Rule{{Methods: []string{"GET", "PO ST", ""}}}},
			want:   []string{`allow[0]: methods: "PO ST" is not an HTTP method`, `allow[0]: methods: "" is not an HTTP method`},
		},
		{
			name:   "negative max age",
			policy: Policy{Allow: []Rule{{MFAMaxAge: -time.Minute}}},
			want:   []string{"allow[0]: mfa_max_age: -1m0s is negative"},
		},
		{
			name:   "invalid network",
			policy: Policy{Allow: []Rule{{SourceIPs: []netip.Prefix{{}}}}},
			want:   []string{"allow[0]: source_ips: an invalid network"},
		},
		{
			name:   "empty names",
			policy: Policy{Allow: []Rule{{Roles: []string{""}, Scopes: []string{" "}, AuthMethods: []string{""}}}},
			want:   []string{"allow[0]: roles: an empty name", "allow[0]: scopes: an empty name", "allow[0]: auth_methods: an empty name"},
		},
		{
			name:   "anonymous with conditions on the caller",
			policy: Policy{Allow: []Rule{{Authenticated: new(false), Roles: []string{"admin"}}}},
			want:   []string{"allow[0]: authenticated: false cannot be combined with roles"},
		},
		{
			name:   "anonymous with mfa",
			policy: Policy{Deny: []Rule{{Authenticated: new(false), MFAMaxAge: time.Minute}}},
			want:   []string{"deny[0]: authenticated: false cannot be combined"},
		},
		{
			name:   "duplicate names across kinds",
			policy: Policy{Deny: []Rule{{Name: "x"}}, Allow: []Rule{{Name: "x"}}},
			want:   []string{`allow[0] (x): name: "x" is also the name of deny[0] (x)`},
		},
		{
			name:   "positional name",
			policy: Policy{Allow: []Rule{{Name: "deny[3]"}}},
			want:   []string{`allow[0] (deny[3]): name: "deny[3]" looks like a rule's position`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.policy)
			if err == nil {
				t.Fatalf("Compile succeeded, want an error containing %q", tt.want)
			}
			if c != nil {
				t.Errorf("Compile returned a policy with its error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, src := range []string{
		`principal.claims.admin`, // dyn: checked when it runs
		`request.path.lowerAscii().startsWith("/api")`,
		`request.headers.exists(k, k.startsWith("x-"))`,
		`request.time.getHours() < 18 && request.time - principal.auth_time < duration("1h")`,
		`request.ip.startsWith("10.") || "admin" in principal.roles`,
	} {
		t.Run(src, func(t *testing.T) {
			if _, err := Compile(Policy{Allow: []Rule{{Expr: src}}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConditions checks each kind of condition alone, in an allow rule
// and in a deny rule.
func TestConditions(t *testing.T) {
	webauthn := user("user")
	webauthn.AuthMethods = []string{authn.AMRWebAuthn}
	pwdOnly := user("admin")
	pwdOnly.AuthMethods = []string{authn.AMRPassword}
	unknownTime := user("admin")
	unknownTime.AuthTime = time.Time{}
	scoped := user()
	scoped.Scopes = []string{"items:read", "items:write"}
	withMethod := func(r *Request, m string) *Request { r.Method = m; return r }
	withIP := func(r *Request, ip string) *Request {
		r.ClientIP = netip.Addr{}
		if ip != "" {
			r.ClientIP = netip.MustParseAddr(ip)
		}
		return r
	}
	at := func(r *Request, t time.Time) *Request { r.Time = t; return r }
	nets := func(ns ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, n := range ns {
			out = append(out, netip.MustParsePrefix(n))
		}
		return out
	}
	tests := []struct {
		name      string
		rule      Rule
		req       *Request
		allow     bool // an allow rule matches
		denyMatch bool // the same rule as a deny rule matches
	}{
		{"no conditions, anonymous", Rule{}, get("/x"), true, true},
		{"no conditions, signed in", Rule{}, as(get("/x"), user()), true, true},
		{"authenticated true, anonymous", Rule{Authenticated: new(true)}, get("/"), false, false},
		{"authenticated true, signed in", Rule{Authenticated: new(true)}, as(get("/"), user()), true, true},
		{"authenticated false, anonymous", Rule{Authenticated: new(false)}, get("/"), true, true},
		{"authenticated false, signed in", Rule{Authenticated: new(false)}, as(get("/"), user()), false, false},
		{"roles any of", Rule{Roles: []string{"admin", "ops"}}, as(get("/"), user("user", "ops")), true, true},
		{"roles none of", Rule{Roles: []string{"admin"}}, as(get("/"), user("user")), false, false},
		{"roles anonymous", Rule{Roles: []string{"admin"}}, get("/"), false, false},
		{"scopes all of", Rule{Scopes: []string{"items:write", "items:read"}}, as(get("/"), scoped), true, true},
		{"scopes one missing", Rule{Scopes: []string{"items:read", "items:delete"}}, as(get("/"), scoped), false, false},
		{"scopes anonymous", Rule{Scopes: []string{"items:read"}}, get("/"), false, false},
		{"method", Rule{Methods: []string{"GET", "HEAD"}}, get("/"), true, true},
		{"method other", Rule{Methods: []string{"GET"}}, withMethod(get("/"), "POST"), false, false},
		{"method lower-case rule", Rule{Methods: []string{"post"}}, withMethod(get("/"), "POST"), true, true},
		{"method lower-case request", Rule{Methods: []string{"DELETE"}}, withMethod(get("/"), "delete"), true, true},
		{"path exact", Rule{Paths: []string{"/admin"}}, get("/admin"), true, true},
		{"path below", Rule{Paths: []string{"/admin"}}, get("/admin/users"), true, true},
		{"path trailing slash in rule", Rule{Paths: []string{"/admin/"}}, get("/admin"), true, true},
		{"path not at a boundary", Rule{Paths: []string{"/admin"}}, get("/administrator"), false, false},
		{"path elsewhere", Rule{Paths: []string{"/admin", "/ops"}}, get("/api/admin"), false, false},
		{"path root", Rule{Paths: []string{"/"}}, get("/anything"), true, true},
		{"path other case: only deny rules match", Rule{Paths: []string{"/admin"}}, get("/ADMIN/users"), false, true},
		{"path with a suffix: only deny rules match", Rule{Paths: []string{"/admin"}}, get("/admin.json"), false, true},
		{"path with params: only deny rules match", Rule{Paths: []string{"/admin"}}, get("/admin;x=1"), false, true},
		{"mfa", Rule{MFA: true}, as(get("/"), user()), true, true},
		{"mfa with a passkey", Rule{MFA: true}, as(get("/"), webauthn), true, true},
		{"mfa password only", Rule{MFA: true}, as(get("/"), pwdOnly), false, false},
		{"mfa anonymous", Rule{MFA: true}, get("/"), false, false},
		{"mfa fresh", Rule{MFAMaxAge: 15 * time.Minute}, as(get("/"), user()), true, true},
		{"mfa at the limit", Rule{MFAMaxAge: 10 * time.Minute}, as(get("/"), user()), true, true},
		{"mfa stale", Rule{MFAMaxAge: 5 * time.Minute}, as(get("/"), user()), false, false},
		{"mfa max age implies mfa", Rule{MFAMaxAge: time.Hour}, as(get("/"), pwdOnly), false, false},
		{"mfa unknown sign-in time", Rule{MFAMaxAge: time.Hour}, as(get("/"), unknownTime), false, false},
		{"mfa unknown request time", Rule{MFAMaxAge: time.Hour}, as(at(get("/"), time.Time{}), user()), false, false},
		{"auth methods", Rule{AuthMethods: []string{authn.AMRWebAuthn}}, as(get("/"), webauthn), true, true},
		{"auth methods other", Rule{AuthMethods: []string{authn.AMRWebAuthn}}, as(get("/"), user()), false, false},
		{"auth methods anonymous", Rule{AuthMethods: []string{authn.AMRPassword}}, get("/"), false, false},
		{"source ip v4", Rule{SourceIPs: nets("10.0.0.0/8", "192.0.2.0/24")}, get("/"), true, true},
		{"source ip outside", Rule{SourceIPs: nets("10.0.0.0/8")}, get("/"), false, false},
		{"source ip v4-mapped client", Rule{SourceIPs: nets("10.0.0.0/8")}, withIP(get("/"), "::ffff:10.1.1.1"), true, true},
		{"source ip v4-mapped network", Rule{SourceIPs: nets("::ffff:10.0.0.0/104")}, withIP(get("/"), "10.1.1.1"), true, true},
		{"source ip v6", Rule{SourceIPs: nets("2001:db8::/32")}, withIP(get("/"), "2001:db8::7"), true, true},
		{"source ip unknown", Rule{SourceIPs: nets("0.0.0.0/0")}, withIP(get("/"), ""), false, false},
		{"expr true", Rule{Expr: `request.path == "/x"`}, get("/x"), true, true},
		{"expr false", Rule{Expr: `request.path == "/y"`}, get("/x"), false, false},
		{"expr error", Rule{Expr: `request.headers["x-tenant"] == "a"`}, get("/x"), false, true},
		{"all conditions hold", Rule{Roles: []string{"admin"}, Methods: []string{"GET"}, Paths: []string{"/admin"}, MFAMaxAge: time.Hour, Expr: `request.method == "GET"`}, as(get("/admin/x"), user("admin")), true, true},
		{"one condition fails", Rule{Roles: []string{"admin"}, Methods: []string{"GET"}, Paths: []string{"/admin"}, MFAMaxAge: time.Hour, Expr: `request.method == "GET"`}, as(get("/api"), user("admin")), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := tt.rule
			rl.Name = "r"
			c := mustCompile(t, Policy{Allow: []Rule{rl}})
			if got := c.Decide(tt.req); got.Allowed() != tt.allow {
				t.Errorf("as an allow rule: Decide = %+v, want allowed %v", got, tt.allow)
			} else if tt.allow && got.Rule != "r" {
				t.Errorf("as an allow rule: Decide = %+v, want rule r", got)
			}
			c = mustCompile(t, Policy{Deny: []Rule{rl}, Allow: []Rule{{Name: "all"}}})
			want := Decision{Outcome: Allowed, Rule: "all"}
			if tt.denyMatch {
				want = Decision{Outcome: Denied, Rule: "r"}
			}
			if got := c.Decide(tt.req); got != want {
				t.Errorf("as a deny rule: Decide = %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	admin := []string{"admin"}
	tests := []struct {
		name   string
		policy Policy
		req    *Request
		want   Decision
	}{
		{
			name:   "deny wins over an earlier allow",
			policy: Policy{Allow: []Rule{{Name: "everyone"}}, Deny: []Rule{{Name: "contractors", Roles: []string{"contractor"}}}},
			req:    as(get("/"), user("admin", "contractor")),
			want:   Decision{Denied, "contractors"},
		},
		{
			name:   "the first matching deny rule is named",
			policy: Policy{Allow: []Rule{{}}, Deny: []Rule{{Paths: []string{"/x"}}, {}, {Name: "late"}}},
			req:    get("/y"),
			want:   Decision{Denied, "deny[1]"},
		},
		{
			name:   "the first matching allow rule is named",
			policy: Policy{Allow: []Rule{{Name: "admins", Roles: admin}, {Name: "users", Roles: []string{"user"}}, {Name: "all"}}},
			req:    as(get("/"), user("user", "admin")),
			want:   Decision{Allowed, "admins"},
		},
		{
			name:   "an unnamed allow rule",
			policy: Policy{Allow: []Rule{{Roles: admin}, {Authenticated: new(true)}}},
			req:    as(get("/"), user()),
			want:   Decision{Allowed, "allow[1]"},
		},
		{
			name:   "no allow rules deny everything",
			policy: Policy{},
			req:    as(get("/"), user("admin")),
			want:   Decision{Denied, ""},
		},
		{
			name:   "no allow rules deny anonymous callers too",
			policy: Policy{Deny: []Rule{{Paths: []string{"/x"}}}},
			req:    get("/"),
			want:   Decision{Denied, ""},
		},
		{
			name:   "anonymous caller and a rule for signed-in callers: log in",
			policy: Policy{Allow: []Rule{{Authenticated: new(false), Paths: []string{"/public"}}, {Roles: admin}}},
			req:    get("/private"),
			want:   Decision{NeedLogin, ""},
		},
		{
			name:   "anonymous caller and an mfa rule: log in, not step up",
			policy: Policy{Allow: []Rule{{MFAMaxAge: time.Minute}}},
			req:    get("/"),
			want:   Decision{NeedLogin, ""},
		},
		{
			name:   "anonymous caller and only anonymous rules: denied",
			policy: Policy{Allow: []Rule{{Authenticated: new(false), Paths: []string{"/public"}}}},
			req:    get("/private"),
			want:   Decision{Denied, ""},
		},
		{
			name:   "anonymous caller matching a deny rule: denied, not log in",
			policy: Policy{Deny: []Rule{{Paths: []string{"/admin"}}}, Allow: []Rule{{Roles: admin}}},
			req:    get("/admin"),
			want:   Decision{Denied, "deny[0]"},
		},
		{
			name:   "signed in without a second factor: step up",
			policy: Policy{Allow: []Rule{{Roles: admin, MFA: true}}},
			req:    as(get("/"), &authn.Principal{Subject: "a", Roles: admin, AuthMethods: []string{authn.AMRPassword}}),
			want:   Decision{NeedStepUp, ""},
		},
		{
			name:   "signed in too long ago: step up",
			policy: Policy{Allow: []Rule{{Name: "fresh-admins", Roles: admin, MFAMaxAge: 5 * time.Minute}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{NeedStepUp, ""},
		},
		{
			name:   "step up needs every other condition to hold",
			policy: Policy{Allow: []Rule{{Roles: admin, MFAMaxAge: 5 * time.Minute}}},
			req:    as(get("/"), user("user")),
			want:   Decision{Denied, ""},
		},
		{
			name:   "step up needs the expression to hold",
			policy: Policy{Allow: []Rule{{MFAMaxAge: 5 * time.Minute, Expr: `request.path == "/other"`}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{Denied, ""},
		},
		{
			name:   "step up, expression holding",
			policy: Policy{Allow: []Rule{{MFAMaxAge: 5 * time.Minute, Expr: `request.path == "/"`}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{NeedStepUp, ""},
		},
		{
			name:   "step up not when an expression fails at run time",
			policy: Policy{Allow: []Rule{{MFAMaxAge: 5 * time.Minute, Expr: `request.headers["x"] == "y"`}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{Denied, ""},
		},
		{
			name:   "a later rule allows: no step up",
			policy: Policy{Allow: []Rule{{Roles: admin, MFAMaxAge: 5 * time.Minute}, {Name: "read", Methods: []string{"GET"}}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{Allowed, "read"},
		},
		{
			name:   "step up not past a deny rule",
			policy: Policy{Deny: []Rule{{Name: "no", Roles: admin}}, Allow: []Rule{{Roles: admin, MFAMaxAge: 5 * time.Minute}}},
			req:    as(get("/"), user("admin")),
			want:   Decision{Denied, "no"},
		},
		{
			name:   "signed in, no rule for them: denied",
			policy: Policy{Allow: []Rule{{Roles: admin}}},
			req:    as(get("/"), user("user")),
			want:   Decision{Denied, ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.policy)
			got := c.Decide(tt.req)
			if got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
			if e := c.Explain(tt.req); e.Decision != got {
				t.Errorf("Explain decided %+v, Decide %+v", e.Decision, got)
			}
			if got.Allowed() != (tt.want.Outcome == Allowed) {
				t.Errorf("Allowed() = %v", got.Allowed())
			}
		})
	}
}

// TestExprFailsClosed checks that an expression failing at run time counts
// as no match in an allow rule and as a match in a deny rule.
func TestExprFailsClosed(t *testing.T) {
	many := user("admin")
	for i := range 500 {
		many.Roles = append(many.Roles, fmt.Sprintf("r%d", i))
	}
	tests := []struct {
		name    string
		expr    string
		req     *Request
		wantErr string // in the explanation
	}{
		{"missing header", `request.headers["x-tenant"] == "acme"`, get("/"), "no such key: x-tenant"},
		{"missing query parameter", `request.query["tenant"] == "acme"`, get("/"), "no such key: tenant"},
		{"missing claim", `principal.claims.tenant == "acme"`, as(get("/"), user()), "no such key: tenant"},
		{"claim of another type", `principal.claims.level > 3`, as(get("/"), &authn.Principal{Subject: "a", Claims: map[string]any{"level": "high"}}), "no such overload"},
		{"not a bool at run time", `principal.claims.admin`, as(get("/"), &authn.Principal{Subject: "a", Claims: map[string]any{"admin": "yes"}}), "returned a string, not a bool"},
		{"constructing the request", `moat.Request{} == request`, get("/"), "cannot be constructed"},
		{"field of a constructed request", `moat.Request{}.method == ""`, get("/"), "cannot be constructed"},
		{"unknown field of a dyn value", `dyn(request).nope == ""`, get("/"), "no such key: nope"},
		{"cost limit", `principal.roles.all(a, principal.roles.all(b, a != b || a == b))`, as(get("/"), many), "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allow := mustCompile(t, Policy{Allow: []Rule{{Name: "x", Expr: tt.expr}}})
			if d := allow.Decide(tt.req); d.Allowed() {
				t.Errorf("allow rule: Decide = %+v, want not allowed", d)
			}
			e := allow.Explain(tt.req)
			if len(e.Rules) != 1 || len(e.Rules[0].Failed) != 1 || !strings.HasPrefix(e.Rules[0].Failed[0], "expr: error: ") || !strings.Contains(e.Rules[0].Failed[0], tt.wantErr) {
				t.Errorf("allow rule: Explain = %+v, want one failure \"expr: error: ...%s...\"", e.Rules, tt.wantErr)
			}
			deny := mustCompile(t, Policy{Deny: []Rule{{Name: "x", Expr: tt.expr}}, Allow: []Rule{{}}})
			if d := deny.Decide(tt.req); d != (Decision{Denied, "x"}) {
				t.Errorf("deny rule: Decide = %+v, want denied by x", d)
			}
			e = deny.Explain(tt.req)
			if len(e.Rules) != 2 || !e.Rules[0].Matched || len(e.Rules[0].Notes) != 1 || !strings.Contains(e.Rules[0].Notes[0], tt.wantErr) {
				t.Errorf("deny rule: Explain = %+v, want a match with a note on %q", e.Rules, tt.wantErr)
			}
		})
	}
}

func TestExprCostTracking(t *testing.T) {
	tests := []struct {
		expr    string
		tracked bool
	}{
		{`request.headers["x-tenant"] == principal.claims["tenant"] && request.method in ["GET", "POST"]`, false},
		{`principal.roles.exists(r, r == "admin")`, false},
		{`request.path.matches("^/api/v[0-9]+/")`, false},
		{`principal.roles.all(a, principal.roles.all(b, a == b))`, true},
		{`request.path.replace("/", request.headers["x"]) == ""`, true},
		{`principal.roles.exists(r, r.contains(request.path))`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			c := mustCompile(t, Policy{Allow: []Rule{{Expr: tt.expr}}})
			if got := c.allow[0].expr.tracked; got != tt.tracked {
				t.Errorf("runs with the cost limit: %v, want %v", got, tt.tracked)
			}
		})
	}
}

func TestNil(t *testing.T) {
	var c *Compiled
	if d := c.Decide(get("/")); d != (Decision{Outcome: Denied}) {
		t.Errorf("nil Compiled: Decide = %+v", d)
	}
	c = mustCompile(t, Policy{Allow: []Rule{{}}})
	if d := c.Decide(nil); d != (Decision{Outcome: Denied}) {
		t.Errorf("nil Request: Decide = %+v", d)
	}
	if e := c.Explain(nil); e.Decision != (Decision{Outcome: Denied}) {
		t.Errorf("nil Request: Explain = %+v", e)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Allowed: "allowed", Denied: "denied", NeedLogin: "need login", NeedStepUp: "need step-up", 0: "Outcome(0)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

// TestDecideMatchesReference compares Decide with a plain reading of the
// documented semantics over many random policies and requests.
func TestDecideMatchesReference(t *testing.T) {
	src := prngSource{rand.New(rand.NewPCG(1, 2))}
	for i := range 3000 {
		p := genPolicy(src)
		c, err := Compile(p)
		if err != nil {
			t.Fatalf("policy %d: %v", i, err)
		}
		for range 5 {
			r := genRequest(src)
			if got, want := c.Decide(r), refDecide(p, r); got != want {
				t.Fatalf("policy %+v\nrequest %+v principal %+v\nDecide = %+v, want %+v", p, r, r.Principal, got, want)
			}
		}
	}
}

// TestDecideConcurrent decides on different requests at once; with -race
// it also checks that pooled expression state is not shared.
func TestDecideConcurrent(t *testing.T) {
	c := mustCompile(t, Policy{Allow: []Rule{{Name: "tenant", Expr: `request.headers["x-tenant"] == principal.claims.tenant && request.query["q"] == principal.subject`}}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				tenant := fmt.Sprintf("t%d-%d", g, i)
				p := &authn.Principal{Subject: tenant, Claims: map[string]any{"tenant": tenant}}
				r := &Request{Method: "GET", Path: "/", Header: http.Header{"X-Tenant": {tenant}}, Query: map[string][]string{"q": {tenant}}, Principal: p}
				if d := c.Decide(r); !d.Allowed() {
					t.Errorf("Decide(%s) = %+v, want allowed", tenant, d)
					return
				}
				r.Header.Set("X-Tenant", "other")
				if d := c.Decide(r); d.Allowed() {
					t.Errorf("Decide(%s, other tenant) = %+v, want not allowed", tenant, d)
					return
				}
			}
		})
	}
	wg.Wait()
}
