package authz

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// user returns a signed-in principal with a password and TOTP sign-in ten
// minutes before t0.
func user(roles ...string) *authn.Principal {
	return &authn.Principal{
		Subject:     "u-1",
		Name:        "alice",
		Method:      authn.MethodSession,
		Roles:       roles,
		AuthMethods: []string{authn.AMRPassword, authn.AMRTOTP},
		AuthTime:    t0.Add(-10 * time.Minute),
		Issuer:      authn.LocalIssuer,
	}
}

// get returns an anonymous GET request for path from 192.0.2.1 at t0.
func get(path string) *Request {
	return &Request{Method: "GET", Path: path, ClientIP: netip.MustParseAddr("192.0.2.1"), Time: t0}
}

func as(r *Request, p *authn.Principal) *Request {
	r.Principal = p
	return r
}

func mustCompile(t testing.TB, p Policy) *Compiled {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

// The generators below build random policies and requests from a small
// vocabulary, so that rules and requests often meet.

var (
	genRoles   = []string{"admin", "user", "ops", "contractor"}
	genScopes  = []string{"read", "write", "delete"}
	genAMR     = []string{authn.AMRPassword, authn.AMRTOTP, authn.AMRWebAuthn, authn.AMROIDC}
	genMethods = []string{"GET", "POST", "DELETE", "get", "PUT"}
	genPaths   = []string{"/", "/admin", "/admin/users", "/administrator", "/api", "/api/items/1", "/ADMIN", "/admin.json", "/api/"}
	genIPs     = []string{"192.0.2.1", "10.1.2.3", "2001:db8::1", "::ffff:10.0.0.9", "203.0.113.7"}
	genNets    = []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "203.0.113.0/24", "::ffff:10.0.0.0/104"}
	// genExprs are expressions whose value the reference decision knows:
	// see refExpr.
	genExprs = []string{
		`true`,
		`false`,
		`principal.authenticated`,
		`request.method == "GET"`,
		`request.headers["x-tenant"] == "acme"`, // an error without the header
		`"admin" in principal.roles`,
		`principal.claims["tenant"] == request.query["tenant"]`, // an error unless both are there
	}
)

// source hands out choices, from a fuzzer's bytes or from a PRNG.
type source interface {
	n(k int) int // in [0, k)
}

type prngSource struct{ r *rand.Rand }

func (s prngSource) n(k int) int { return s.r.IntN(k) }

type bytesSource struct {
	b []byte
	i int
}

func (s *bytesSource) n(k int) int {
	if s.i >= len(s.b) {
		return 0
	}
	v := int(s.b[s.i])
	s.i++
	return v % k
}

