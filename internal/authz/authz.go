// Package authz decides whether a request may reach a route: deny by
// default, with a route's deny rules checked first and its allow rules
// after them. A rule can look at the caller (roles, scopes, how and how
// recently they signed in, whether they used a second factor), at the
// request (method, path, client address) and at both through a CEL
// expression (https://cel.dev).
//
// A Policy is compiled once, when config loads, into an immutable Compiled
// value; deciding on a request parses nothing and compiles nothing.
// Explain gives the same decision together with the result of every rule,
// and Lint points out rules that open more than their author likely meant.
package authz

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/moatgw/moat/internal/authn"
)

// Rule is one allow or deny rule. Every condition it sets must hold for
// the rule to match; a list condition holds when any of its entries does,
// except Scopes, which needs all of them. A rule without conditions
// matches every request.
//
// The conditions on the caller (Roles, Scopes, MFA, MFAMaxAge,
// AuthMethods) never hold for an anonymous request.
type Rule struct {
	// Name names the rule in decisions, events and explanations. Optional:
	// an unnamed rule is "allow[i]" or "deny[i]", i counting from 0.
	Name string
	// Authenticated: nil for any caller, true for a signed-in caller only,
	// false for anonymous requests only.
	Authenticated *bool
	// Roles: the caller has at least one of them.
	Roles []string
	// Scopes: the caller has every one of them.
	Scopes []string
	// Methods: the request method is one of them, compared without regard
	// to ASCII case.
	Methods []string
	// Paths: the request path is one of them or lies below one, at a
	// segment boundary: /admin matches /admin and /admin/users, not
	// /administrator. Each must start with "/"; a trailing "/" is ignored,
	// so "/" matches every path. In deny rules the comparison is loose, as
	// route.Table's MatchLoose: case is ignored and a prefix may also end
	// at '.', ';', a space or a tab, so that a backend that matches paths
	// loosely cannot serve a denied path under another spelling.
	Paths []string
	// MFA: the caller signed in with a second factor
	// (authn.Principal.MultiFactor).
	MFA bool
	// MFAMaxAge: the caller signed in with a second factor at most this
	// long before the request (authn.Principal.AuthTime). It implies MFA.
	// 0 accepts any age.
	MFAMaxAge time.Duration
	// AuthMethods: the caller proved who they are with at least one of
	// these (authn.Principal.AuthMethods, such as authn.AMRWebAuthn).
	AuthMethods []string
	// SourceIPs: the client address is in at least one of these networks.
	SourceIPs []netip.Prefix
	// Expr is a CEL expression that must evaluate to true. See Compile for
	// what it can refer to.
	Expr string
}

// Policy is a route's access policy.
type Policy struct {
	// Allow: a request must match one of these, in order, or it is
	// refused. No allow rules refuses everything.
	Allow []Rule
	// Deny: checked before Allow; a request matching any of them is
	// refused, whatever Allow says.
	Deny []Rule
}

// Request is what a decision looks at.
type Request struct {
	Method   string
	Path     string      // the decoded, normalised URL path
	Header   http.Header // may be nil
	Query    url.Values  // may be nil
	ClientIP netip.Addr  // the client address, as the client IP resolver found it
	Time     time.Time   // when the request arrived, for MFAMaxAge and expressions
	// Principal is the caller, nil when anonymous.
	Principal *authn.Principal
}

// Outcome is the kind of a Decision.
type Outcome int

// Outcomes.
const (
	// Allowed: an allow rule matched and no deny rule did.
	Allowed Outcome = iota + 1
	// Denied: a deny rule matched, or no allow rule matched and signing in
	// (again) would not help.
	Denied
	// NeedLogin: the request is anonymous, no allow rule matched, and some
	// allow rule does not require an anonymous caller, so signing in might
	// help. A server answers 401 or sends a browser to the login page.
	NeedLogin
	// NeedStepUp: the caller is signed in, no allow rule matched, and some
	// allow rule failed only on its MFA or MFAMaxAge condition, so signing
	// in again with a second factor would help.
	NeedStepUp
)

// String returns "allowed", "denied", "need login" or "need step-up".
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	case NeedLogin:
		return "need login"
	case NeedStepUp:
		return "need step-up"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Decision is the result of Decide.
type Decision struct {
	Outcome Outcome
	// Rule names the rule that decided: the allow rule that matched, or
	// the deny rule that matched. Empty when no rule matched.
	Rule string
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Outcome == Allowed }

