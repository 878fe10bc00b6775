package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"
)

// JWT signature algorithms Moat accepts.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

func (v *validator) identity(c *Config) {
	names := map[string]bool{}
	for i, pr := range c.OIDC.Providers {
		p := indexPath("oidc.providers", i)
		if !isShortName(pr.Name, 32) {
			v.add(p+".name", "%q: want 1 to 32 lower-case letters, digits or -, starting with a letter or digit", clip(pr.Name, 40))
		} else if names[pr.Name] {
			v.add(p+".name", "duplicate provider name %q", pr.Name)
		}
		names[pr.Name] = true
		v.check(p+".issuer", checkIssuerURL(pr.Issuer))
		if pr.ClientID == "" {
			v.add(p+".client_id", "required: the client id registered at the provider")
		}
		switch {
		case pr.ClientSecret == "":
			v.add(p+".client_secret", "required: the client secret, as env:NAME or file:PATH")
		case !isSecretRef(string(pr.ClientSecret)):
			v.add(p+".client_secret", "must be a secret reference (env:NAME or file:PATH), not the secret itself")
		}
		v.roleMap(p, pr.RoleMap, pr.RolesClaim)
		for j, r := range pr.DefaultRoles {
			v.check(indexPath(p+".default_roles", j), checkRole(r))
		}
		if len(pr.AllowedGroups) > 0 && pr.RolesClaim == "" {
			v.add(p+".allowed_groups", "needs roles_claim: the claim the groups are read from")
		}
		for j, d := range pr.AllowedEmailDomains {
			if err := checkDNSName(d); err != nil {
				v.add(indexPath(p+".allowed_email_domains", j), "%q: %v", clip(d, 60), err)
			}
		}
	}
	if len(c.OIDC.Providers) > 0 && c.Accounts.PublicURL == "" {
		v.add("accounts.public_url", "required with oidc providers: the redirect URI is built from it")
	}

	if c.JWT.MaxTokenBytes < 512 || c.JWT.MaxTokenBytes > 64<<10 {
		v.add("jwt.max_token_bytes", "must be between 512B and 64KiB")
	}
	issuers := map[string]bool{}
	for i, is := range c.JWT.Issuers {
		p := indexPath("jwt.issuers", i)
		if is.Issuer == "" {
			v.add(p+".issuer", "required: the exact iss of the tokens")
		} else if issuers[is.Issuer] {
			v.add(p+".issuer", "issuer %q is listed twice", clip(is.Issuer, 80))
		}
		issuers[is.Issuer] = true
		if is.JWKSURL == "" {
			v.check(p+".issuer", checkIssuerURL(is.Issuer))
		} else {
			v.check(p+".jwks_url", checkIssuerURL(is.JWKSURL))
		}
		if len(is.Audiences) == 0 {
			v.add(p+".audiences", "required: tokens meant for another audience must not be accepted here")
		}
		for j, a := range is.Algorithms {
			if !slices.Contains(jwtAlgorithms, a) {
				v.add(indexPath(p+".algorithms", j), "%q is not accepted: want one of %v (none and HMAC algorithms never are)", clip(a, 20), jwtAlgorithms)
			}
		}
		if is.ClockSkew < 0 || is.ClockSkew.D() > 5*time.Minute {
			v.add(p+".clock_skew", "must be between 0 and 5m")
		}
		v.roleMap(p, is.RoleMap, is.RolesClaim)
	}

	if len(c.JWT.Issuers) == 0 {
		for i, r := range c.Routes {
			if j := slices.Index(r.Accept, MethodJWT); j >= 0 && r.Policy == PolicyAuthenticated {
				v.add(indexPath(indexPath("routes", i)+".accept", j), "jwt needs at least one issuer in jwt.issuers")
			}
		}
	}

	if c.Assertion.Lifetime <= 0 || c.Assertion.Lifetime.D() > 10*time.Minute {
		v.add("assertion.lifetime", "must be greater than 0 and at most 10m")
	}
	if c.Assertion.Rotation.D() < time.Hour {
		v.add("assertion.rotation", "must be at least 1h")
	}
}

func (v *validator) roleMap(p string, m []RoleMapping, claim string) {
	if len(m) > 0 && claim == "" {
		v.add(p+".role_map", "needs roles_claim: the claim the values are read from")
	}
	for j, rm := range m {
		mp := indexPath(p+".role_map", j)
		if rm.From == "" {
			v.add(mp+".from", "required: the claim value to map")
		}
		for k, r := range rm.Roles {
			v.check(indexPath(mp+".roles", k), checkRole(r))
		}
	}
}

func (v *validator) routeMethods(p string, r Route) {
	// A public route with rules may look at callers who bring credentials.
	withRules := r.Policy == PolicyPublic && len(r.Allow)+len(r.Deny) > 0
	if r.Policy != PolicyAuthenticated && !withRules {
		if len(r.Accept) > 0 {
			v.add(p+".accept", "accept applies only to routes whose policy is authenticated, or public routes with allow rules")
		}
		if r.ClientCerts != nil {
			v.add(p+".client_certs", "client_certs apply only to routes that accept mtls")
		}
		return
	}
	for i, m := range r.Accept {
		if err := oneOf("method", m, MethodSession, MethodJWT, MethodAPIKey, MethodMTLS); err != nil {
			v.add(indexPath(p+".accept", i), "%v", err)
		}
	}
	mtls := slices.Contains(r.Accept, MethodMTLS)
	switch {
	case mtls && (r.ClientCerts == nil || len(r.ClientCerts.CAs) == 0):
		v.add(p+".client_certs", "required with the mtls method: the CAs whose client certificates are accepted")
	case !mtls && r.ClientCerts != nil:
		v.add(p+".client_certs", "set, but accept does not list mtls")
	}
	if cc := r.ClientCerts; cc != nil {
		for i, ca := range cc.CAs {
			if err := checkFile(ca); err != nil {
				v.add(indexPath(p+".client_certs.cas", i), "CA file %q: %v", ca, err)
			}
		}
		for i, role := range cc.Roles {
			v.check(indexPath(p+".client_certs.roles", i), checkRole(role))
		}
	}
}

// checkIssuerURL accepts https URLs, and http ones only on loopback.
func checkIssuerURL(s string) error {
	if err := checkURL(s, "https", "http"); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.Scheme == "http" && !isLoopback(net.JoinHostPort(u.Hostname(), "80")) {
		return fmt.Errorf("%q: http is accepted only for a loopback address; use https", clip(s, 80))
	}
	return nil
}

func isShortName(s string, max int) bool {
	if s == "" || len(s) > max || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
