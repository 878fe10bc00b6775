package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/authz"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/route"
	"github.com/moatgw/moat/internal/server"
	"github.com/moatgw/moat/internal/store"
)

const policyUsage = `Usage: moat policy <test|lint> --config FILE [flags]

Check who may do what, before a request does (see docs/policies.md).

  test [--as USER | --claims JSON] [--method M] [--ip ADDR] URL
                       the route URL matches, its decision and the rule that made it,
                       or why each rule failed
  lint                 over-broad rules: public routes inside protected ones, expressions
                       that are always true, admin paths open to everyone...`

func runPolicy(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, policyUsage)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, policyUsage)
		return ExitOK
	case "test":
		return runPolicyTest(args[1:], stdio)
	case "lint":
		return runPolicyLint(args[1:], stdio)
	}
	fmt.Fprintf(stdio.Err, "moat policy: unknown command %q\n\n%s\n", args[0], policyUsage)
	return ExitUsage
}

// claimsPrincipal is the JSON --claims takes.
type claimsPrincipal struct {
	Sub      string         `json:"sub"`
	Name     string         `json:"name"`
	Method   string         `json:"method"`
	Roles    []string       `json:"roles"`
	Scopes   []string       `json:"scopes"`
	AMR      []string       `json:"amr"`
	AuthTime *int64         `json:"auth_time"`
	Issuer   string         `json:"iss"`
	Claims   map[string]any `json:"claims"`
}

