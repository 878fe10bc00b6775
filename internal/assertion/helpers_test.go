package assertion

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	moatassertion "github.com/moatgw/moat/assertion"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

const testIssuer = "https://gw.example.test"

// openStore opens a migrated SQLite store in a temporary directory, with an
// encrypting key ring.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	return storetest.Open(t)
}

// testLogger writes to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// instance is one gateway instance: a Signer and its published key set.
type instance struct {
	s    *Signer
	jwks *httptest.Server
}

// newInstance starts a Signer over st with the clock c; opts change its
// Options first.
func newInstance(t testing.TB, st *store.Store, c *testclock.Clock, opts ...func(*Options)) *instance {
	t.Helper()
	o := Options{Keys: st.SigningKeys(), Issuer: testIssuer, Now: c.Now, Logger: testLogger(t)}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &instance{s: s, jwks: srv}
}

// verifier is a fresh public verifier of this instance's assertions for
// the route audience, as an upstream builds it.
func (in *instance) verifier(audience string) *moatassertion.Verifier {
	return moatassertion.NewVerifier(in.jwks.URL+JWKSPath, testIssuer, audience, in.jwks.Client())
}

// verify checks tok with a fresh verifier for audience.
func (in *instance) verify(audience, tok string) (*moatassertion.Claims, error) {
	return in.verifier(audience).Verify(context.Background(), tok)
}

// alice is a principal that signed in with a password and TOTP.
func alice(at time.Time) *authn.Principal {
	return &authn.Principal{
		Subject: "u-alice", Name: "alice", Method: authn.MethodSession,
		Roles: []string{"admin", "user"}, AuthMethods: []string{authn.AMRPassword, authn.AMRTOTP},
		AuthTime: at.Add(-10 * time.Minute), Issuer: authn.LocalIssuer, SessionID: "sess-1",
	}
}

// sign signs for p and route, failing the test on an error.
func sign(t testing.TB, s *Signer, p *authn.Principal, route, rid string) string {
	t.Helper()
	tok, err := s.Sign(p, route, rid)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// part decodes the JSON object in part i (0 header, 1 claims) of tok.
func part(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// kid is the key id in tok's header.
func kid(t testing.TB, tok string) string {
	t.Helper()
	k, _ := part(t, tok, 0)["kid"].(string)
	return k
}

// jwkIDs lists the key ids in a JWK Set.
func jwkIDs(t testing.TB, set []byte) []string {
	t.Helper()
	var s struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(set, &s); err != nil {
		t.Fatalf("JWKS %s: %v", set, err)
	}
	var ids []string
	for _, k := range s.Keys {
		ids = append(ids, k.Kid)
	}
	return ids
}

// reencode builds a token from a header, the claims part of tok and a
// signature part.
func reencode(t testing.TB, header map[string]any, tok, sig string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + strings.Split(tok, ".")[1] + "." + sig
}
