package authz

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/parser"
)

// LintRoute is what Lint needs to know about a route.
type LintRoute struct {
	Name   string
	Hosts  []string // as in config: exact names or "*.example.com"; empty for any host
	Path   string   // the route's path prefix
	Policy string   // "public", "authenticated" or "deny"
	Roles  []string // the route's own roles (with policy authenticated)
	Access Policy   // the route's allow and deny rules
}

// Finding is one thing Lint found.
type Finding struct {
	Route   string // the route's name
	Rule    string // the rule's name, as in Decision.Rule; empty for the route itself
	Message string // what is wrong and what to change
}

// Lint looks for access rules that open more than their author likely
// meant. Its findings are advice: none of them stops a config from
// loading. It reports, in the order of routes and then of rules:
//
//   - a public route inside the path of an authenticated or deny route on
//     a host they share, which it takes precedence over for part of that
//     route (a longer prefix, or a more specific host). A route at "/" is
//     left out: every route lies inside it, and public routes beside a
//     catch-all authenticated route are the usual deny-by-default layout;
//   - a public route whose path has "admin" in it and no allow rules;
//   - an authenticated route with "admin" in its name or path that every
//     signed-in user can reach: no roles on the route, and no allow rule
//     with roles, scopes or an expression;
//   - an allow rule on a path with "admin" in it (its own paths, or the
//     route's) that restricts neither methods, roles, scopes nor an
//     expression, on a route without roles;
//   - an allow rule whose expression is always true (true, or true || ...);
//   - an allow rule with no conditions that is not the last one, so the
//     rules after it are never reached;
//   - an allow rule with no conditions on an authenticated route without
//     roles that has deny rules, which makes the deny rules a blocklist;
//   - a deny rule with no conditions, which denies everything;
//   - an allow rule whose source_ips has a /0 network, which matches every
//     address of its family;
//   - a rule whose paths all lie outside the route's path, so it never
//     applies.
//
// Routes whose policy is deny are checked only as the container of a
// public route. Lint does not compile expressions; Compile reports errors
// in them.
func Lint(routes []LintRoute) []Finding {
	var out []Finding
	for i := range routes {
		rt := &routes[i]
		add := func(rule, format string, args ...any) {
			out = append(out, Finding{Route: rt.Name, Rule: rule, Message: fmt.Sprintf(format, args...)})
		}
		if rt.Policy == "public" {
			for j := range routes {
				if j != i && shadows(rt, &routes[j]) {
					pr := &routes[j]
					add("", "public route %q (path %s) takes precedence over %s route %q (path %s) for part of what %q covers on the same hosts, opening it to anyone: move the public route out of %s, or make it %s too and open only what must be public with allow rules",
						rt.Name, displayPath(rt.Path), pr.Policy, pr.Name, displayPath(pr.Path), pr.Name, displayPath(pr.Path), pr.Policy)
				}
			}
		}
		if rt.Policy == "deny" {
			continue
		}
		routeAdmin := hasAdmin(rt.Path)
		if rt.Policy == "public" && routeAdmin && len(rt.Access.Allow) == 0 {
			add("", "public route on admin path %s lets anyone use every method: make it authenticated with roles, or add allow rules that restrict methods, roles or scopes", displayPath(rt.Path))
		}
		if rt.Policy == "authenticated" && len(rt.Roles) == 0 && (hasAdmin(rt.Name) || routeAdmin) && !anyIdentityRule(rt.Access.Allow) {
			add("", "authenticated route %q lets every signed-in user in: add roles (for example roles: [admin]) to the route or to its allow rules", rt.Name)
		}
		lintRules(rt, "deny", rt.Access.Deny, add)
		lintRules(rt, "allow", rt.Access.Allow, add)
	}
	return out
}

func lintRules(rt *LintRoute, kind string, rules []Rule, add func(rule, format string, args ...any)) {
	for i := range rules {
		r := &rules[i]
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("%s[%d]", kind, i)
		}
		if ps := outsidePaths(rt.Path, r.Paths, kind == "deny"); ps != nil {
			add(name, "paths %v lie outside the route's path %s, so the rule never applies: use paths under %s", ps, displayPath(rt.Path), displayPath(rt.Path))
		}
		if kind == "deny" {
			if noConditions(r) {
				add(name, "the deny rule has no conditions, so the route denies every request: give the rule conditions, or set the route's policy to deny")
			}
			continue
		}
		if alwaysTrue(r.Expr) {
			add(name, "expr %q is always true, so it restricts nothing: write the condition it should check, or remove it", r.Expr)
		}
		if len(rt.Roles) == 0 && len(r.Methods) == 0 && len(r.Roles) == 0 && len(r.Scopes) == 0 && r.Expr == "" {
			paths := r.Paths
			if len(paths) == 0 {
				paths = []string{rt.Path}
			}
			for _, p := range paths {
				if hasAdmin(p) {
					add(name, "the rule opens every method on admin path %s to anyone it lets in: restrict it with methods, roles, scopes or expr", displayPath(p))
					break
				}
			}
		}
		if noConditions(r) {
			if i < len(rules)-1 {
				add(name, "the rule has no conditions, so the allow rules after it are never reached: move it last, or give it conditions")
			}
			if rt.Policy == "authenticated" && len(rt.Roles) == 0 && len(rt.Access.Deny) > 0 {
				add(name, "the rule has no conditions, so every signed-in user the deny rules miss gets in: say who is allowed with roles, scopes or expr rather than relying on deny rules")
			}
		}
		for _, p := range r.SourceIPs {
			if p.IsValid() && p.Bits() == 0 {
				add(name, "source_ips %s matches every address of its family, so it restricts nothing: list the networks meant", p)
			}
		}
	}
}