func pick[T any](s source, xs []T) []T {
	var out []T
	for _, x := range xs {
		if s.n(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

func genRule(s source, name string) Rule {
	var r Rule
	if s.n(2) == 0 {
		r.Name = name
	}
	switch s.n(4) {
	case 1:
		r.Authenticated = new(true)
	case 2:
		r.Authenticated = new(false)
	}
	// A rule for anonymous callers cannot have conditions on the caller.
	if r.Authenticated == nil || *r.Authenticated {
		if s.n(3) == 0 {
			r.Roles = pick(s, genRoles)
		}
		if s.n(4) == 0 {
			r.Scopes = pick(s, genScopes)
		}
		if s.n(4) == 0 {
			r.AuthMethods = pick(s, genAMR)
		}
		switch s.n(5) {
		case 0:
			r.MFA = true
		case 1:
			r.MFAMaxAge = time.Duration(1+s.n(30)) * time.Minute
		}
	}
	if s.n(3) == 0 {
		r.Methods = pick(s, genMethods)
	}
	if s.n(3) == 0 {
		r.Paths = pick(s, genPaths)
	}
	if s.n(4) == 0 {
		for _, n := range pick(s, genNets) {
			r.SourceIPs = append(r.SourceIPs, netip.MustParsePrefix(n))
		}
	}
	if s.n(3) == 0 {
		r.Expr = genExprs[s.n(len(genExprs))]
	}
	return r
}

func genPolicy(s source) Policy {
	var p Policy
	for i := range s.n(4) {
		p.Deny = append(p.Deny, genRule(s, "d"+string(rune('a'+i))))
	}
	for i := range s.n(5) {
		p.Allow = append(p.Allow, genRule(s, "a"+string(rune('a'+i))))
	}
	return p
}

func genRequest(s source) *Request {
	r := &Request{
		Method:   genMethods[s.n(len(genMethods))],
		Path:     genPaths[s.n(len(genPaths))] + []string{"", "/x", "x"}[s.n(3)],
		ClientIP: netip.MustParseAddr(genIPs[s.n(len(genIPs))]),
		Time:     t0,
	}
	if s.n(2) == 0 {
		r.Header = http.Header{"X-Tenant": {[]string{"acme", "other"}[s.n(2)]}}
	}
	if s.n(2) == 0 {
		r.Query = map[string][]string{"tenant": {"acme"}}
	}
	if s.n(7) == 0 {
		r.ClientIP = netip.Addr{}
	}
	if s.n(3) != 0 {
		p := &authn.Principal{
			Subject:     "u-" + string(rune('0'+s.n(10))),
			Roles:       pick(s, genRoles),
			Scopes:      pick(s, genScopes),
			AuthMethods: pick(s, genAMR),
			AuthTime:    t0.Add(-time.Duration(s.n(40)) * time.Minute),
		}
		if s.n(4) == 0 {
			p.AuthTime = time.Time{}
		}
		if s.n(2) == 0 {
			p.Claims = map[string]any{"tenant": "acme"}
		}
		r.Principal = p
	}
	return r
}

// refExpr evaluates one of genExprs directly: the value, and whether it
// fails at run time.
func refExpr(src string, r *Request) (val, failed bool) {
	p := r.Principal
	switch src {
	case `true`:
		return true, false
	case `false`:
		return false, false
	case `principal.authenticated`:
		return p != nil, false
	case `request.method == "GET"`:
		return r.Method == "GET", false
	case `request.headers["x-tenant"] == "acme"`:
		v := r.Header.Get("X-Tenant")
		return v == "acme", v == ""
	case `"admin" in principal.roles`:
		return p != nil && slices.Contains(p.Roles, "admin"), false
	case `principal.claims["tenant"] == request.query["tenant"]`:
		if p == nil || p.Claims["tenant"] == nil || r.Query.Get("tenant") == "" {
			return false, true
		}
		return p.Claims["tenant"] == r.Query.Get("tenant"), false
	}
	panic("refExpr: unknown expression " + src)
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// refMatch is a plain reading of Rule's documentation, for comparison
// with the compiled rule: it reports whether rl matches r, and whether it
// fails on its MFA conditions and nothing else.
func refMatch(rl Rule, deny bool, r *Request) (match, onlyMFA bool) {
	p := r.Principal
	var failed []string
	fail := func(c string) { failed = append(failed, c) }
	if rl.Authenticated != nil && *rl.Authenticated != (p != nil) {
		fail("auth")
	}
	if len(rl.Methods) > 0 && !slices.ContainsFunc(rl.Methods, func(m string) bool { return asciiUpper(m) == asciiUpper(r.Method) }) {
		fail("methods")
	}
	if len(rl.Paths) > 0 && !slices.ContainsFunc(rl.Paths, func(pre string) bool {
		pre = strings.TrimRight(pre, "/")
		if pre == "" {
			return true // "/" covers every path
		}
		path := r.Path
		if len(path) < len(pre) || path[:len(pre)] != pre && !(deny && strings.EqualFold(path[:len(pre)], pre)) {
			return false
		}
		rest := path[len(pre):]
		if rest == "" || rest[0] == '/' {
			return true
		}
		return deny && strings.ContainsRune(".; \t", rune(rest[0]))
	}) {
		fail("paths")
	}
	if len(rl.SourceIPs) > 0 && !slices.ContainsFunc(rl.SourceIPs, func(n netip.Prefix) bool {
		a := r.ClientIP.Unmap()
		if n.Addr().Is4In6() {
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		return a.IsValid() && n.Contains(a)
	}) {
		fail("ips")
	}
	if len(rl.Roles) > 0 && (p == nil || !slices.ContainsFunc(rl.Roles, func(x string) bool { return slices.Contains(p.Roles, x) })) {
		fail("roles")
	}
	if len(rl.Scopes) > 0 && (p == nil || slices.ContainsFunc(rl.Scopes, func(x string) bool { return !slices.Contains(p.Scopes, x) })) {
		fail("scopes")
	}
	if len(rl.AuthMethods) > 0 && (p == nil || !slices.ContainsFunc(rl.AuthMethods, func(x string) bool { return slices.Contains(p.AuthMethods, x) })) {
		fail("amr")
	}
	mfaFailed := false
	if rl.MFA || rl.MFAMaxAge > 0 {
		if p == nil || !p.MultiFactor() {
			mfaFailed = true
		}
		if rl.MFAMaxAge > 0 && (p == nil || p.AuthTime.IsZero() || r.Time.Sub(p.AuthTime) > rl.MFAMaxAge) {
			mfaFailed = true
		}
	}
	if rl.Expr != "" {
		val, errored := refExpr(rl.Expr, r)
		if errored {
			val = deny
		}
		if !val {
			fail("expr")
		}
	}
	return len(failed) == 0 && !mfaFailed, len(failed) == 0 && mfaFailed
}

// refDecide decides as Decide is documented to.
func refDecide(p Policy, r *Request) Decision {
	name := func(kind string, i int, rl Rule) string {
		if rl.Name != "" {
			return rl.Name
		}
		return kind + "[" + string(rune('0'+i)) + "]"
	}
	for i, rl := range p.Deny {
		if m, _ := refMatch(rl, true, r); m {
			return Decision{Outcome: Denied, Rule: name("deny", i, rl)}
		}
	}
	stepUp, couldLogIn := false, false
	for i, rl := range p.Allow {
		m, onlyMFA := refMatch(rl, false, r)
		if m {
			return Decision{Outcome: Allowed, Rule: name("allow", i, rl)}
		}
		stepUp = stepUp || onlyMFA
		couldLogIn = couldLogIn || rl.Authenticated == nil || *rl.Authenticated
	}
	switch {
	case r.Principal == nil && couldLogIn:
		return Decision{Outcome: NeedLogin}
	case r.Principal != nil && stepUp:
		return Decision{Outcome: NeedStepUp}
	}
	return Decision{Outcome: Denied}
}