// Compiled is a compiled Policy. It is immutable and safe for concurrent
// use.
type Compiled struct {
	deny  []rule
	allow []rule
	// anyNonAnonymousAllow: some allow rule could match a signed-in caller.
	anyNonAnonymousAllow bool
	// states pools the CEL activations; nil when no rule has an Expr.
	states *sync.Pool
}

// Compile checks p and compiles it. Each CEL expression is parsed and
// type-checked once, here. Every problem is reported, joined with
// errors.Join, each prefixed with the rule it is in, such as
// "allow[2] (writers): expr: at column 9: undefined field 'rolez'".
//
// Expressions see two variables:
//
//	request.method    string
//	request.path      string
//	request.headers   map(string, string)  lower-case names, first value of each
//	request.query     map(string, string)  first value of each
//	request.ip        string               the client address
//	request.time      timestamp
//	principal.authenticated          bool
//	principal.subject, .name, .method, .issuer   string
//	principal.roles, .scopes, .amr   list(string)
//	principal.auth_time              timestamp
//	principal.claims                 map(string, dyn)
//
// For an anonymous request principal.authenticated is false and the other
// fields are empty (auth_time is 0001-01-01T00:00:00Z). An expression has
// CEL's standard library and the strings extension, is at most 4 KiB long,
// and must have type bool (or dyn, checked when it runs).
//
// Its cost is bounded. When CEL's static estimate, for strings of up to
// 8 KiB and lists and maps of up to 256 entries, stays within 10,000 cost
// units, the expression's cost grows at most in proportion to the size of
// the request, and it runs as it is. Otherwise (nested comprehensions,
// string operations per list element, replace) it runs under a cost limit
// of 10,000 units (cel.CostLimit) and fails once past it. A missing key, a
// wrong type or an exceeded limit is a run time error, which Decide treats
// as described there.
func Compile(p Policy) (*Compiled, error) {
	c := &Compiled{}
	var errs []error
	var env *celEnv
	if slices.ContainsFunc(p.Allow, hasExpr) || slices.ContainsFunc(p.Deny, hasExpr) {
		var err error
		if env, err = newCELEnv(); err != nil {
			return nil, fmt.Errorf("building the expression environment: %w", err)
		}
		c.states = &sync.Pool{New: func() any { return env.newState() }}
	}
	names := map[string]string{}
	compileAll := func(kind string, rules []Rule) []rule {
		out := make([]rule, len(rules))
		for i := range rules {
			out[i] = compileRule(kind, i, &rules[i], env, &errs)
			if n := rules[i].Name; n != "" {
				if prev, dup := names[n]; dup {
					errs = append(errs, fmt.Errorf("%s: name: %q is also the name of %s", out[i].label, n, prev))
				} else {
					names[n] = out[i].label
				}
			}
		}
		return out
	}
	c.deny = compileAll("deny", p.Deny)
	c.allow = compileAll("allow", p.Allow)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range c.allow {
		if c.allow[i].auth != authAnonymous {
			c.anyNonAnonymousAllow = true
		}
	}
	return c, nil
}

func hasExpr(r Rule) bool { return r.Expr != "" }

// Decide decides on r. Deny rules are checked first, in order: the first
// that matches denies. Then allow rules, in order: the first that matches
// allows. When none does, the outcome is NeedLogin, NeedStepUp or Denied,
// as described on Outcome.
//
// Decide fails closed. An expression that fails at run time (a missing
// key, a type error, its cost limit) counts as not matching in an allow
// rule and as matching in a deny rule. A nil Compiled or Request is
// denied. Decide records nothing: the caller emits the event. It is safe
// for concurrent use and never panics.
func (c *Compiled) Decide(r *Request) Decision {
	if c == nil || r == nil {
		return Decision{Outcome: Denied}
	}
	ev := evaluator{c: c, r: r}
	defer ev.release()
	for i := range c.deny {
		if c.deny[i].matchFast(&ev) == 0 {
			return Decision{Outcome: Denied, Rule: c.deny[i].name}
		}
	}
	stepUp := false
	for i := range c.allow {
		rl := &c.allow[i]
		failed := rl.matchFast(&ev)
		if failed == 0 {
			return Decision{Outcome: Allowed, Rule: rl.name}
		}
		// matchFast stops at MFA when it fails, before the expression;
		// the step-up judgement needs the expression only when no rule
		// allows, so it is made below.
		if failed&^mfaConds == 0 {
			stepUp = true
		}
	}
	return c.fallback(&ev, stepUp)
}

