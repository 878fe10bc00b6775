package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/testclock"
)

// t0 is the test clock's start.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// signer is a test signing key.
type signer struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// publicJWK is s's public key as its issuer publishes it.
func (s signer) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.priv.Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

func newRSA(t testing.TB, kid string, alg jose.SignatureAlgorithm) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: alg, priv: k}
}

func newEC(t testing.TB, kid string, alg jose.SignatureAlgorithm) signer {
	t.Helper()
	curve := elliptic.P256()
	if alg == jose.ES384 {
		curve = elliptic.P384()
	}
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: alg, priv: k}
}

func newEd(t testing.TB, kid string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: jose.EdDSA, priv: k}
}

// sign returns a compact JWS of claims signed by s, with s's kid in the
// header unless noKid, and the extra header members of opts.
func sign(t testing.TB, s signer, claims map[string]any, opts *jose.SignerOptions) string {
	t.Helper()
	var k any = jose.JSONWebKey{Key: s.priv, KeyID: s.kid}
	if s.kid == "" {
		k = s.priv
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: k}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned builds a token from a raw header and payload and a raw
// signature, none of them checked.
func unsigned(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

// claimsAt returns the claims of a valid token of iss at now, with extra
// set over them (a nil value removes the claim).
func claimsAt(iss string, now time.Time, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": iss,
		"sub": "user-1",
		"aud": "api",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// idp is a token issuer's web server: its discovery document and JWK Set.
type idp struct {
	srv *httptest.Server

	mu           sync.Mutex
	keys         []jose.JSONWebKey
	raw          []byte // served instead of keys when set
	status       int    // answered instead when set
	issuer       string // in the discovery document; default the server URL
	jwksURI      string // in the discovery document; default the server's /jwks
	cacheControl string

	fetches     atomic.Int32 // of the JWK Set
	discoveries atomic.Int32
	fetched     chan struct{} // when set, receives each JWK Set request without blocking
}

// newIDP starts an issuer serving keys over TLS; its URL is the issuer.
func newIDP(t testing.TB, keys ...jose.JSONWebKey) *idp {
	t.Helper()
	p := &idp{keys: keys}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		p.discoveries.Add(1)
		iss, uri := p.issuer, p.jwksURI
		if iss == "" {
			iss = p.srv.URL
		}
		if uri == "" {
			uri = p.srv.URL + "/jwks"
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": uri})
	case "/jwks":
		p.fetches.Add(1)
		select {
		case p.fetched <- struct{}{}:
		default:
		}
		if p.status != 0 {
			w.WriteHeader(p.status)
			return
		}
		if p.cacheControl != "" {
			w.Header().Set("Cache-Control", p.cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		if p.raw != nil {
			_, _ = w.Write(p.raw)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: p.keys})
	default:
		http.NotFound(w, r)
	}
}

// setKeys replaces the published keys.
func (p *idp) setKeys(keys ...jose.JSONWebKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = keys
}

// setStatus makes the JWK Set answer status (0: normal).
func (p *idp) setStatus(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

// testLogger writes to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestVerifier builds a Verifier for issuers with the test's clock,
// logger and p's client.
func newTestVerifier(t testing.TB, clock *testclock.Clock, p *idp, o Options) *Verifier {
	t.Helper()
	o.Now = clock.Now
	if o.Client == nil {
		o.Client = p.srv.Client()
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.bg.Wait)
	return v
}

// reasonOf returns the Reason of err, an *Error, or fails the test.
func reasonOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Reason
}

// flipSignature returns tok with one bit of its signature flipped.
func flipSignature(t testing.TB, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 1
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}
