package oidc

import (
	"slices"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/accounts"
)

func TestNewChecksOptions(t *testing.T) {
	good := func() Options {
		return Options{
			Providers: []Provider{{Name: "corp", Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s"}},
			PublicURL: "https://moat.example.com",
			Accounts:  &accounts.Service{},
			StateKey:  testKey(1),
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good options: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Options)
		want   string // in the error
	}{
		{"no providers", func(o *Options) { o.Providers = nil }, "no providers"},
		{"no accounts", func(o *Options) { o.Accounts = nil }, "accounts are required"},
		{"a short state key", func(o *Options) { o.StateKey = o.StateKey[:16] }, "32 bytes"},
		{"a public URL over http", func(o *Options) { o.PublicURL = "http://moat.example.com" }, "public URL"},
		{"a public URL with a path", func(o *Options) { o.PublicURL = "https://moat.example.com/app" }, "public URL"},
		{"a name with capitals", func(o *Options) { o.Providers[0].Name = "Corp" }, "the name must be"},
		{"a name with a slash", func(o *Options) { o.Providers[0].Name = "a/b" }, "the name must be"},
		{"a name too long", func(o *Options) { o.Providers[0].Name = strings.Repeat("a", 33) }, "the name must be"},
		{"a duplicate name", func(o *Options) { o.Providers = append(o.Providers, o.Providers[0]) }, "used twice"},
		{"an http issuer", func(o *Options) { o.Providers[0].Issuer = "http://id.example.com" }, "https is required"},
		{"an issuer with a query", func(o *Options) { o.Providers[0].Issuer = "https://id.example.com/?x=1" }, "without query"},
		{"no client id", func(o *Options) { o.Providers[0].ClientID = "" }, "client id"},
		{"no client secret", func(o *Options) { o.Providers[0].ClientSecret = "" }, "client secret"},
		{"allowed groups without a roles claim", func(o *Options) { o.Providers[0].AllowedGroups = []string{"g"} }, "roles claim"},
		{"a role map without a roles claim", func(o *Options) { o.Providers[0].RoleMap = map[string][]string{"g": {"r"}} }, "roles claim"},
		{"a bad default role", func(o *Options) { o.Providers[0].DefaultRoles = []string{"Admin"} }, "not a valid role"},
		{"a bad mapped role", func(o *Options) {
			o.Providers[0].RolesClaim = "groups"
			o.Providers[0].RoleMap = map[string][]string{"g": {"a b"}}
		}, "not a valid role"},
		{"an e-mail as a domain", func(o *Options) { o.Providers[0].AllowedEmailDomains = []string{"a@b.com"} }, "not a domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v; want an error about %q", err, tt.want)
			}
		})
	}
	t.Run("an http issuer on loopback", func(t *testing.T) {
		o := good()
		o.Providers[0].Issuer = "http://127.0.0.1:8080/realms/x"
		if _, err := New(o); err != nil {
			t.Error(err)
		}
	})
	t.Run("every problem at once", func(t *testing.T) {
		o := good()
		o.Providers[0].ClientID, o.StateKey = "", nil
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), "client id") || !strings.Contains(err.Error(), "state key") {
			t.Errorf("New: %v", err)
		}
	})
}

func TestProvidersAndDefaults(t *testing.T) {
	rp, err := New(Options{
		Providers: []Provider{
			{Name: "corp", DisplayName: "Corp SSO", Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s", Scopes: []string{"email"}},
			{Name: "google", Issuer: "https://accounts.google.com", ClientID: "c", ClientSecret: "s"},
		},
		PublicURL: "https://moat.example.com/", Accounts: &accounts.Service{}, StateKey: testKey(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []ProviderLink{
		{Name: "corp", DisplayName: "Corp SSO", StartURL: "/.moat/oidc/corp/start"},
		{Name: "google", DisplayName: "google", StartURL: "/.moat/oidc/google/start"},
	}
	if got := rp.Providers(); !slices.Equal(got, want) {
		t.Errorf("Providers() = %+v, want %+v", got, want)
	}
	if rp.redirect != "https://moat.example.com/.moat/oidc/callback" {
		t.Errorf("redirect URI %q", rp.redirect)
	}
	if got := rp.byName["corp"].cfg.Scopes; !slices.Equal(got, []string{"openid", "email"}) {
		t.Errorf("scopes %q: openid must be added", got)
	}
	if got := rp.byName["google"].cfg.Scopes; !slices.Equal(got, []string{"openid", "email", "profile"}) {
		t.Errorf("default scopes %q", got)
	}
}