// fallback decides when no rule matched. stepUp tells whether some allow
// rule failed on MFA before its expression was evaluated.
func (c *Compiled) fallback(ev *evaluator, stepUp bool) Decision {
	if ev.r.Principal == nil {
		if c.anyNonAnonymousAllow {
			return Decision{Outcome: NeedLogin}
		}
		return Decision{Outcome: Denied}
	}
	if stepUp {
		for i := range c.allow {
			if c.allow[i].onlyMFAFails(ev) {
				return Decision{Outcome: NeedStepUp}
			}
		}
	}
	return Decision{Outcome: Denied}
}

// Authentication requirements of a rule.
const (
	authAny = iota
	authRequired
	authAnonymous
)

// rule is a compiled Rule.
type rule struct {
	kind    string // "allow" or "deny"
	deny    bool
	name    string // Name, or kind[i]
	label   string // kind[i], with the Name in parentheses, for errors
	auth    int
	roles   []string
	scopes  []string
	methods []string // upper-case
	paths   []string // without a trailing slash; "" for "/"
	mfa     bool     // MFA or MFAMaxAge > 0
	maxAge  time.Duration
	amr     []string
	ips     []netip.Prefix // masked
	expr    *celProgram    // nil without an Expr
	loose   bool           // loose path comparison (deny rules)
	none    bool           // no conditions at all
}

func compileRule(kind string, i int, r *Rule, env *celEnv, errs *[]error) rule {
	label := fmt.Sprintf("%s[%d]", kind, i)
	name := label
	if r.Name != "" {
		name = r.Name
		label = fmt.Sprintf("%s (%s)", label, r.Name)
	}
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{label}, args...)...))
	}
	if isPositional(r.Name) {
		fail("name: %q looks like a rule's position; choose another name", r.Name)
	}
	c := rule{kind: kind, deny: kind == "deny", name: name, label: label, loose: kind == "deny"}
	if r.Authenticated != nil {
		c.auth = authAnonymous
		if *r.Authenticated {
			c.auth = authRequired
		}
	}
	checkNames := func(field string, vals []string) []string {
		for _, v := range vals {
			if strings.TrimSpace(v) == "" {
				fail("%s: an empty name", field)
			}
		}
		return slices.Clone(vals)
	}
	c.roles = checkNames("roles", r.Roles)
	c.scopes = checkNames("scopes", r.Scopes)
	c.amr = checkNames("auth_methods", r.AuthMethods)
	for _, m := range r.Methods {
		if !httpguts.ValidHeaderFieldName(m) {
			fail("methods: %q is not an HTTP method", m)
		}
		c.methods = append(c.methods, strings.ToUpper(m))
	}
	for _, p := range r.Paths {
		if !strings.HasPrefix(p, "/") {
			fail("paths: %q does not start with \"/\"", p)
		}
		c.paths = append(c.paths, strings.TrimRight(p, "/"))
	}
	if r.MFAMaxAge < 0 {
		fail("mfa_max_age: %v is negative", r.MFAMaxAge)
	}
	c.mfa = r.MFA || r.MFAMaxAge > 0
	c.maxAge = max(r.MFAMaxAge, 0)
	for _, p := range r.SourceIPs {
		if !p.IsValid() {
			fail("source_ips: an invalid network")
			continue
		}
		c.ips = append(c.ips, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}
	if c.auth == authAnonymous && (len(c.roles) > 0 || len(c.scopes) > 0 || len(c.amr) > 0 || c.mfa) {
		fail("authenticated: false cannot be combined with roles, scopes, auth_methods or mfa, which need a signed-in caller; the rule could never match")
	}
	if r.Expr != "" && env != nil {
		prg, err := env.compile(r.Expr)
		if err != nil {
			for _, e := range unwrapJoined(err) {
				fail("expr: %v", e)
			}
		}
		c.expr = prg
	}
	c.none = c.auth == authAny && len(c.roles) == 0 && len(c.scopes) == 0 && len(c.methods) == 0 &&
		len(c.paths) == 0 && !c.mfa && len(c.amr) == 0 && len(c.ips) == 0 && r.Expr == ""
	return c
}

// isPositional reports whether name has the form of an unnamed rule's
// name, "allow[i]" or "deny[i]".
func isPositional(name string) bool {
	for _, kind := range []string{"allow[", "deny["} {
		if rest, ok := strings.CutPrefix(name, kind); ok {
			if n, ok := strings.CutSuffix(rest, "]"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
				return true
			}
		}
	}
	return false
}

// unmappedBits returns p's prefix length for its address once an
// IPv4-mapped IPv6 address is unmapped.
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