// noConditions reports whether r matches every request.
func noConditions(r *Rule) bool {
	return r.Authenticated == nil && len(r.Roles) == 0 && len(r.Scopes) == 0 && len(r.Methods) == 0 &&
		len(r.Paths) == 0 && !r.MFA && r.MFAMaxAge == 0 && len(r.AuthMethods) == 0 && len(r.SourceIPs) == 0 && r.Expr == ""
}

// anyIdentityRule reports whether some rule restricts who the caller is.
func anyIdentityRule(rules []Rule) bool {
	for i := range rules {
		if len(rules[i].Roles) > 0 || len(rules[i].Scopes) > 0 || rules[i].Expr != "" {
			return true
		}
	}
	return false
}

func hasAdmin(s string) bool { return strings.Contains(strings.ToLower(s), "admin") }

func displayPath(p string) string {
	if p = strings.TrimRight(p, "/"); p == "" {
		return "/"
	}
	return p
}

// outsidePaths returns paths when every one of them lies outside route
// (neither under it nor above it), and nil otherwise.
func outsidePaths(route string, paths []string, loose bool) []string {
	if len(paths) == 0 {
		return nil
	}
	rp := strings.TrimRight(route, "/")
	under := pathUnder
	if loose {
		under = pathUnderLoose
	}
	for _, p := range paths {
		p = strings.TrimRight(p, "/")
		if under(p, rp) || under(rp, p) {
			return nil
		}
	}
	return paths
}

// alwaysTrue reports whether the expression src is the literal true, or
// an || with such an operand, or an && of such operands.
func alwaysTrue(src string) bool {
	if src == "" || len(src) > maxExprLen {
		return false
	}
	p, err := parser.NewParser()
	if err != nil {
		return false
	}
	a, errs := p.Parse(common.NewTextSource(src))
	if len(errs.GetErrors()) > 0 {
		return false
	}
	return exprTrue(a.Expr())
}

func exprTrue(e ast.Expr) bool {
	switch e.Kind() {
	case ast.LiteralKind:
		return e.AsLiteral() == types.True
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.LogicalOr:
			for _, a := range c.Args() {
				if exprTrue(a) {
					return true
				}
			}
		case operators.LogicalAnd:
			for _, a := range c.Args() {
				if !exprTrue(a) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// shadows reports whether the public route pub takes precedence over the
// route other (authenticated or deny) for some request other would
// otherwise serve. The route table prefers an exact host to a wildcard to
// any host, then the longest path.
func shadows(pub, other *LintRoute) bool {
	if other.Policy != "authenticated" && other.Policy != "deny" {
		return false
	}
	pp, op := strings.TrimRight(pub.Path, "/"), strings.TrimRight(other.Path, "/")
	if op == "" {
		return false // every route lies inside "/"
	}
	for _, hp := range hostsOrAny(pub.Hosts) {
		for _, ho := range hostsOrAny(other.Hosts) {
			if !hostsOverlap(hp, ho) {
				continue
			}
			cp, co := hostClass(hp), hostClass(ho)
			switch {
			case cp == co && pathUnder(pp, op):
				return true
			case cp > co && (pathUnder(pp, op) || pathUnder(op, pp)):
				return true
			}
		}
	}
	return false
}

func hostsOrAny(hs []string) []string {
	if len(hs) == 0 {
		return []string{""}
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
	return out
}

// hostClass ranks a route host as the table does: exact 2, wildcard 1,
// any 0.
func hostClass(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1
	}
	return 2
}

// hostsOverlap reports whether some host name is served under both a and b.
func hostsOverlap(a, b string) bool {
	if a == "" || b == "" || a == b {
		return true
	}
	covers := func(wild, exact string) bool {
		i := strings.IndexByte(exact, '.')
		return strings.HasPrefix(wild, "*.") && hostClass(exact) == 2 && i > 0 && exact[i+1:] == wild[2:]
	}
	return covers(a, b) || covers(b, a)
}
