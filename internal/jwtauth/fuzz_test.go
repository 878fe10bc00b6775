package jwtauth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/testclock"
)

// FuzzVerify checks that no token string makes Verify panic, and that
// only the one genuinely signed token verifies: any other string, however
// close to it, is refused with an *Error.
func FuzzVerify(f *testing.F) {
	clock := testclock.New(t0)
	ec, ed := newEC(f, "ec", jose.ES256), newEd(f, "ed")
	p := newIDP(f, ec.publicJWK(), ed.publicJWK())
	v := newTestVerifier(f, clock, p, Options{Issuers: []Issuer{{
		Issuer: p.srv.URL, JWKSURL: p.srv.URL + "/jwks", Audiences: []string{"api"},
		Algorithms: []string{"ES256", "EdDSA"}, RolesClaim: "a.b", Claims: []string{"x.y"},
	}}})
	// Fetches only once: the clock never moves, and unknown kids would
	// otherwise be rate limited anyway.
	genuine := sign(f, ec, claimsAt(p.srv.URL, t0, map[string]any{"a": map[string]any{"b": []string{"r"}}}), nil)
	if _, err := v.Verify(context.Background(), genuine); err != nil {
		f.Fatal(err)
	}
	enc := base64.RawURLEncoding
	parts := strings.Split(genuine, ".")
	for _, seed := range []string{
		genuine,
		sign(f, ed, claimsAt(p.srv.URL, t0, nil), nil)[:10],
		flipSignature(f, genuine),
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + enc.EncodeToString([]byte(`{"iss":"`+p.srv.URL+`","exp":1e400}`)) + "." + parts[2],
		enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		enc.EncodeToString([]byte(`{"alg":"HS256","kid":"ec"}`)) + "." + parts[1] + "." + parts[2],
		enc.EncodeToString([]byte(`{"alg":"ES256","kid":"ec","crit":["exp"]}`)) + "." + parts[1] + "." + parts[2],
		"a.b.c.d.e",
		"..",
		"",
		strings.Repeat(".", 100),
		"eyJ.eyJ.eyJ",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(context.Background(), tok)
		if tok == genuine {
			if err != nil {
				t.Fatalf("the genuine token is refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("Verify accepted %q: %+v", tok, p)
		}
		if p != nil {
			t.Fatal("a principal with an error")
		}
		e, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %v (%T) is not an *Error", err, err)
		}
		if e.Code == "" && e.Reason != ReasonUnavailable {
			t.Fatalf("error without a code: %+v", e)
		}
	})
}

// FuzzFromRequest checks that FromRequest never panics and returns either
// nothing or a JWT-shaped part of the header.
func FuzzFromRequest(f *testing.F) {
	for _, seed := range []string{
		"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln",
		"bearer a.b.",
		"Bearer moat_0123",
		"Basic dXNlcjpwYXNz",
		"Bearer  a.b.c ",
		"Bearer a..c",
		"Bearer ",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{h}
		tok := FromRequest(r)
		if tok == "" {
			return
		}
		if !strings.Contains(h, tok) || !jwtShaped(tok) || strings.Count(tok, ".") != 2 {
			t.Fatalf("FromRequest(%q) = %q", h, tok)
		}
		for _, seg := range strings.Split(tok, ".")[:2] {
			if seg == "" {
				t.Fatalf("FromRequest(%q) = %q has an empty segment", h, tok)
			}
		}
		if strings.ContainsAny(tok, " \t\r\n=+/") {
			t.Fatalf("FromRequest(%q) = %q holds characters outside base64url", h, tok)
		}
	})
}
