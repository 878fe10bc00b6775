package assertion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// memJWKS serves a JWK Set from memory, so that fuzzing does no network
// I/O.
type memJWKS []byte

func (m memJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/jwk-set+json"}},
		Body:       io.NopCloser(bytes.NewReader(m)),
		Request:    r,
	}, nil
}

// FuzzVerify feeds arbitrary tokens to a verifier that knows one key
// whose private half the fuzzer never sees signing a valid token: Verify
// must neither panic nor accept any of them.
func FuzzVerify(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: priv.Public(), KeyID: "k1", Algorithm: "EdDSA", Use: "sig"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	v := NewVerifier("https://gw.example.test/.well-known/moat/jwks.json", testIssuer, testAudience,
		&http.Client{Transport: memJWKS(set)})

	now := time.Now()
	good := claimsAt(now)
	valid := signEdDSA(f, priv, "k1", TokenType, good)
	parts := strings.Split(valid, ".")
	seeds := []string{
		"", ".", "..", "a.b.c", "a.b.c.d.e",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2] + "AA",
		signEdDSA(f, priv, "k1", TokenType, with(good, "aud", "billing")),
		signEdDSA(f, priv, "k1", TokenType, with(good, "exp", now.Add(-time.Hour).Unix())),
		signEdDSA(f, priv, "", TokenType, good),
		signEdDSA(f, priv, "k1", "JWT", good),
		signEdDSA(f, other, "k1", TokenType, good),
		rawToken(f, map[string]any{"alg": "none", "kid": "k1", "typ": TokenType}, good, nil),
		rawToken(f, map[string]any{"alg": "HS256", "kid": "k1", "typ": TokenType}, good, []byte("0123456789abcdef0123456789abcdef")),
		rawToken(f, map[string]any{"alg": "EdDSA", "kid": "k1", "typ": TokenType, "crit": []string{"exp"}}, good, make([]byte, 64)),
		`{"payload":"e30","signatures":[{"protected":"eyJhbGciOiJFZERTQSJ9","signature":""}]}`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err == nil || c != nil {
			t.Fatalf("Verify accepted %q: %+v", token, c)
		}
	})
}