func runPolicyTest(args []string, stdio Stdio) int {
	fs := newFlags("policy test", "moat policy test --config FILE [--as USER | --claims JSON] [--method GET] [--ip ADDR] URL",
		`Evaluate a route's access rules for one request, without sending it: print the
decision, the rule that made it, and for every rule why it matched or failed.

--as USER takes the user's roles from the store and assumes a password sign-in
(add --mfa for a second factor, --auth-age for how long ago). --claims takes a
principal as JSON: {"sub","name","method","roles","scopes","amr","auth_time","iss","claims"}.
Without either, the request is anonymous. Exit status: 0 allowed, 1 refused, 2 usage.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	as := fs.String("as", "", "a user from the store")
	claims := fs.String("claims", "", "a principal as JSON")
	method := fs.String("method", "GET", "the request method")
	ip := fs.String("ip", "203.0.113.10", "the client address")
	mfa := fs.Bool("mfa", false, "with --as: the user signed in with a second factor")
	age := fs.Duration("auth-age", 0, "with --as: how long ago the user signed in")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() != 1 || *as != "" && *claims != "" {
		fmt.Fprintln(stdio.Err, "moat policy test: want exactly one URL, and at most one of --as and --claims\nhint: moat policy test --config moat.yaml --as alice --method POST https://app.example.com/api/items")
		return ExitUsage
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || u.Path == "" && u.Host == "" {
		fmt.Fprintf(stdio.Err, "moat policy test: %q is not a URL such as https://app.example.com/api\n", fs.Arg(0))
		return ExitUsage
	}
	if u.Path == "" {
		u.Path = "/"
	}
	addr, err := netip.ParseAddr(*ip)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat policy test: --ip %q is not an address\n", *ip)
		return ExitUsage
	}
	cfg, code := loadConfig(*path, stdio, "policy test")
	if cfg == nil {
		return code
	}
	now := time.Now()
	var p *authn.Principal
	switch {
	case *claims != "":
		var c claimsPrincipal
		dec := json.NewDecoder(strings.NewReader(*claims))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			fmt.Fprintf(stdio.Err, "moat policy test: --claims: %v\n", err)
			return ExitUsage
		}
		p = &authn.Principal{Subject: c.Sub, Name: cmpOr(c.Name, c.Sub), Method: cmpOr(c.Method, authn.MethodJWT), Roles: c.Roles,
			Scopes: c.Scopes, AuthMethods: c.AMR, Issuer: c.Issuer, Claims: c.Claims}
		if c.AuthTime != nil {
			p.AuthTime = time.Unix(*c.AuthTime, 0)
		}
	case *as != "":
		if p, code = principalOf(cfg, *as, *mfa, now.Add(-*age), stdio); p == nil {
			return code
		}
	}
	rc, ok := matchRoute(cfg, u)
	if !ok {
		fmt.Fprintf(stdio.Out, "no route matches %s: Moat answers 404\n", u)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "route %s (path %s, policy %s)\n", rc.Name, rc.Path, rc.Policy)
	switch {
	case rc.Policy == config.PolicyDeny:
		fmt.Fprintln(stdio.Out, "decision: denied by the route's policy (deny)")
		return ExitFailure
	case rc.Policy == config.PolicyAuthenticated && p == nil:
		fmt.Fprintln(stdio.Out, "decision: need login (the route needs credentials; try --as or --claims)")
		return ExitFailure
	case rc.Policy == config.PolicyAuthenticated && !p.HasRole(rc.Roles...):
		fmt.Fprintf(stdio.Out, "decision: denied: the route needs one of the roles %v; %s has %v\n", rc.Roles, p.Name, p.Roles)
		return ExitFailure
	case rc.Policy == config.PolicyPublic && len(rc.Allow)+len(rc.Deny) == 0:
		fmt.Fprintln(stdio.Out, "decision: allowed (a public route without rules)")
		return ExitOK
	}
	compiled, err := authz.Compile(rc.AccessPolicy())
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat policy test: %v\n", err)
		return ExitUsage
	}
	e := compiled.Explain(&authz.Request{Method: strings.ToUpper(*method), Path: u.Path, Query: u.Query(), ClientIP: addr, Time: now, Principal: p})
	if err := e.WriteText(stdio.Out); err != nil {
		fmt.Fprintf(stdio.Err, "moat policy test: %v\n", err)
		return ExitFailure
	}
	if !e.Decision.Allowed() {
		return ExitFailure
	}
	return ExitOK
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// principalOf builds the principal of a user from the store, as a session
// sign-in would give it.
func principalOf(cfg *config.Config, name string, mfa bool, authTime time.Time, stdio Stdio) (*authn.Principal, int) {
	ctx := context.Background()
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "policy test")
	if st == nil {
		return nil, code
	}
	defer st.Close()
	u, err := st.Store.Users().GetByUsername(ctx, strings.ToLower(name))
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stdio.Err, "moat policy test: no user %q\nhint: moat user list --config FILE\n", name)
		return nil, ExitFailure
	} else if err != nil {
		fmt.Fprintf(stdio.Err, "moat policy test: %v\n", err)
		return nil, ExitFailure
	}
	amr := []string{accounts.MethodPassword}
	if mfa {
		amr = append(amr, accounts.MethodTOTP)
	}
	return &authn.Principal{Subject: u.ID, Name: u.Username, Method: authn.MethodSession, Roles: u.Roles,
		AuthMethods: amr, AuthTime: authTime, Issuer: authn.LocalIssuer}, -1
}

// matchRoute finds the route a URL goes to, as the gateway chooses it.
func matchRoute(cfg *config.Config, u *url.URL) (*config.Route, bool) {
	specs := make([]route.Spec[*config.Route], 0, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		specs = append(specs, route.Spec[*config.Route]{Hosts: rc.Hosts, Path: rc.Path, Value: rc})
	}
	t, err := route.New(specs)
	if err != nil {
		return nil, false
	}
	rc, ok := t.Match(u.Host, u.Path)
	if !ok {
		return nil, false
	}
	// A deny route that covers the request in another spelling wins.
	if rc.Policy != config.PolicyDeny {
		for i := range cfg.Routes {
			d := &cfg.Routes[i]
			if d.Policy != config.PolicyDeny {
				continue
			}
			dt, err := route.New([]route.Spec[*config.Route]{{Hosts: d.Hosts, Path: d.Path, Value: d}})
			if err == nil {
				if _, hit := dt.MatchLoose(u.Host, u.Path); hit {
					return d, true
				}
			}
		}
	}
	return rc, true
}

func runPolicyLint(args []string, stdio Stdio) int {
	fs := newFlags("policy lint", "moat policy lint --config FILE",
		"Report over-broad access rules. Exit status: 0 nothing found, 1 findings, 2 usage.", stdio)
	path := fs.String("config", "", "path to the config file (required)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*path, stdio, "policy lint")
	if cfg == nil {
		return code
	}
	var routes []authz.LintRoute
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		routes = append(routes, authz.LintRoute{Name: rc.Name, Hosts: rc.Hosts, Path: rc.Path, Policy: rc.Policy, Roles: rc.Roles, Access: explicitRules(rc)})
	}
	findings := authz.Lint(routes)
	for _, f := range findings {
		where := "route " + f.Route
		if f.Rule != "" {
			where += ", rule " + f.Rule
		}
		fmt.Fprintf(stdio.Out, "%s: %s\n", where, f.Message)
	}
	if len(findings) > 0 {
		fmt.Fprintf(stdio.Out, "%d finding(s)\n", len(findings))
		return ExitFailure
	}
	fmt.Fprintln(stdio.Out, "ok: no over-broad rules found")
	return ExitOK
}

// explicitRules are the route's rules as written, without the default
// allow rule AccessPolicy adds, so that lint judges what the user wrote.
func explicitRules(rc *config.Route) authz.Policy {
	p := rc.AccessPolicy()
	if len(rc.Allow) == 0 {
		p.Allow = nil
	}
	return p
}
