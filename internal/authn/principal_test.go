package authn

import "testing"

func TestPrincipalChecks(t *testing.T) {
	p := &Principal{Roles: []string{"ops", "user"}, Scopes: []string{"read", "write"}, AuthMethods: []string{AMRPassword}}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"no roles asked", p.HasRole(), true},
		{"one of the roles", p.HasRole("admin", "ops"), true},
		{"none of the roles", p.HasRole("admin"), false},
		{"all scopes", p.HasScopes("read", "write"), true},
		{"a missing scope", p.HasScopes("read", "admin"), false},
		{"no scopes asked", p.HasScopes(), true},
		{"password alone is one factor", p.MultiFactor(), false},
		{"password and TOTP", (&Principal{AuthMethods: []string{AMRPassword, AMRTOTP}}).MultiFactor(), true},
		{"passkey alone", (&Principal{AuthMethods: []string{AMRWebAuthn}}).MultiFactor(), true},
		{"provider says mfa", (&Principal{AuthMethods: []string{AMROIDC, AMRMFA}}).MultiFactor(), true},
		{"provider alone", (&Principal{AuthMethods: []string{AMROIDC}}).MultiFactor(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}
