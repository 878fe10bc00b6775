// Package admin is Moat's administration API: a small JSON API, served
// under Prefix, through which people with one of Moat's own roles (viewer,
// operator, admin) look at users, sessions and API keys and act on them.
//
// Each role grants an explicit list of permissions (see Permissions), and
// each endpoint needs exactly one permission. The permissions that only
// the admin role grants (users:manage, apikeys:manage) also need a second
// factor confirmed recently: a session whose sign-in or step-up used one
// within the last MFAMaxAge. An API key is one factor and never qualifies.
//
// Every action, and every refusal, is a security event.
package admin

import (
	"slices"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// Prefix is the path the administration API is served under.
const Prefix = "/.moat/admin/"

// Permission is one thing a caller of the administration API may do.
type Permission string

// Permissions, one per kind of endpoint.
const (
	UsersRead      Permission = "users:read"      // list users, their roles, status and factors
	SessionsRead   Permission = "sessions:read"   // list a user's sessions
	SessionsRevoke Permission = "sessions:revoke" // end every session of a user
	UsersDisable   Permission = "users:disable"   // disable and enable a user
	UsersManage    Permission = "users:manage"    // reset a user's second factors or password; needs recent MFA
	APIKeysRead    Permission = "apikeys:read"    // list API keys (never a secret)
	APIKeysManage  Permission = "apikeys:manage"  // revoke an API key; needs recent MFA
)

// NeedsMFA reports whether p also needs a second factor confirmed within
// the MFA maximum age: true for the permissions only the admin role grants.
func (p Permission) NeedsMFA() bool {
	return p == UsersManage || p == APIKeysManage
}

// Moat's built-in administration roles, as they appear in a user's roles.
const (
	RoleViewer   = "moat:viewer"
	RoleOperator = "moat:operator"
	RoleAdmin    = "moat:admin"
)

// DefaultMFAMaxAge is how recently a second factor must have been used for
// a permission that needs one, when nothing else is configured.
const DefaultMFAMaxAge = 15 * time.Minute

// clockSkew is how far in the future an authentication time may lie (the
// clocks of several Moat instances differ a little) and still count.
const clockSkew = time.Minute

// Why Allowed refuses, as its reason and in the "reason" detail of an
// admin.denied event.
const (
	ReasonUnauthenticated = "unauthenticated" // no principal
	ReasonMethod          = "method"          // authenticated other than by a session or an API key
	ReasonPermission      = "permission"      // no role of the caller grants the permission
	ReasonMFAMissing      = "mfa_missing"     // the permission needs a second factor the caller did not use
	ReasonMFAStale        = "mfa_stale"       // the second factor was used longer ago than the maximum age
)

// allPermissions lists every permission in the order Permissions returns
// them.
func allPermissions() []Permission {
	return []Permission{UsersRead, SessionsRead, APIKeysRead, SessionsRevoke, UsersDisable, UsersManage, APIKeysManage}
}

// rolePermissions returns the permissions one role grants; nil for a role
// that is not an administration role.
//
//	viewer:   users:read, sessions:read, apikeys:read
//	operator: viewer's + sessions:revoke, users:disable
//	admin:    operator's + users:manage, apikeys:manage
func rolePermissions(role string) []Permission {
	viewer := []Permission{UsersRead, SessionsRead, APIKeysRead}
	operator := slices.Concat(viewer, []Permission{SessionsRevoke, UsersDisable})
	switch role {
	case RoleViewer:
		return viewer
	case RoleOperator:
		return operator
	case RoleAdmin:
		return slices.Concat(operator, []Permission{UsersManage, APIKeysManage})
	}
	return nil
}

// Permissions returns the permissions that roles grant together, each once,
// in a fixed order (reads first). Roles other than viewer, operator and
// admin grant nothing. It returns a non-nil slice.
func Permissions(roles []string) []Permission {
	var granted []Permission
	for _, r := range roles {
		granted = append(granted, rolePermissions(r)...)
	}
	out := []Permission{}
	for _, p := range allPermissions() {
		if slices.Contains(granted, p) {
			out = append(out, p)
		}
	}
	return out
}

// Allowed reports whether p may use perm at time now, and if not, why (one
// of the Reason constants). It fails closed:
//
//   - a nil principal is refused (ReasonUnauthenticated);
//   - only a login session or an API key counts (ReasonMethod): Moat's own
//     roles come from its own accounts, never from a bearer token's or a
//     certificate's claims;
//   - the caller's roles must grant perm (ReasonPermission);
//   - a permission that NeedsMFA also needs p.MultiFactor() from a session
//     (an API key never qualifies) (ReasonMFAMissing) and p.AuthTime no
//     older than mfaMaxAge (ReasonMFAStale); a zero AuthTime, or one more
//     than a minute in the future, does not count.
//
// A mfaMaxAge of zero or less means DefaultMFAMaxAge. Allowed is a pure
// function and safe for concurrent use.
func Allowed(p *authn.Principal, perm Permission, now time.Time, mfaMaxAge time.Duration) (ok bool, reason string) {
	if p == nil {
		return false, ReasonUnauthenticated
	}
	if p.Method != authn.MethodSession && p.Method != authn.MethodAPIKey {
		return false, ReasonMethod
	}
	if !slices.Contains(Permissions(p.Roles), perm) {
		return false, ReasonPermission
	}
	if !perm.NeedsMFA() {
		return true, ""
	}
	if p.Method != authn.MethodSession || !p.MultiFactor() {
		return false, ReasonMFAMissing
	}
	if !recent(p.AuthTime, now, mfaMaxAge) {
		return false, ReasonMFAStale
	}
	return true, ""
}

// recent reports whether t lies within maxAge before now (a little after
// now is tolerated for clock skew).
func recent(t, now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 {
		maxAge = DefaultMFAMaxAge
	}
	if t.IsZero() {
		return false
	}
	age := now.Sub(t)
	return age <= maxAge && age >= -clockSkew
}
