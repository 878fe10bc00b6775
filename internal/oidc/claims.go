package oidc

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/moatgw/moat/internal/accounts"
)

// Limits on what a provider's claims may make Moat keep.
const (
	maxClaimValues   = 256 // values read from the roles claim or amr
	maxClaimValueLen = 256 // longer values are skipped
	maxEmailLen      = 254
	maxDisplayName   = 128 // runes
)

// Reasons a verified user is refused, as login.failed events name them.
const (
	reasonEmailDomain = "email_domain"
	reasonGroup       = "group"
)

// claims are an ID token's (or userinfo response's) claims as JSON decodes them.
type claims map[string]any

// lookup finds a claim by its name, or else by a dotted path into nested
// objects (realm_access.roles).
func (c claims) lookup(path string) (any, bool) {
	if v, ok := c[path]; ok {
		return v, true
	}
	if !strings.Contains(path, ".") {
		return nil, false
	}
	var cur any = map[string]any(c)
	for seg := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (c claims) str(name string) string {
	s, _ := c[name].(string)
	return s
}

// wanted are the top-level claims Moat reads for p's users, besides sub
// and amr, which must come from the ID token.
func (p *provider) wanted() []string {
	w := []string{p.cfg.UsernameClaim, "email", "email_verified", "name"}
	if rc := p.cfg.RolesClaim; rc != "" {
		w = append(w, rc)
		if first, _, ok := strings.Cut(rc, "."); ok {
			w = append(w, first)
		}
	}
	return w
}

// missing reports whether the ID token's claims lack one Moat reads.
func (p *provider) missing(c claims) bool {
	for _, k := range []string{p.cfg.UsernameClaim, "email", "email_verified", "name"} {
		if _, ok := c[k]; !ok {
			return true
		}
	}
	if rc := p.cfg.RolesClaim; rc != "" {
		if _, ok := c.lookup(rc); !ok {
			return true
		}
	}
	return false
}

// fill copies from the userinfo response the claims Moat reads that the
// ID token lacks. The ID token's claims win; sub and amr are never taken
// from userinfo.
func (p *provider) fill(c, userinfo claims) {
	for _, k := range p.wanted() {
		if _, ok := c[k]; ok {
			continue
		}
		if v, ok := userinfo[k]; ok {
			c[k] = v
		}
	}
}

// values returns the strings in a claim's value: a list's string members,
// or a single string. It keeps at most maxClaimValues, skipping values
// longer than maxClaimValueLen.
func values(v any) []string {
	var out []string
	add := func(s string) {
		if s != "" && len(s) <= maxClaimValueLen && len(out) < maxClaimValues {
			out = append(out, s)
		}
	}
	switch v := v.(type) {
	case string:
		add(v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				add(s)
			}
		}
	}
	return out
}

// boolClaim reads a boolean claim; some providers send "true" as a string.
func boolClaim(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// multiFactor reads the amr claim (RFC 8176): the provider used several
// factors when it says "mfa", or names at least two distinct methods
// (["pwd", "otp"]). Kept simple on purpose: it does not judge whether two
// methods are really different factors (["pwd", "kba"] counts), so a
// provider that reports methods loosely gets its word taken.
func multiFactor(amr []string) bool {
	if slices.Contains(amr, "mfa") {
		return true
	}
	distinct := slices.Clone(amr)
	slices.Sort(distinct)
	return len(slices.Compact(distinct)) >= 2
}

// identity maps a verified user's claims to what accounts needs, applying
// p's allow lists first. refusal is "" when the user is admitted, else the
// reason (reasonEmailDomain, reasonGroup).
func (p *provider) identity(issuer, subject string, c claims) (id accounts.ExternalIdentity, refusal string) {
	email := c.str("email")
	if len(email) > maxEmailLen {
		email = ""
	}
	if len(p.cfg.AllowedEmailDomains) > 0 && !p.emailAllowed(email, boolClaim(c["email_verified"])) {
		return id, reasonEmailDomain
	}
	var groups []string
	if p.cfg.RolesClaim != "" {
		if v, ok := c.lookup(p.cfg.RolesClaim); ok {
			groups = values(v)
		}
	}
	if len(p.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(p.cfg.AllowedGroups, g) }) {
		return id, reasonGroup
	}
	username := c.str(p.cfg.UsernameClaim)
	if username == "" {
		username = email
	}
	return accounts.ExternalIdentity{
		Provider:    p.cfg.Name,
		Issuer:      issuer,
		Subject:     subject,
		Username:    username,
		Email:       email,
		DisplayName: clipRunes(c.str("name"), maxDisplayName),
		Roles:       p.roles(groups),
		MFA:         multiFactor(values(c["amr"])),
	}, ""
}

// emailAllowed: the e-mail is verified and its domain is one of the
// allowed ones, compared without case.
func (p *provider) emailAllowed(email string, verified bool) bool {
	at := strings.LastIndexByte(email, '@')
	if !verified || at < 1 || at == len(email)-1 {
		return false
	}
	domain := email[at+1:]
	return slices.ContainsFunc(p.cfg.AllowedEmailDomains, func(d string) bool { return strings.EqualFold(d, domain) })
}

// roles are DefaultRoles and the roles the groups map to, sorted and
// without repeats (accounts compares the list to the stored one).
func (p *provider) roles(groups []string) []string {
	roles := slices.Clone(p.cfg.DefaultRoles)
	for _, g := range groups {
		if p.cfg.RoleMap == nil {
			if validRole(g) {
				roles = append(roles, g)
			}
			continue
		}
		roles = append(roles, p.cfg.RoleMap[g]...)
	}
	slices.Sort(roles)
	return slices.Compact(roles)
}

func clipRunes(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
