package demoapp

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moatgw/moat/assertion"
)

// TestWhoamiVerifiesTheAssertion serves a key set as Moat does and checks
// that /whoami answers only with an assertion signed by one of its keys.
func TestWhoamiVerifiesTheAssertion(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}}})
	}))
	t.Cleanup(jwks.Close)
	const issuer = "https://gateway.example.test"
	sign := func(k ed25519.PrivateKey, aud string) string {
		t.Helper()
		opts := (&jose.SignerOptions{}).WithType(assertion.TokenType).WithHeader("kid", "k1")
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k}, opts)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := jwt.Signed(s).Claims(map[string]any{
			"iss": issuer, "sub": "service", "aud": aud, "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Minute).Unix(), "jti": "j1", "method": "apikey", "name": "demo-script",
			"scopes": []string{"items:read"},
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a := newTestApp(t)
	srv := serve(t, a)
	resp, _ := do(t, srv, "GET", "/whoami", nil, "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("without a verifier: %d, want 503", resp.StatusCode)
	}
	a.VerifyAssertionsWith(assertion.NewVerifier(jwks.URL, issuer, "whoami", jwks.Client()))
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name   string
		header string
		want   int
		body   string
	}{
		{"no assertion", "", http.StatusUnauthorized, "no valid X-Moat-Assertion"},
		{"signed by Moat's key", sign(key, "whoami"), http.StatusOK, `"name": "demo-script"`},
		{"for another route", sign(key, "ops"), http.StatusUnauthorized, "no valid X-Moat-Assertion"},
		{"signed by another key", sign(other, "whoami"), http.StatusUnauthorized, "no valid X-Moat-Assertion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set(assertion.Header, tc.header)
			}
			resp, body := do(t, srv, "GET", "/whoami", h, "")
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.body) {
				t.Fatalf("status %d, want %d with %q; body:\n%s", resp.StatusCode, tc.want, tc.body, body)
			}
		})
	}
}
