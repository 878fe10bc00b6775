// Package authn defines the Principal: who a request is made by, as an
// authenticator established it. Policies, rate limits, security events and
// the identity passed to upstreams all read it.
package authn

import (
	"slices"
	"time"
)

// Authentication methods, as a Principal's AuthMethods list them.
const (
	MethodPassword = "pwd"
	MethodTOTP     = "otp"
	MethodRecovery = "recovery"
	MethodWebAuthn = "webauthn"
)

// Principal is an authenticated caller. It is immutable once attached to
// a request.
type Principal struct {
	Subject     string    // stable identifier: the user id
	Name        string    // user name
	Roles       []string  // roles granted
	Source      string    // what authenticated the request: "session"
	AuthMethods []string  // how the user proved who they are: pwd, otp, recovery, webauthn
	AuthTime    time.Time // when they last did
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

// MultiFactor reports whether the login used a second factor, or a passkey,
// which verified its user and so stands for two.
func (p *Principal) MultiFactor() bool {
	return slices.ContainsFunc(p.AuthMethods, func(m string) bool {
		return m == MethodTOTP || m == MethodRecovery || m == MethodWebAuthn
	})
}
