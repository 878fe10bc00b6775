package jwtauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/testclock"
)

// fixture is two issuers with their keys and a Verifier trusting both.
type fixture struct {
	clock *testclock.Clock
	idp   *idp // the main issuer
	other *idp // a second trusted issuer
	v     *Verifier

	rsa, rsaPS, ec256, ec384, ed, enc, otherKey, attacker signer
}

func (f *fixture) iss() string      { return f.idp.srv.URL }
func (f *fixture) otherIss() string { return f.other.srv.URL }

// claims are valid claims of the main issuer now, with extra over them.
func (f *fixture) claims(extra map[string]any) map[string]any {
	return claimsAt(f.iss(), f.clock.Now(), extra)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		clock:    testclock.New(t0),
		rsa:      newRSA(t, "rsa", jose.RS256),
		rsaPS:    newRSA(t, "rsa-ps", jose.PS256),
		ec256:    newEC(t, "ec256", jose.ES256),
		ec384:    newEC(t, "ec384", jose.ES384),
		ed:       newEd(t, "ed"),
		enc:      newEC(t, "enc", jose.ES256),
		otherKey: newEC(t, "other", jose.ES256),
		attacker: newEC(t, "ec256", jose.ES256), // same kid as a real key
	}
	psJWK := f.rsaPS.publicJWK()
	psJWK.Algorithm = "" // a key without alg: RS* and PS* both fit it
	encJWK := f.enc.publicJWK()
	encJWK.Use = "enc"
	f.idp = newIDP(t, f.rsa.publicJWK(), psJWK, f.ec256.publicJWK(), f.ec384.publicJWK(), f.ed.publicJWK(), encJWK)
	f.other = newIDP(t, f.otherKey.publicJWK())
	f.v = newTestVerifier(t, f.clock, f.idp, Options{Issuers: []Issuer{{
		Issuer:     f.iss(),
		JWKSURL:    f.idp.srv.URL + "/jwks",
		Audiences:  []string{"api", "other-api"},
		Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"},
		RolesClaim: "realm_access.roles",
		RoleMap:    map[string][]string{"admin": {"admin", "operator"}, "viewer": {"reader"}},
		Claims:     []string{"email", "tenant.id"},
	}, {
		Issuer:     f.otherIss(),
		JWKSURL:    f.other.srv.URL + "/jwks",
		Audiences:  []string{"api"},
		Algorithms: []string{"ES256"},
	}}})
	return f
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	noKid := f.ed
	noKid.kid = ""
	tests := []struct {
		name   string
		signer signer
		extra  map[string]any
	}{
		{"RS256", f.rsa, nil},
		{"PS256 with a key that names no alg", f.rsaPS, nil},
		{"RS384 with a key that names no alg", signer{"rsa-ps", jose.RS384, f.rsaPS.priv}, nil},
		{"ES256", f.ec256, nil},
		{"ES384", f.ec384, nil},
		{"EdDSA", f.ed, nil},
		{"no kid, one key fits the alg", noKid, nil},
		{"aud array holding an accepted audience", f.ec256, map[string]any{"aud": []string{"elsewhere", "other-api"}}},
		{"expired within the clock skew", f.ec256, map[string]any{"exp": f.clock.Now().Add(-20 * time.Second).Unix()}},
		{"nbf within the clock skew", f.ec256, map[string]any{"nbf": f.clock.Now().Add(20 * time.Second).Unix()}},
		{"iat within the clock skew", f.ec256, map[string]any{"iat": f.clock.Now().Add(20 * time.Second).Unix()}},
		{"no nbf nor iat", f.ec256, map[string]any{"nbf": nil, "iat": nil}},
		{"fractional exp", f.ec256, map[string]any{"exp": float64(f.clock.Now().Add(time.Minute).Unix()) + 0.5}},
		{"embedded jwk header of the real key", f.ec256, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts *jose.SignerOptions
			if strings.HasPrefix(tt.name, "embedded") {
				opts = (&jose.SignerOptions{EmbedJWK: true}).WithHeader("kid", tt.signer.kid)
			}
			tok := sign(t, tt.signer, f.claims(tt.extra), opts)
			p, err := f.v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Method != authn.MethodJWT || p.Issuer != f.iss() || p.Subject == "" {
				t.Errorf("principal = %+v", p)
			}
		})
	}
	if n := f.idp.fetches.Load(); n != 1 {
		t.Errorf("JWK Set fetched %d times, want 1", n)
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	valid := sign(t, f.ec256, f.claims(nil), nil)
	rsaDER, err := x509.MarshalPKIXPublicKey(f.rsa.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	payload, _ := json.Marshal(f.claims(nil))
	enc := base64.RawURLEncoding

	tests := []struct {
		name   string
		token  func(t *testing.T) string
		reason string
	}{
		{"alg none", func(t *testing.T) string {
			return unsigned(`{"alg":"none"}`, string(payload), nil)
		}, ReasonAlg},
		{"alg none with a kid", func(t *testing.T) string {
			return unsigned(`{"alg":"none","kid":"ec256"}`, string(payload), nil)
		}, ReasonAlg},
		{"alg None", func(t *testing.T) string {
			return unsigned(`{"alg":"None","kid":"ec256"}`, string(payload), nil)
		}, ReasonAlg},
		{"HS256 keyed with the RSA public key in DER", func(t *testing.T) string {
			return hmacToken(t, jose.HS256, "rsa", rsaDER, payload)
		}, ReasonAlg},
		{"HS256 keyed with the RSA public key in PEM", func(t *testing.T) string {
			return hmacToken(t, jose.HS256, "rsa", rsaPEM, payload)
		}, ReasonAlg},
		{"HS512 keyed with the RSA public key in DER, no kid", func(t *testing.T) string {
			return hmacToken(t, jose.HS512, "", rsaDER, payload)
		}, ReasonAlg},
		{"PS256 with a key whose JWK says RS256", func(t *testing.T) string {
			return sign(t, signer{"rsa", jose.PS256, f.rsa.priv}, f.claims(nil), nil)
		}, ReasonAlg},
		{"ES256 with the kid of an RSA key", func(t *testing.T) string {
			return sign(t, signer{"rsa", jose.ES256, f.ec256.priv}, f.claims(nil), nil)
		}, ReasonAlg},
		{"ES256 with the kid of a P-384 key", func(t *testing.T) string {
			return sign(t, signer{"ec384", jose.ES256, f.ec256.priv}, f.claims(nil), nil)
		}, ReasonAlg},
		{"EdDSA from an issuer that accepts only ES256", func(t *testing.T) string {
			return sign(t, signer{"other", jose.EdDSA, f.ed.priv}, claimsAt(f.otherIss(), now, nil), nil)
		}, ReasonAlg},
		{"unknown kid", func(t *testing.T) string {
			return sign(t, signer{"nope", jose.ES256, f.ec256.priv}, f.claims(nil), nil)
		}, ReasonKid},
		{"kid of an encryption key", func(t *testing.T) string {
			return sign(t, f.enc, f.claims(nil), nil)
		}, ReasonKid},
		{"no kid, several keys fit the alg", func(t *testing.T) string {
			return sign(t, signer{"", jose.RS256, f.rsa.priv}, f.claims(nil), nil)
		}, ReasonKid},
		{"key of another trusted issuer", func(t *testing.T) string {
			return sign(t, f.otherKey, f.claims(nil), nil)
		}, ReasonKid},
		{"other issuer's iss signed with this issuer's key", func(t *testing.T) string {
			return sign(t, f.ec256, claimsAt(f.otherIss(), now, nil), nil)
		}, ReasonKid},
		{"jku header pointing elsewhere", func(t *testing.T) string {
			return sign(t, signer{"attacker-kid", jose.ES256, f.attacker.priv}, f.claims(nil),
				(&jose.SignerOptions{}).WithHeader("jku", f.other.srv.URL+"/jwks"))
		}, ReasonKid},
		{"embedded jwk of an attacker with a known kid", func(t *testing.T) string {
			return sign(t, f.attacker, f.claims(nil), (&jose.SignerOptions{EmbedJWK: true}).WithHeader("kid", "ec256"))
		}, ReasonSignature},
		{"unknown issuer", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"iss": "https://evil.example"}), nil)
		}, ReasonIssuer},
		{"issuer with a trailing slash", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"iss": f.iss() + "/"}), nil)
		}, ReasonIssuer},
		{"no iss", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"iss": nil}), nil)
		}, ReasonIssuer},
		{"iss not a string", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"iss": []string{f.iss()}}), nil)
		}, ReasonIssuer},
		{"wrong audience", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"aud": "billing"}), nil)
		}, ReasonAudience},
		{"audience of the other issuer only", func(t *testing.T) string {
			return sign(t, f.otherKey, claimsAt(f.otherIss(), now, map[string]any{"aud": "other-api"}), nil)
		}, ReasonAudience},
		{"no audience", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"aud": nil}), nil)
		}, ReasonAudience},
		{"expired", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"exp": now.Add(-31 * time.Second).Unix()}), nil)
		}, ReasonExpired},
		{"no exp", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"exp": nil}), nil)
		}, ReasonClaims},
		{"exp a string", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"exp": "4102444800"}), nil)
		}, ReasonClaims},
		{"exp negative", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"exp": -1}), nil)
		}, ReasonClaims},
		{"nbf in the future", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"nbf": now.Add(31 * time.Second).Unix()}), nil)
		}, ReasonNotYetValid},
		{"iat in the future", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"iat": now.Add(time.Hour).Unix()}), nil)
		}, ReasonIATFuture},
		{"no subject", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"sub": nil}), nil)
		}, ReasonClaims},
		{"empty subject", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"sub": ""}), nil)
		}, ReasonClaims},
		{"signature with one bit flipped", func(t *testing.T) string {
			return flipSignature(t, valid)
		}, ReasonSignature},
		{"signed by an attacker's key under a real kid", func(t *testing.T) string {
			return sign(t, f.attacker, f.claims(nil), nil)
		}, ReasonSignature},
		{"payload swapped under a valid signature", func(t *testing.T) string {
			parts := strings.Split(valid, ".")
			forged, _ := json.Marshal(f.claims(map[string]any{"sub": "admin"}))
			return parts[0] + "." + enc.EncodeToString(forged) + "." + parts[2]
		}, ReasonSignature},
		{"signature of another token", func(t *testing.T) string {
			other := sign(t, f.ec256, f.claims(map[string]any{"sub": "admin"}), nil)
			return valid[:strings.LastIndexByte(valid, '.')] + other[strings.LastIndexByte(other, '.'):]
		}, ReasonSignature},
		{"empty signature", func(t *testing.T) string {
			return valid[:strings.LastIndexByte(valid, '.')+1]
		}, ReasonSignature},
		{"crit header", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(nil), (&jose.SignerOptions{}).WithHeader("x-ext", 1).WithCritical("x-ext"))
		}, ReasonCrit},
		{"crit b64 unencoded payload", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(nil), (&jose.SignerOptions{}).WithBase64(false))
		}, ReasonCrit},
		{"empty crit", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(nil), (&jose.SignerOptions{}).WithHeader("crit", []string{}))
		}, ReasonCrit},
		{"zip header", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(nil), (&jose.SignerOptions{}).WithHeader("zip", "DEF"))
		}, ReasonCompressed},
		{"nested token", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(nil), (&jose.SignerOptions{}).WithContentType("JWT"))
		}, ReasonNested},
		{"JWE", func(t *testing.T) string {
			e, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: f.rsa.priv.Public()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := e.Encrypt(payload)
			if err != nil {
				t.Fatal(err)
			}
			s, err := obj.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, ReasonEncrypted},
		{"too large", func(t *testing.T) string {
			return sign(t, f.ec256, f.claims(map[string]any{"pad": strings.Repeat("a", 9000)}), nil)
		}, ReasonTooLarge},
		{"empty", func(t *testing.T) string { return "" }, ReasonMalformed},
		{"two segments", func(t *testing.T) string { return valid[:strings.LastIndexByte(valid, '.')] }, ReasonMalformed},
		{"four segments", func(t *testing.T) string { return valid + ".AAAA" }, ReasonMalformed},
		{"JWS JSON serialization", func(t *testing.T) string {
			return `{"payload":"` + strings.Split(valid, ".")[1] + `","protected":"` + strings.Split(valid, ".")[0] + `","signature":"` + strings.Split(valid, ".")[2] + `"}`
		}, ReasonMalformed},
		{"header not base64", func(t *testing.T) string { return "!!!." + strings.SplitN(valid, ".", 2)[1] }, ReasonMalformed},
		{"header not JSON", func(t *testing.T) string { return unsigned(`alg=ES256`, string(payload), []byte("sig")) }, ReasonMalformed},
		{"payload not an object", func(t *testing.T) string {
			return unsigned(`{"alg":"ES256","kid":"ec256"}`, `["iss"]`, []byte("sig"))
		}, ReasonMalformed},
		{"payload null", func(t *testing.T) string {
			return unsigned(`{"alg":"ES256","kid":"ec256"}`, `null`, []byte("sig"))
		}, ReasonMalformed},
		{"newline inside a segment", func(t *testing.T) string {
			i := strings.IndexByte(valid, '.')
			return valid[:i-2] + "\n" + valid[i-2:]
		}, ReasonMalformed},
		{"padded base64", func(t *testing.T) string {
			parts := strings.Split(valid, ".")
			return base64.URLEncoding.EncodeToString(mustDecode(t, parts[0])) + "." + parts[1] + "." + parts[2]
		}, ReasonMalformed},
		{"non-canonical trailing bits in the signature", func(t *testing.T) string {
			return tweakTrailingBits(t, valid)
		}, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			p, err := f.v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			if p != nil {
				t.Errorf("Verify returned a principal with its error")
			}
			if got := reasonOf(t, err); got != tt.reason {
				t.Errorf("reason = %q, want %q (%v)", got, tt.reason, err)
			}
			var e *Error
			errors.As(err, &e)
			if e.Status() != http.StatusUnauthorized && e.Status() != http.StatusBadRequest {
				t.Errorf("status = %d, want 401 or 400", e.Status())
			}
			if strings.Contains(e.Description, tok) && tok != "" {
				t.Errorf("description echoes the token")
			}
		})
	}
	if n := f.other.fetches.Load(); n > 1 {
		t.Errorf("other issuer's keys fetched %d times, want at most 1", n)
	}
	if _, err := f.v.Verify(context.Background(), valid); err != nil {
		t.Errorf("the valid token is refused after the attacks: %v", err)
	}
}

