package oidc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func decodeClaims(t *testing.T, s string) claims {
	t.Helper()
	var c claims
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookupAndValues(t *testing.T) {
	c := decodeClaims(t, `{
		"groups": ["a", "b", 3, "", null],
		"realm_access": {"roles": ["r1", "r2"]},
		"https://example.com/roles": ["x"],
		"single": "only",
		"deep": {"a": {"b": "c"}},
		"notobj": "s"
	}`)
	tests := []struct {
		path string
		want []string
	}{
		{"groups", []string{"a", "b"}},
		{"realm_access.roles", []string{"r1", "r2"}},
		{"https://example.com/roles", []string{"x"}},
		{"single", []string{"only"}},
		{"deep.a.b", []string{"c"}},
		{"deep.a", nil},
		{"notobj.x", nil},
		{"missing", nil},
		{"realm_access.missing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			v, _ := c.lookup(tt.path)
			if got := values(v); !slices.Equal(got, tt.want) {
				t.Errorf("values(%s) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		many := make([]any, 0, 1000)
		for range 1000 {
			many = append(many, "g")
		}
		many = append(many, strings.Repeat("x", maxClaimValueLen+1))
		if n := len(values(many)); n != maxClaimValues {
			t.Errorf("%d values kept, want %d", n, maxClaimValues)
		}
		if got := values([]any{strings.Repeat("x", maxClaimValueLen+1)}); len(got) != 0 {
			t.Error("an over-long value was kept")
		}
	})
}

func TestMultiFactor(t *testing.T) {
	tests := []struct {
		amr  []string
		want bool
	}{
		{nil, false},
		{[]string{"pwd"}, false},
		{[]string{"pwd", "pwd"}, false},
		{[]string{"mfa"}, true},
		{[]string{"pwd", "otp"}, true},
		{[]string{"hwk", "pin"}, true},
		{[]string{"fpt", "face"}, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.amr, "+"), func(t *testing.T) {
			if got := multiFactor(tt.amr); got != tt.want {
				t.Errorf("multiFactor(%q) = %v", tt.amr, got)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	base := Provider{Name: "corp", Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s",
		RolesClaim: "groups", DefaultRoles: []string{"user"}}
	type want struct {
		refusal  string
		username string
		roles    []string
		mfa      bool
	}
	tests := []struct {
		name   string
		cfg    func(*Provider)
		claims string
		want   want
	}{
		{"values are the roles without a map", nil,
			`{"preferred_username":"alice","groups":["ops","Not A Role","ops"]}`,
			want{username: "alice", roles: []string{"ops", "user"}}},
		{"mapped roles, unmapped values dropped", func(p *Provider) {
			p.RoleMap = map[string][]string{"admins": {"admin", "ops"}}
		}, `{"preferred_username":"alice","groups":["admins","others"]}`,
			want{username: "alice", roles: []string{"admin", "ops", "user"}}},
		{"the e-mail names the user without preferred_username", nil,
			`{"email":"bob@example.com"}`, want{username: "bob@example.com", roles: []string{"user"}}},
		{"a configured username claim", func(p *Provider) { p.UsernameClaim = "upn" },
			`{"upn":"carol","preferred_username":"ignored"}`, want{username: "carol", roles: []string{"user"}}},
		{"amr with two methods is MFA", nil, `{"amr":["pwd","otp"]}`, want{roles: []string{"user"}, mfa: true}},
		{"an allowed, verified domain", func(p *Provider) { p.AllowedEmailDomains = []string{"Example.com"} },
			`{"email":"dave@EXAMPLE.COM","email_verified":true}`, want{username: "dave@EXAMPLE.COM", roles: []string{"user"}}},
		{"email_verified as a string", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{"email":"dave@example.com","email_verified":"true"}`, want{username: "dave@example.com", roles: []string{"user"}}},
		{"an unverified e-mail", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{"email":"eve@example.com","email_verified":false}`, want{refusal: reasonEmailDomain}},
		{"another domain", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{"email":"eve@evil.com","email_verified":true}`, want{refusal: reasonEmailDomain}},
		{"a subdomain", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{"email":"eve@x.example.com","email_verified":true}`, want{refusal: reasonEmailDomain}},
		{"a domain smuggled before the last @", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{"email":"eve@example.com@evil.com","email_verified":true}`, want{refusal: reasonEmailDomain}},
		{"no e-mail", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			`{}`, want{refusal: reasonEmailDomain}},
		{"an allowed group", func(p *Provider) { p.AllowedGroups = []string{"staff"} },
			`{"groups":["x","staff"]}`, want{roles: []string{"staff", "user", "x"}}},
		{"no allowed group", func(p *Provider) { p.AllowedGroups = []string{"staff"} },
			`{"groups":["x"]}`, want{refusal: reasonGroup}},
		{"no groups claim", func(p *Provider) { p.AllowedGroups = []string{"staff"} },
			`{}`, want{refusal: reasonGroup}},
		{"groups are compared before the map", func(p *Provider) {
			p.AllowedGroups = []string{"staff"}
			p.RoleMap = map[string][]string{"x": {"staff"}}
		}, `{"groups":["x"]}`, want{refusal: reasonGroup}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, err := newProvider(cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, refusal := p.identity(cfg.Issuer, "sub-1", decodeClaims(t, tt.claims))
			if refusal != tt.want.refusal {
				t.Fatalf("refusal %q, want %q", refusal, tt.want.refusal)
			}
			if refusal != "" {
				return
			}
			if id.Username != tt.want.username || !slices.Equal(id.Roles, tt.want.roles) || id.MFA != tt.want.mfa {
				t.Errorf("identity %+v; want username %q, roles %q, mfa %v", id, tt.want.username, tt.want.roles, tt.want.mfa)
			}
			if id.Provider != "corp" || id.Issuer != cfg.Issuer || id.Subject != "sub-1" {
				t.Errorf("identity %+v: wrong provider, issuer or subject", id)
			}
		})
	}
}

func TestUserinfoFill(t *testing.T) {
	p, err := newProvider(Provider{Name: "corp", Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s",
		RolesClaim: "realm_access.roles"})
	if err != nil {
		t.Fatal(err)
	}
	full := decodeClaims(t, `{"sub":"1","preferred_username":"a","email":"a@x","email_verified":true,"name":"A","realm_access":{"roles":["r"]}}`)
	if p.missing(full) {
		t.Error("a complete ID token is said to miss claims")
	}
	id := decodeClaims(t, `{"sub":"1","amr":["pwd"],"name":"From the token"}`)
	if !p.missing(id) {
		t.Fatal("an ID token without e-mail is said to miss nothing")
	}
	p.fill(id, decodeClaims(t, `{"sub":"2","amr":["mfa"],"name":"From userinfo","email":"a@x","realm_access":{"roles":["r"]}}`))
	if id.str("sub") != "1" || id.str("name") != "From the token" || id.str("email") != "a@x" {
		t.Errorf("after fill: %v; want sub and name from the ID token, the e-mail from userinfo", id)
	}
	if got := values(id["amr"]); !slices.Equal(got, []string{"pwd"}) {
		t.Errorf("amr %q was taken from userinfo", got)
	}
	if v, _ := id.lookup("realm_access.roles"); !slices.Equal(values(v), []string{"r"}) {
		t.Errorf("roles %v not filled from userinfo", v)
	}
}

func TestAuthorizedParty(t *testing.T) {
	tests := []struct {
		name string
		aud  []string
		c    string
		want bool
	}{
		{"one audience, no azp", []string{"me"}, `{}`, true},
		{"one audience, azp is this client", []string{"me"}, `{"azp":"me"}`, true},
		{"one audience, azp is another client", []string{"me"}, `{"azp":"other"}`, false},
		{"several audiences, no azp", []string{"me", "other"}, `{}`, false},
		{"several audiences, azp is this client", []string{"me", "other"}, `{"azp":"me"}`, true},
		{"several audiences, azp is another client", []string{"me", "other"}, `{"azp":"other"}`, false},
		{"azp not a string", []string{"me"}, `{"azp":["me"]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := authorizedParty(tt.aud, decodeClaims(t, tt.c), "me"); got != tt.want {
				t.Errorf("authorizedParty = %v, want %v", got, tt.want)
			}
		})
	}
}
