package admin

import (
	"slices"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

func TestPermissions(t *testing.T) {
	viewer := []Permission{UsersRead, SessionsRead, APIKeysRead}
	operator := []Permission{UsersRead, SessionsRead, APIKeysRead, SessionsRevoke, UsersDisable}
	admin := []Permission{UsersRead, SessionsRead, APIKeysRead, SessionsRevoke, UsersDisable, UsersManage, APIKeysManage}
	tests := []struct {
		name  string
		roles []string
		want  []Permission
	}{
		{"viewer", []string{RoleViewer}, viewer},
		{"operator", []string{RoleOperator}, operator},
		{"admin", []string{RoleAdmin}, admin},
		{"no roles", nil, []Permission{}},
		{"a backend role grants nothing", []string{"user", "editor"}, []Permission{}},
		{"role names are exact", []string{"Admin", "admin ", "viewers"}, []Permission{}},
		{"several roles: the union, each once", []string{RoleViewer, RoleOperator, RoleViewer}, operator},
		{"admin among others", []string{"user", RoleAdmin}, admin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Permissions(tt.roles)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("Permissions(%q) = %q, want %q", tt.roles, got, tt.want)
			}
		})
	}
}

func TestPermissionStrings(t *testing.T) {
	// The wire names are part of the documented API.
	want := map[Permission]string{
		UsersRead: "users:read", SessionsRead: "sessions:read", SessionsRevoke: "sessions:revoke",
		UsersDisable: "users:disable", UsersManage: "users:manage", APIKeysRead: "apikeys:read", APIKeysManage: "apikeys:manage",
	}
	for p, s := range want {
		if string(p) != s {
			t.Errorf("%q, want %q", p, s)
		}
		if got, wantMFA := p.NeedsMFA(), p == UsersManage || p == APIKeysManage; got != wantMFA {
			t.Errorf("%s.NeedsMFA() = %v, want %v", p, got, wantMFA)
		}
	}
	if n := len(Permissions([]string{RoleAdmin})); n != len(want) {
		t.Errorf("admin has %d permissions, want every one of the %d", n, len(want))
	}
}

func TestAllowed(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	session := func(roles []string, amr []string, authAgo time.Duration) *authn.Principal {
		return &authn.Principal{Subject: "u1", Name: "ada", Method: authn.MethodSession, Roles: roles,
			AuthMethods: amr, AuthTime: now.Add(-authAgo)}
	}
	mfa := []string{authn.AMRPassword, authn.AMRTOTP}
	admin := []string{RoleAdmin}
	tests := []struct {
		name       string
		p          *authn.Principal
		perm       Permission
		maxAge     time.Duration
		wantOK     bool
		wantReason string
	}{
		{"nil principal", nil, UsersRead, 0, false, ReasonUnauthenticated},
		{"viewer reads users", session([]string{RoleViewer}, []string{authn.AMRPassword}, time.Hour), UsersRead, 0, true, ""},
		{"viewer cannot revoke", session([]string{RoleViewer}, mfa, 0), SessionsRevoke, 0, false, ReasonPermission},
		{"operator revokes without mfa", session([]string{RoleOperator}, []string{authn.AMRPassword}, 10*time.Hour), SessionsRevoke, 0, true, ""},
		{"operator cannot manage even with mfa", session([]string{RoleOperator}, mfa, 0), UsersManage, 0, false, ReasonPermission},
		{"unknown permission", session(admin, mfa, 0), Permission("users:delete"), 0, false, ReasonPermission},
		{"admin disables without mfa", session(admin, []string{authn.AMRPassword}, time.Hour), UsersDisable, 0, true, ""},
		{"admin manages with recent totp", session(admin, mfa, 5*time.Minute), UsersManage, 0, true, ""},
		{"admin manages keys with a recent passkey", session(admin, []string{authn.AMRWebAuthn}, time.Minute), APIKeysManage, 0, true, ""},
		{"admin with provider-reported mfa", session(admin, []string{authn.AMROIDC, authn.AMRMFA}, time.Minute), UsersManage, 0, true, ""},
		{"admin at exactly the maximum age", session(admin, mfa, DefaultMFAMaxAge), UsersManage, 0, true, ""},
		{"admin without a second factor", session(admin, []string{authn.AMRPassword}, 0), UsersManage, 0, false, ReasonMFAMissing},
		{"admin with mfa too old", session(admin, mfa, 16*time.Minute), UsersManage, 0, false, ReasonMFAStale},
		{"admin with mfa too old for a shorter maximum", session(admin, mfa, 6*time.Minute), APIKeysManage, 5 * time.Minute, false, ReasonMFAStale},
		{"admin with a longer maximum", session(admin, mfa, 50*time.Minute), APIKeysManage, time.Hour, true, ""},
		{"unknown auth time", &authn.Principal{Method: authn.MethodSession, Roles: admin, AuthMethods: mfa}, UsersManage, 0, false, ReasonMFAStale},
		{"auth time far in the future", session(admin, mfa, -time.Hour), UsersManage, 0, false, ReasonMFAStale},
		{"auth time a little in the future", session(admin, mfa, -10*time.Second), UsersManage, 0, true, ""},
		{"admin api key reads", &authn.Principal{Method: authn.MethodAPIKey, Roles: admin, KeyID: "k1"}, APIKeysRead, 0, true, ""},
		{"admin api key disables", &authn.Principal{Method: authn.MethodAPIKey, Roles: admin, KeyID: "k1"}, UsersDisable, 0, true, ""},
		{"an api key never counts as mfa", &authn.Principal{Method: authn.MethodAPIKey, Roles: admin, KeyID: "k1",
			AuthMethods: mfa, AuthTime: now}, APIKeysManage, 0, false, ReasonMFAMissing},
		{"a bearer token's admin role does not count", &authn.Principal{Method: authn.MethodJWT, Roles: admin,
			AuthMethods: []string{authn.AMRMFA}, AuthTime: now}, UsersRead, 0, false, ReasonMethod},
		{"a client certificate's admin role does not count", &authn.Principal{Method: authn.MethodMTLS, Roles: admin}, UsersRead, 0, false, ReasonMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Allowed(tt.p, tt.perm, now, tt.maxAge)
			if ok != tt.wantOK || reason != tt.wantReason {
				t.Errorf("Allowed = %v, %q; want %v, %q", ok, reason, tt.wantOK, tt.wantReason)
			}
		})
	}
}