// hmacToken is a token signed with an HMAC alg keyed with secret.
func hmacToken(t *testing.T, alg jose.SignatureAlgorithm, kid string, secret, payload []byte) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: secret, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tweakTrailingBits changes the unused low bits of the signature's last
// character, which lax decoders ignore.
func tweakTrailingBits(t *testing.T, tok string) string {
	t.Helper()
	if len(tok[strings.LastIndexByte(tok, '.')+1:])%4 == 0 {
		t.Fatal("signature has no unused bits")
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last|1])
}

func TestVerifyPrincipal(t *testing.T) {
	clock := testclock.New(t0)
	k := newEC(t, "k", jose.ES256)
	p := newIDP(t, k.publicJWK())
	base := Issuer{Issuer: p.srv.URL, JWKSURL: p.srv.URL + "/jwks", Audiences: []string{"api"}, Algorithms: []string{"ES256"}}
	with := func(f func(*Issuer)) Issuer { c := base; f(&c); return c }

	tests := []struct {
		name   string
		issuer Issuer
		extra  map[string]any
		want   authn.Principal
	}{
		{
			name:   "defaults",
			issuer: base,
			extra:  map[string]any{"preferred_username": "alice", "auth_time": t0.Add(-time.Minute).Unix(), "amr": []string{"pwd", "otp"}},
			want:   authn.Principal{Subject: "user-1", Name: "alice", AuthMethods: []string{"pwd", "otp"}, AuthTime: t0.Add(-time.Minute)},
		},
		{
			name:   "name falls back to the subject",
			issuer: base,
			want:   authn.Principal{Subject: "user-1", Name: "user-1"},
		},
		{
			name: "roles mapped from a nested claim path",
			issuer: with(func(c *Issuer) {
				c.RolesClaim = "realm_access.roles"
				c.RoleMap = map[string][]string{"admin": {"admin", "ops"}, "dev": {"ops"}}
			}),
			extra: map[string]any{"realm_access": map[string]any{"roles": []string{"dev", "admin", "unmapped"}}},
			want:  authn.Principal{Subject: "user-1", Name: "user-1", Roles: []string{"ops", "admin"}},
		},
		{
			name:   "roles without a map are the claim values",
			issuer: with(func(c *Issuer) { c.RolesClaim = "groups" }),
			extra:  map[string]any{"groups": []any{"a", "b", "a", 7}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Roles: []string{"a", "b"}},
		},
		{
			name:   "roles from a string claim",
			issuer: with(func(c *Issuer) { c.RolesClaim = "role" }),
			extra:  map[string]any{"role": "admin"},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Roles: []string{"admin"}},
		},
		{
			name:   "roles from a claim name holding dots",
			issuer: with(func(c *Issuer) { c.RolesClaim = "https://example.com/roles" }),
			extra:  map[string]any{"https://example.com/roles": []string{"editor"}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Roles: []string{"editor"}},
		},
		{
			name:   "an empty role map grants nothing",
			issuer: with(func(c *Issuer) { c.RolesClaim = "roles"; c.RoleMap = map[string][]string{} }),
			extra:  map[string]any{"roles": []string{"admin"}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1"},
		},
		{
			name:   "roles path through a non-object",
			issuer: with(func(c *Issuer) { c.RolesClaim = "realm_access.roles" }),
			extra:  map[string]any{"realm_access": "admin"},
			want:   authn.Principal{Subject: "user-1", Name: "user-1"},
		},
		{
			name:   "scopes from scope",
			issuer: base,
			extra:  map[string]any{"scope": "read  write read"},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Scopes: []string{"read", "write"}},
		},
		{
			name:   "scopes from scp",
			issuer: base,
			extra:  map[string]any{"scp": []string{"read", "write"}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Scopes: []string{"read", "write"}},
		},
		{
			name:   "scope wins over scp",
			issuer: base,
			extra:  map[string]any{"scope": "read", "scp": []string{"write"}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Scopes: []string{"read"}},
		},
		{
			name:   "scopes from a configured claim",
			issuer: with(func(c *Issuer) { c.ScopesClaim = "permissions" }),
			extra:  map[string]any{"permissions": []string{"orders:read"}, "scope": "ignored"},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Scopes: []string{"orders:read"}},
		},
		{
			name:   "subject and name from configured claims",
			issuer: with(func(c *Issuer) { c.SubjectClaim = "oid"; c.NameClaim = "user.name" }),
			extra:  map[string]any{"oid": "0000-1111", "user": map[string]any{"name": "Bob"}},
			want:   authn.Principal{Subject: "0000-1111", Name: "Bob"},
		},
		{
			name:   "claims copied",
			issuer: with(func(c *Issuer) { c.Claims = []string{"email", "tenant.id", "absent"} }),
			extra:  map[string]any{"email": "a@example.com", "tenant": map[string]any{"id": "t1"}},
			want:   authn.Principal{Subject: "user-1", Name: "user-1", Claims: map[string]any{"email": "a@example.com", "tenant.id": "t1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{tt.issuer}})
			got, err := v.Verify(context.Background(), sign(t, k, claimsAt(p.srv.URL, t0, tt.extra), nil))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Method = authn.MethodJWT
			want.Issuer = p.srv.URL
			if got.Subject != want.Subject || got.Name != want.Name || got.Method != want.Method || got.Issuer != want.Issuer ||
				!slices.Equal(got.Roles, want.Roles) || !slices.Equal(got.Scopes, want.Scopes) ||
				!slices.Equal(got.AuthMethods, want.AuthMethods) || !got.AuthTime.Equal(want.AuthTime) ||
				!sameClaims(got.Claims, want.Claims) {
				t.Errorf("principal\n got %+v\nwant %+v", *got, want)
			}
		})
	}
}

