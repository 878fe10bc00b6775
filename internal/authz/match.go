package authz

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// cond is a set of a rule's conditions, as bits.
type cond uint16

const (
	condAuth cond = 1 << iota
	condMethods
	condPaths
	condSourceIPs
	condRoles
	condScopes
	condAuthMethods
	condMFA    // no second factor
	condMFAAge // the sign-in is too old
	condExpr

	mfaConds = condMFA | condMFAAge
)

// evaluator holds what one decision needs besides the rules: the request
// and, once an expression runs, a CEL activation for it.
type evaluator struct {
	c  *Compiled
	r  *Request
	st *celState
}

func (ev *evaluator) state() *celState {
	if ev.st == nil {
		ev.st = ev.c.states.Get().(*celState)
		ev.st.reset(ev.r)
	}
	return ev.st
}

func (ev *evaluator) release() {
	if ev.st != nil {
		ev.st.reset(nil)
		ev.c.states.Put(ev.st)
		ev.st = nil
	}
}

// exprResult is the outcome of a rule's expression.
type exprResult struct {
	ran bool
	val bool
	err error
}

func (ev *evaluator) eval(p *celProgram) exprResult {
	v, err := p.eval(ev.state())
	return exprResult{ran: true, val: v, err: err}
}

// holds reports whether the expression counts as matching: an error counts
// as a match in a deny rule, and as no match in an allow rule.
func (x exprResult) holds(deny bool) bool {
	if x.err != nil {
		return deny
	}
	return x.val
}

// matchFast returns 0 when rl matches, or else a condition that failed. It
// checks the cheapest conditions first and stops at the first failure,
// except that it reports both MFA conditions together. When they fail, it
// does not run the expression.
func (rl *rule) matchFast(ev *evaluator) cond {
	if rl.none {
		return 0
	}
	r := ev.r
	p := r.Principal
	switch rl.auth {
	case authRequired:
		if p == nil {
			return condAuth
		}
	case authAnonymous:
		if p != nil {
			return condAuth
		}
	}
	if len(rl.methods) > 0 && !rl.methodOK(r.Method) {
		return condMethods
	}
	if len(rl.paths) > 0 && !rl.pathOK(r.Path) {
		return condPaths
	}
	if len(rl.ips) > 0 && !rl.ipOK(r.ClientIP) {
		return condSourceIPs
	}
	if len(rl.roles) > 0 && (p == nil || !p.HasRole(rl.roles...)) {
		return condRoles
	}
	if len(rl.scopes) > 0 && (p == nil || !p.HasScopes(rl.scopes...)) {
		return condScopes
	}
	if len(rl.amr) > 0 && (p == nil || !anyOf(p.AuthMethods, rl.amr)) {
		return condAuthMethods
	}
	if rl.mfa {
		if f := rl.mfaFailed(p, r.Time); f != 0 {
			return f
		}
	}
	if rl.expr != nil && !ev.eval(rl.expr).holds(rl.deny) {
		return condExpr
	}
	return 0
}

// matchAll checks every condition of rl and returns those that failed,
// with the expression's result.
func (rl *rule) matchAll(ev *evaluator) (cond, exprResult) {
	r := ev.r
	p := r.Principal
	var failed cond
	switch {
	case rl.auth == authRequired && p == nil, rl.auth == authAnonymous && p != nil:
		failed |= condAuth
	}
	if len(rl.methods) > 0 && !rl.methodOK(r.Method) {
		failed |= condMethods
	}
	if len(rl.paths) > 0 && !rl.pathOK(r.Path) {
		failed |= condPaths
	}
	if len(rl.ips) > 0 && !rl.ipOK(r.ClientIP) {
		failed |= condSourceIPs
	}
	if len(rl.roles) > 0 && (p == nil || !p.HasRole(rl.roles...)) {
		failed |= condRoles
	}
	if len(rl.scopes) > 0 && (p == nil || !p.HasScopes(rl.scopes...)) {
		failed |= condScopes
	}
	if len(rl.amr) > 0 && (p == nil || !anyOf(p.AuthMethods, rl.amr)) {
		failed |= condAuthMethods
	}
	if rl.mfa {
		failed |= rl.mfaFailed(p, r.Time)
	}
	var x exprResult
	if rl.expr != nil {
		x = ev.eval(rl.expr)
		if !x.holds(rl.deny) {
			failed |= condExpr
		}
	}
	return failed, x
}

// onlyMFAFails reports whether rl fails on its MFA conditions and on
// nothing else.
func (rl *rule) onlyMFAFails(ev *evaluator) bool {
	if !rl.mfa {
		return false
	}
	failed, _ := rl.matchAll(ev)
	return failed != 0 && failed&^mfaConds == 0
}

func (rl *rule) methodOK(m string) bool {
	for _, want := range rl.methods {
		if upperASCIIEqual(m, want) {
			return true
		}
	}
	return false
}

