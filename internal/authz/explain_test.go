package authz

import (
	"bytes"
	"errors"
	"flag"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// explainPolicy is the policy of the golden explanations: a mix of every
// kind of condition.
func explainPolicy() Policy {
	return Policy{
		Deny: []Rule{
			{Name: "blocked-networks", SourceIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
			{Name: "contractors-off-admin", Roles: []string{"contractor"}, Paths: []string{"/admin"}},
			{Expr: `request.headers["x-debug"] == "1"`},
		},
		Allow: []Rule{
			{Name: "health", Authenticated: new(false), Methods: []string{"GET"}, Paths: []string{"/healthz"}},
			{Name: "admins", Roles: []string{"admin"}, Paths: []string{"/admin"}, MFAMaxAge: 15 * time.Minute},
			{Name: "writers", Scopes: []string{"items:write", "items:read"}, Methods: []string{"POST", "PUT"}},
			{AuthMethods: []string{authn.AMRWebAuthn}, Paths: []string{"/billing"}},
			{Name: "tenant", Roles: []string{"user"}, Expr: `request.headers["x-tenant"] == principal.claims.tenant`},
		},
	}
}

func TestExplainGolden(t *testing.T) {
	admin := user("admin")
	admin.AuthTime = t0.Add(-42 * time.Minute)
	tenantUser := user("user")
	tenantUser.Claims = map[string]any{"tenant": "acme"}
	tests := []struct {
		name   string
		policy Policy
		req    *Request
		want   Decision
	}{
		{"allowed", explainPolicy(), func() *Request {
			r := as(get("/items"), tenantUser)
			r.Header = http.Header{"X-Tenant": {"acme"}, "X-Debug": {"0"}}
			return r
		}(), Decision{Allowed, "tenant"}},
		{"denied-by-rule", explainPolicy(), func() *Request {
			r := as(get("/admin/users"), user("contractor", "admin"))
			r.ClientIP = netip.MustParseAddr("198.51.100.4")
			return r
		}(), Decision{Denied, "contractors-off-admin"}},
		{"deny-expr-error", explainPolicy(), func() *Request {
			r := as(get("/items"), user("user"))
			r.Header = http.Header{}
			return r
		}(), Decision{Denied, "deny[2]"}},
		{"step-up", explainPolicy(), func() *Request {
			r := as(get("/admin"), admin)
			r.Header = http.Header{"X-Debug": {"0"}}
			return r
		}(), Decision{NeedStepUp, ""}},
		{"need-login", explainPolicy(), func() *Request {
			r := get("/admin")
			r.Header = http.Header{"X-Debug": {"0"}}
			return r
		}(), Decision{NeedLogin, ""}},
		{"denied-no-rule", explainPolicy(), func() *Request {
			r := as(get("/billing"), &authn.Principal{Subject: "svc", Method: authn.MethodAPIKey, Scopes: []string{"items:read"}})
			r.Method = "put"
			r.Header = http.Header{"X-Debug": {"0"}, "X-Tenant": {"acme"}}
			return r
		}(), Decision{Denied, ""}},
		{"empty-policy", Policy{}, get("/"), Decision{Denied, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.policy)
			e := c.Explain(tt.req)
			if e.Decision != tt.want {
				t.Errorf("Explain decided %+v, want %+v", e.Decision, tt.want)
			}
			if d := c.Decide(tt.req); d != e.Decision {
				t.Errorf("Decide = %+v, Explain = %+v", d, e.Decision)
			}
			var buf bytes.Buffer
			if err := e.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "explain-"+tt.name+".txt")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("WriteText differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", golden, buf.Bytes(), want)
			}
			var again bytes.Buffer
			if err := c.Explain(tt.req).WriteText(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Errorf("a second explanation differs:\n%s", again.Bytes())
			}
		})
	}
}

