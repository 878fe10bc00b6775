package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/moatgw/moat/internal/authz"
)

// amrValues are the authentication methods a rule may ask for.
var amrValues = []string{"pwd", "otp", "recovery", "webauthn", "oidc", "mfa"}

func (v *validator) accessRules(p string, r Route) {
	if r.Policy == PolicyDeny && (len(r.Allow) > 0 || len(r.Deny) > 0) {
		v.add(p+".allow", "a route whose policy is deny refuses everything: allow and deny rules do not apply")
		return
	}
	for i, rule := range r.Allow {
		v.accessRule(indexPath(p+".allow", i), r, rule)
	}
	for i, rule := range r.Deny {
		v.accessRule(indexPath(p+".deny", i), r, rule)
	}
}

func (v *validator) accessRule(p string, r Route, rule AccessRule) {
	if rule.Name != "" && !isShortName(rule.Name, 63) {
		v.add(p+".name", "%q: want 1 to 63 lower-case letters, digits or -", clip(rule.Name, 70))
	}
	if rule.Authenticated != nil && !*rule.Authenticated && r.Policy == PolicyAuthenticated {
		v.add(p+".authenticated", "false never matches on a route whose policy is authenticated: every caller there has credentials")
	}
	for i, role := range rule.Roles {
		v.check(indexPath(p+".roles", i), checkRole(role))
	}
	for i, sc := range rule.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n") || len(sc) > 200 {
			v.add(indexPath(p+".scopes", i), "%q is not a scope: no spaces, 1 to 200 characters", clip(sc, 60))
		}
	}
	for i, m := range rule.Methods {
		if !isToken(m) || strings.ToUpper(m) != m {
			v.add(indexPath(p+".methods", i), "%q is not an HTTP method: write it in upper case, such as GET or POST", clip(m, 30))
		}
	}
	for i, path := range rule.Paths {
		pp := indexPath(p+".paths", i)
		if err := checkRoutePath(path); err != nil {
			v.add(pp, "%v", err)
		} else if !underPrefix(path, r.Path) {
			v.add(pp, "%q is outside the route's path %q: the rule could never match", path, r.Path)
		}
	}
	if rule.MFAMaxAge < 0 {
		v.add(p+".mfa_max_age", "must not be negative")
	}
	for i, m := range rule.AuthMethods {
		if err := oneOf("authentication method", m, amrValues...); err != nil {
			v.add(indexPath(p+".auth_methods", i), "%v", err)
		}
	}
	for i, c := range rule.SourceIPs {
		if _, err := parsePrefix(c); err != nil {
			v.add(indexPath(p+".source_ips", i), "%q: %v", clip(c, 60), err)
		}
	}
	if len(rule.Expr) > 4096 {
		v.add(p+".expr", "is %d bytes, more than 4096", len(rule.Expr))
	} else if err := checkExpr(rule.Expr); err != nil {
		v.add(p+".expr", "%v", err)
	}
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		if pfx.Masked() != pfx {
			return netip.Prefix{}, fmt.Errorf("host bits are set: did you mean %s?", pfx.Masked())
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR (10.0.0.0/8, 2001:db8::/32) or an address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// underPrefix reports whether path lies within prefix at a segment boundary.
func underPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	path = strings.TrimSuffix(path, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// AccessPolicy is the route's allow and deny rules as the policy engine
// takes them. A route without allow rules lets in every caller its policy
// admits (an allow rule without conditions). Call it on a validated
// config: addresses that do not parse are left out.
func (r *Route) AccessPolicy() authz.Policy {
	var p authz.Policy
	for _, rule := range r.Allow {
		p.Allow = append(p.Allow, rule.authzRule())
	}
	if len(p.Allow) == 0 {
		p.Allow = []authz.Rule{{Name: "default"}}
	}
	for _, rule := range r.Deny {
		p.Deny = append(p.Deny, rule.authzRule())
	}
	return p
}

func (a AccessRule) authzRule() authz.Rule {
	r := authz.Rule{
		Name: a.Name, Authenticated: a.Authenticated, Roles: a.Roles, Scopes: a.Scopes, Methods: a.Methods,
		Paths: a.Paths, MFA: a.MFA, MFAMaxAge: a.MFAMaxAge.D(), AuthMethods: a.AuthMethods, Expr: a.Expr,
	}
	for _, s := range a.SourceIPs {
		if pfx, err := parsePrefix(s); err == nil {
			r.SourceIPs = append(r.SourceIPs, pfx)
		}
	}
	return r
}

// checkExpr compiles one rule's expression alone, so that its error can be
// placed at the rule.
func checkExpr(expr string) error {
	if expr == "" {
		return nil
	}
	_, err := authz.Compile(authz.Policy{Allow: []authz.Rule{{Name: "rule", Expr: expr}}})
	if err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "allow[0] (rule): ")
		msg = strings.TrimPrefix(msg, "expr: ")
		return errors.New(msg)
	}
	return nil
}