// upperASCIIEqual reports whether s upper-cased in ASCII is upper. Unlike
// strings.EqualFold, it does not take the long s (ſ) for an s, or the
// Kelvin sign for a K.
func upperASCIIEqual(s, upper string) bool {
	if len(s) != len(upper) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

func (rl *rule) pathOK(path string) bool {
	for _, p := range rl.paths {
		if rl.loose {
			if pathUnderLoose(path, p) {
				return true
			}
		} else if pathUnder(path, p) {
			return true
		}
	}
	return false
}

// pathUnder reports whether path is prefix or lies below it, at a segment
// boundary. prefix has no trailing slash; "" stands for "/".
func pathUnder(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// pathUnderLoose is pathUnder without regard to case, and with '.', ';',
// a space and a tab as further boundaries.
func pathUnderLoose(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return false
	}
	if len(path) == len(prefix) {
		return true
	}
	switch path[len(prefix)] {
	case '/', '.', ';', ' ', '\t':
		return true
	}
	return false
}

func (rl *rule) ipOK(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	for _, p := range rl.ips {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// mfaFailed returns the MFA conditions p fails at now.
func (rl *rule) mfaFailed(p *authn.Principal, now time.Time) cond {
	if p == nil {
		return condMFA
	}
	var failed cond
	if !p.MultiFactor() {
		failed |= condMFA
	}
	if rl.maxAge > 0 && (p.AuthTime.IsZero() || now.IsZero() || now.Sub(p.AuthTime) > rl.maxAge) {
		failed |= condMFAAge
	}
	return failed
}

func anyOf(have, want []string) bool {
	for _, w := range want {
		for _, h := range have {
			if h == w {
				return true
			}
		}
	}
	return false
}

// describe returns one line per condition in failed, saying what the rule
// needs and what the request has.
func (rl *rule) describe(failed cond, x exprResult, r *Request) []string {
	var out []string
	p := r.Principal
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	caller := func(what string, vals []string) string {
		switch {
		case p == nil:
			return "anonymous"
		case len(vals) == 0:
			return "has no " + what
		}
		return fmt.Sprintf("has %v", vals)
	}
	if failed&condAuth != 0 {
		if p == nil {
			add("authenticated: needs a signed-in caller; anonymous")
		} else {
			add("authenticated: needs an anonymous caller; signed in as %q", p.Subject)
		}
	}
	if failed&condMethods != 0 {
		add("methods: needs one of %v; is %s", rl.methods, quoteIfOdd(r.Method))
	}
	if failed&condPaths != 0 {
		add("paths: needs one of %v or below; is %s", displayPaths(rl.paths), quoteIfOdd(r.Path))
	}
	if failed&condSourceIPs != 0 {
		ip := "unknown"
		if a := r.ClientIP.Unmap(); a.IsValid() {
			ip = a.String()
		}
		add("source_ips: needs one of %v; is %s", rl.ips, ip)
	}
	if failed&condRoles != 0 {
		var has []string
		if p != nil {
			has = p.Roles
		}
		add("roles: needs one of %v; %s", rl.roles, caller("roles", has))
	}
	if failed&condScopes != 0 {
		if p == nil {
			add("scopes: needs all of %v; anonymous", rl.scopes)
		} else {
			var lacks []string
			for _, s := range rl.scopes {
				if !p.HasScopes(s) {
					lacks = append(lacks, s)
				}
			}
			add("scopes: needs all of %v; lacks %v", rl.scopes, lacks)
		}
	}
	if failed&condAuthMethods != 0 {
		var has []string
		if p != nil {
			has = p.AuthMethods
		}
		add("auth_methods: needs one of %v; %s", rl.amr, caller("authentication methods", has))
	}
	if failed&condMFA != 0 {
		var has []string
		if p != nil {
			has = p.AuthMethods
		}
		if p == nil {
			add("mfa: needs a second factor; anonymous")
		} else if len(has) == 0 {
			add("mfa: needs a second factor; no authentication methods known")
		} else {
			add("mfa: needs a second factor; signed in with %v", has)
		}
	}
	if failed&condMFAAge != 0 {
		within := formatAge(rl.maxAge)
		switch {
		case p.AuthTime.IsZero():
			add("mfa: sign-in time unknown, needs within %s", within)
		case r.Time.IsZero():
			add("mfa: request time unknown, needs sign-in within %s", within)
		default:
			add("mfa: authenticated %s ago, needs within %s", formatAge(r.Time.Sub(p.AuthTime)), within)
		}
	}
	if failed&condExpr != 0 {
		if x.err != nil {
			add("expr: error: %v", x.err)
		} else {
			add("expr: false")
		}
	}
	return out
}

func displayPaths(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if p == "" {
			p = "/"
		}
		out[i] = p
	}
	return out
}

// quoteIfOdd quotes s when it is empty or has spaces or unprintable bytes,
// so that an explanation shows exactly what was compared.
func quoteIfOdd(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// formatAge writes d to the second, without zero units: 42m, 1h5m, 30s.
func formatAge(d time.Duration) string {
	d = d.Truncate(time.Second)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