func sameClaims(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestVerifyCache(t *testing.T) {
	clock := testclock.New(t0)
	k := newEd(t, "k")
	p := newIDP(t, k.publicJWK())
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{{Issuer: p.srv.URL, JWKSURL: p.srv.URL + "/jwks", Audiences: []string{"api"}, Algorithms: []string{"EdDSA"}}}, CacheEntries: 4})
	ctx := context.Background()

	t.Run("a verified token is cached until its exp", func(t *testing.T) {
		tok := sign(t, k, claimsAt(p.srv.URL, clock.Now(), map[string]any{"exp": clock.Now().Add(time.Minute).Unix()}), nil)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, hit := v.cache.m[sha(tok)]; !hit {
			t.Fatal("token not cached")
		}
		clock.Advance(59 * time.Second)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Second) // past exp, within the skew
		if got := v.cache.get(sha(tok), clock.Now()); got != nil {
			t.Error("cache answers past the token's exp")
		}
		clock.Advance(30 * time.Second) // past exp and skew
		if got := reasonOf(t, second(v.Verify(ctx, tok))); got != ReasonExpired {
			t.Errorf("reason = %q, want %q", got, ReasonExpired)
		}
	})
	t.Run("the returned principal is the caller's own", func(t *testing.T) {
		tok := sign(t, k, claimsAt(p.srv.URL, clock.Now(), nil), nil)
		p1, _ := v.Verify(ctx, tok)
		p1.Subject = "changed"
		p2, err := v.Verify(ctx, tok)
		if err != nil || p2.Subject != "user-1" {
			t.Errorf("cached principal changed: %v %+v", err, p2)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		for i := range 10 {
			tok := sign(t, k, claimsAt(p.srv.URL, clock.Now(), map[string]any{"jti": i}), nil)
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if n := v.cache.len(); n > 4 {
				t.Fatalf("cache holds %d entries, limit 4", n)
			}
		}
	})
	t.Run("a token whose key left the key set is verified again", func(t *testing.T) {
		tok := sign(t, k, claimsAt(p.srv.URL, clock.Now(), nil), nil)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		k2 := newEd(t, "k2")
		p.setKeys(k2.publicJWK())
		clock.Advance(2 * time.Minute)
		// An unknown kid prompts the refetch that drops k.
		if _, err := v.Verify(ctx, sign(t, k2, claimsAt(p.srv.URL, clock.Now(), nil), nil)); err != nil {
			t.Fatal(err)
		}
		if got := reasonOf(t, second(v.Verify(ctx, tok))); got != ReasonKid {
			t.Errorf("reason = %q, want %q", got, ReasonKid)
		}
	})
}

func sha(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

func second[A, B any](_ A, b B) B { return b }