// TestExplainFailed checks the line Explain writes for each kind of failed
// condition.
func TestExplainFailed(t *testing.T) {
	stale := user("user")
	stale.AuthTime = t0.Add(-42 * time.Minute)
	pwd := user("user")
	pwd.AuthMethods = []string{authn.AMRPassword}
	noTime := user()
	noTime.AuthTime = time.Time{}
	scoped := user()
	scoped.Scopes = []string{"a"}
	tests := []struct {
		name string
		rule Rule
		req  *Request
		want []string
	}{
		{"roles", Rule{Roles: []string{"admin"}}, as(get("/"), user("user")), []string{"roles: needs one of [admin]; has [user]"}},
		{"roles none", Rule{Roles: []string{"admin"}}, as(get("/"), user()), []string{"roles: needs one of [admin]; has no roles"}},
		{"roles anonymous", Rule{Roles: []string{"admin", "ops"}}, get("/"), []string{"roles: needs one of [admin ops]; anonymous"}},
		{"scopes", Rule{Scopes: []string{"a", "b", "c"}}, as(get("/"), scoped), []string{"scopes: needs all of [a b c]; lacks [b c]"}},
		{"mfa age", Rule{MFAMaxAge: 15 * time.Minute}, as(get("/"), stale), []string{"mfa: authenticated 42m ago, needs within 15m"}},
		{"mfa factor", Rule{MFA: true}, as(get("/"), pwd), []string{"mfa: needs a second factor; signed in with [pwd]"}},
		{"mfa both", Rule{MFAMaxAge: time.Hour + 30*time.Minute}, as(get("/"), func() *authn.Principal { p := *pwd; p.AuthTime = t0.Add(-2*time.Hour - 5*time.Second); return &p }()), []string{
			"mfa: needs a second factor; signed in with [pwd]",
			"mfa: authenticated 2h0m5s ago, needs within 1h30m",
		}},
		{"mfa unknown time", Rule{MFAMaxAge: time.Minute}, as(get("/"), noTime), []string{"mfa: sign-in time unknown, needs within 1m"}},
		{"authenticated", Rule{Authenticated: new(true)}, get("/"), []string{"authenticated: needs a signed-in caller; anonymous"}},
		{"anonymous", Rule{Authenticated: new(false)}, as(get("/"), user()), []string{`authenticated: needs an anonymous caller; signed in as "u-1"`}},
		{"methods", Rule{Methods: []string{"get", "HEAD"}}, func() *Request { r := get("/"); r.Method = "POST"; return r }(), []string{"methods: needs one of [GET HEAD]; is POST"}},
		{"paths", Rule{Paths: []string{"/admin/", "/"[:1] + "ops"}}, get("/administrator"), []string{"paths: needs one of [/admin /ops] or below; is /administrator"}},
		{"paths odd request", Rule{Paths: []string{"/a"}}, get("/b c"), []string{`paths: needs one of [/a] or below; is "/b c"`}},
		{"source ips", Rule{SourceIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, get("/"), []string{"source_ips: needs one of [10.0.0.0/8]; is 192.0.2.1"}},
		{"auth methods", Rule{AuthMethods: []string{"webauthn"}}, as(get("/"), pwd), []string{"auth_methods: needs one of [webauthn]; has [pwd]"}},
		{"expr false", Rule{Expr: `request.method == "POST"`}, get("/"), []string{"expr: false"}},
		{"expr error", Rule{Expr: `principal.claims.tenant == "a"`}, as(get("/"), user()), []string{"expr: error: no such key: tenant"}},
		{"several", Rule{Roles: []string{"admin"}, Methods: []string{"POST"}, Expr: `false`}, get("/"), []string{
			"methods: needs one of [POST]; is GET",
			"roles: needs one of [admin]; anonymous",
			"expr: false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, Policy{Allow: []Rule{tt.rule}})
			e := c.Explain(tt.req)
			if len(e.Rules) != 1 {
				t.Fatalf("Explain has %d rules, want 1", len(e.Rules))
			}
			rr := e.Rules[0]
			if rr.Matched || rr.Kind != "allow" || rr.Name != "allow[0]" {
				t.Errorf("result = %+v, want allow[0] not matched", rr)
			}
			if !slices.Equal(rr.Failed, tt.want) {
				t.Errorf("Failed =\n%q\nwant\n%q", rr.Failed, tt.want)
			}
		})
	}
}

// TestExplainAgreesWithDecide checks over many random policies and
// requests that Explain decides as Decide does, and that its rule results
// are consistent with the decision.
func TestExplainAgreesWithDecide(t *testing.T) {
	src := prngSource{rand.New(rand.NewPCG(3, 4))}
	for i := range 3000 {
		p := genPolicy(src)
		c, err := Compile(p)
		if err != nil {
			t.Fatalf("policy %d: %v", i, err)
		}
		for range 5 {
			r := genRequest(src)
			e := c.Explain(r)
			if d := c.Decide(r); e.Decision != d {
				t.Fatalf("policy %+v\nrequest %+v principal %+v\nExplain = %+v, Decide = %+v", p, r, r.Principal, e.Decision, d)
			}
			if len(e.Rules) != len(p.Deny)+len(p.Allow) {
				t.Fatalf("Explain has %d rules, the policy %d", len(e.Rules), len(p.Deny)+len(p.Allow))
			}
			first := ""
			for _, rr := range e.Rules {
				if rr.Matched != (len(rr.Failed) == 0) {
					t.Fatalf("rule %+v: Matched disagrees with Failed", rr)
				}
				if rr.Matched && first == "" {
					first = rr.Name
				}
			}
			if first != e.Decision.Rule {
				t.Fatalf("first matching rule %q, decision %+v", first, e.Decision)
			}
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteTextError(t *testing.T) {
	e := mustCompile(t, Policy{}).Explain(get("/"))
	if err := e.WriteText(failingWriter{}); err == nil {
		t.Error("WriteText to a failing writer returned nil")
	}
}
