// Package authn defines the Principal: who a request is made by, as an
// authenticator established it. Every authentication method (a login
// session, a JWT bearer token, an API key, a client certificate) yields
// the same Principal, and policies, rate limits, security events and the
// identity assertion sent to upstreams all read it.
package authn

import (
	"slices"
	"time"
)

// How a request authenticated: Principal.Method, and the names routes
// list in their accepted methods.
const (
	MethodSession = "session" // a login session cookie (local accounts or OIDC login)
	MethodJWT     = "jwt"     // a JWT bearer token from a configured issuer
	MethodAPIKey  = "apikey"  // a Moat API key
	MethodMTLS    = "mtls"    // a client certificate
)

// Methods lists every Method, in the order above.
var Methods = []string{MethodSession, MethodJWT, MethodAPIKey, MethodMTLS}

// Authentication methods a user proved themselves with, as
// Principal.AuthMethods lists them (the "amr" of the identity assertion).
const (
	AMRPassword = "pwd"
	AMRTOTP     = "otp"
	AMRRecovery = "recovery"
	AMRWebAuthn = "webauthn"
	AMROIDC     = "oidc" // signed in at an external OpenID provider
	AMRMFA      = "mfa"  // the external provider says it used several factors
)

// LocalIssuer is the Issuer of principals Moat authenticated itself.
const LocalIssuer = "moat"

// Principal is an authenticated caller. It is immutable once attached to
// a request: build a new one rather than change it.
type Principal struct {
	Subject     string         // stable identifier: a user id, an API key's owner, a token's sub, a certificate's subject
	Name        string         // human-readable name: the user name, key name, certificate common name
	Method      string         // how this request authenticated: MethodSession, MethodJWT, ...
	Roles       []string       // roles granted
	Scopes      []string       // scopes granted (tokens and API keys)
	AuthMethods []string       // how the user proved who they are: AMRPassword, AMRTOTP, ...
	AuthTime    time.Time      // when they last did; zero when not known
	Issuer      string         // LocalIssuer, a token issuer or an OIDC provider's issuer
	SessionID   string         // a non-secret id of the session, for logs and events
	KeyID       string         // the API key id
	Claims      map[string]any // selected token claims, as configured per issuer
}

// HasRole reports whether p has any of roles; with no roles, true.
func (p *Principal) HasRole(roles ...string) bool {
	if len(roles) == 0 {
		return true
	}
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// HasScopes reports whether p has every one of scopes.
func (p *Principal) HasScopes(scopes ...string) bool {
	for _, s := range scopes {
		if !slices.Contains(p.Scopes, s) {
			return false
		}
	}
	return true
}

// MultiFactor reports whether the sign-in used a second factor, or a
// passkey (which verified its user and so stands for two), or an external
// provider that says it used several.
func (p *Principal) MultiFactor() bool {
	return slices.ContainsFunc(p.AuthMethods, func(m string) bool {
		return m == AMRTOTP || m == AMRRecovery || m == AMRWebAuthn || m == AMRMFA
	})
}
