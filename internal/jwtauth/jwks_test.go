package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/testclock"
)

// oneIssuer is the Issuer of p, with its JWK Set URL unless discover.
func oneIssuer(p *idp, discover bool, algs ...string) Issuer {
	is := Issuer{Issuer: p.srv.URL, Audiences: []string{"api"}, Algorithms: algs}
	if !discover {
		is.JWKSURL = p.srv.URL + "/jwks"
	}
	return is
}

func TestKeyRotation(t *testing.T) {
	clock := testclock.New(t0)
	k1, k2, k3 := newEC(t, "k1", jose.ES256), newEC(t, "k2", jose.ES256), newEC(t, "k3", jose.ES256)
	p := newIDP(t, k1.publicJWK())
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256")}})
	ctx := context.Background()
	token := func(k signer) string { return sign(t, k, claimsAt(p.srv.URL, clock.Now(), nil), nil) }

	steps := []struct {
		name        string
		before      func()
		signer      signer
		wantReason  string
		wantFetches int32
	}{
		{"first use fetches the key set", nil, k1, "", 1},
		{"a known kid needs no fetch", nil, k1, "", 1},
		{"a new kid at the issuer prompts a refetch", func() {
			p.setKeys(k1.publicJWK(), k2.publicJWK())
			clock.Advance(2 * time.Minute)
		}, k2, "", 2},
		{"another unknown kid within the interval is refused without a fetch", func() {
			p.setKeys(k1.publicJWK(), k2.publicJWK(), k3.publicJWK())
			clock.Advance(30 * time.Second)
		}, k3, ReasonKid, 2},
		{"still refused while the interval lasts", func() { clock.Advance(29 * time.Second) }, k3, ReasonKid, 2},
		{"after the interval the kid is fetched", func() { clock.Advance(time.Second) }, k3, "", 3},
		{"a retired key is refused after the next refresh", func() {
			p.setKeys(k2.publicJWK(), k3.publicJWK())
			clock.Advance(time.Hour)
			// Stale keys still verify, and prompt a refresh in the background.
			if _, err := v.Verify(ctx, token(k2)); err != nil {
				t.Error(err)
			}
			v.bg.Wait()
		}, k1, ReasonKid, 4},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			_, err := v.Verify(ctx, token(st.signer))
			if got := reasonOf(t, err); got != st.wantReason {
				t.Errorf("reason = %q, want %q (%v)", got, st.wantReason, err)
			}
			if n := p.fetches.Load(); n != st.wantFetches {
				t.Errorf("fetches = %d, want %d", n, st.wantFetches)
			}
		})
	}
}

func TestConcurrentFirstUseFetchesOnce(t *testing.T) {
	clock := testclock.New(t0)
	k := newEC(t, "k", jose.ES256)
	p := newIDP(t, k.publicJWK())
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256")}, CacheEntries: -1})
	tok := sign(t, k, claimsAt(p.srv.URL, t0, nil), nil)
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestDiscovery(t *testing.T) {
	k := newEd(t, "k")
	tests := []struct {
		name       string
		setup      func(p *idp)
		wantReason string
	}{
		{"jwks_uri from the discovery document", nil, ""},
		{"issuer in the document differs", func(p *idp) { p.issuer = "https://evil.example" }, ReasonUnavailable},
		{"issuer in the document has a trailing slash", func(p *idp) { p.issuer = p.srv.URL + "/" }, ReasonUnavailable},
		{"jwks_uri over http to a remote host", func(p *idp) { p.jwksURI = "http://keys.example/jwks" }, ReasonUnavailable},
		{"jwks_uri not a URL", func(p *idp) { p.jwksURI = " " }, ReasonUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testclock.New(t0)
			p := newIDP(t, k.publicJWK())
			if tt.setup != nil {
				tt.setup(p)
			}
			v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, true, "EdDSA")}})
			_, err := v.Verify(context.Background(), sign(t, k, claimsAt(p.srv.URL, t0, nil), nil))
			if got := reasonOf(t, err); got != tt.wantReason {
				t.Errorf("reason = %q, want %q (%v)", got, tt.wantReason, err)
			}
			if p.discoveries.Load() != 1 {
				t.Errorf("discovery document read %d times, want 1", p.discoveries.Load())
			}
		})
	}
}

func TestKeysUnavailable(t *testing.T) {
	k := newEC(t, "k", jose.ES256)
	big := `{"keys":[` + strings.Repeat(`{"kty":"oct","k":"AAAA"},`, 50000) + `{}]}`
	tests := []struct {
		name  string
		setup func(p *idp)
	}{
		{"server error", func(p *idp) { p.setStatus(http.StatusInternalServerError) }},
		{"not found", func(p *idp) { p.setStatus(http.StatusNotFound) }},
		{"server down", func(p *idp) { p.srv.Close() }},
		{"not JSON", func(p *idp) { p.raw = []byte("<html>") }},
		{"no keys member", func(p *idp) { p.raw = []byte(`{"key":[]}`) }},
		{"larger than 1 MiB", func(p *idp) { p.raw = []byte(big) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testclock.New(t0)
			p := newIDP(t, k.publicJWK())
			tt.setup(p)
			v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256")}})
			prin, err := v.Verify(context.Background(), sign(t, k, claimsAt(p.srv.URL, t0, nil), nil))
			if prin != nil {
				t.Fatal("accepted a token without keys")
			}
			assertUnavailable(t, err)
		})
	}
}

func assertUnavailable(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if e.Reason != ReasonUnavailable || !errors.Is(err, ErrUnavailable) {
		t.Errorf("error = %v, want %s wrapping ErrUnavailable", err, ReasonUnavailable)
	}
	if e.Status() != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", e.Status())
	}
	if got := e.WWWAuthenticate(); got != "Bearer" {
		t.Errorf("WWW-Authenticate = %q, want a bare Bearer", got)
	}
}

func TestKeysUnavailableAfterFetch(t *testing.T) {
	clock := testclock.New(t0)
	k1, k2 := newEC(t, "k1", jose.ES256), newEC(t, "k2", jose.ES256)
	p := newIDP(t, k1.publicJWK())
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256")}, CacheEntries: -1})
	ctx := context.Background()
	token := func(k signer) string { return sign(t, k, claimsAt(p.srv.URL, clock.Now(), nil), nil) }
	if _, err := v.Verify(ctx, token(k1)); err != nil {
		t.Fatal(err)
	}
	p.setStatus(http.StatusBadGateway)

	t.Run("a held key still verifies", func(t *testing.T) {
		clock.Advance(2 * time.Minute)
		if _, err := v.Verify(ctx, token(k1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an unknown kid when the refetch fails", func(t *testing.T) {
		_, err := v.Verify(ctx, token(k2))
		assertUnavailable(t, err)
		if n := p.fetches.Load(); n != 2 {
			t.Errorf("fetches = %d, want 2", n)
		}
	})
	t.Run("again within the interval: no fetch, still unavailable", func(t *testing.T) {
		clock.Advance(10 * time.Second)
		_, err := v.Verify(ctx, token(k2))
		assertUnavailable(t, err)
		if n := p.fetches.Load(); n != 2 {
			t.Errorf("fetches = %d, want 2", n)
		}
	})
	t.Run("the issuer is back", func(t *testing.T) {
		p.setKeys(k1.publicJWK(), k2.publicJWK())
		p.setStatus(0)
		clock.Advance(time.Minute)
		if _, err := v.Verify(ctx, token(k2)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStaleKeysRefetchedInTheBackground(t *testing.T) {
	k1, k2 := newEd(t, "k1"), newEd(t, "k2")
	tests := []struct {
		name         string
		cacheControl string
		maxAge       time.Duration
	}{
		{"default max age", "", time.Hour},
		{"Cache-Control max-age", "public, max-age=600", 10 * time.Minute},
		{"max-age below the refresh interval", "max-age=5", time.Minute},
		{"max-age above a day", "max-age=999999999999", 24 * time.Hour},
		{"no-store", "no-store", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testclock.New(t0)
			p := newIDP(t, k1.publicJWK())
			p.cacheControl = tt.cacheControl
			v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "EdDSA")}, CacheEntries: -1})
			ctx := context.Background()
			if _, err := v.Verify(ctx, sign(t, k1, claimsAt(p.srv.URL, clock.Now(), nil), nil)); err != nil {
				t.Fatal(err)
			}
			if got := v.order[0].keys.set.Load().staleAt.Sub(t0); got != tt.maxAge {
				t.Errorf("max age = %v, want %v", got, tt.maxAge)
			}
			p.setKeys(k1.publicJWK(), k2.publicJWK())
			clock.Advance(tt.maxAge - time.Second)
			if _, err := v.Verify(ctx, sign(t, k1, claimsAt(p.srv.URL, clock.Now(), nil), nil)); err != nil {
				t.Fatal(err)
			}
			v.bg.Wait()
			if n := p.fetches.Load(); n != 1 {
				t.Errorf("fetches before max age = %d, want 1", n)
			}
			clock.Advance(2 * time.Second)
			if _, err := v.Verify(ctx, sign(t, k1, claimsAt(p.srv.URL, clock.Now(), nil), nil)); err != nil {
				t.Fatalf("stale key refused: %v", err)
			}
			v.bg.Wait()
			if n := p.fetches.Load(); n != 2 {
				t.Errorf("fetches after max age = %d, want 2", n)
			}
			if _, err := v.Verify(ctx, sign(t, k2, claimsAt(p.srv.URL, clock.Now(), nil), nil)); err != nil {
				t.Errorf("key from the background fetch refused: %v", err)
			}
		})
	}
}

func TestKeySetContents(t *testing.T) {
	ecPriv := newEC(t, "private", jose.ES256)
	small := &rsa.PublicKey{N: new(big.Int).SetBit(big.NewInt(1), 1023, 1), E: 65537}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := newEd(t, "ed")
	rawKeys := []string{
		mustJSON(t, jose.JSONWebKey{Key: ecPriv.priv, KeyID: "private", Algorithm: "ES256", Use: "sig"}),
		mustJSON(t, jose.JSONWebKey{Key: small, KeyID: "small", Algorithm: "RS256"}),
		mustJSON(t, jose.JSONWebKey{Key: p521.Public(), KeyID: "p521"}),
		mustJSON(t, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct", Algorithm: "HS256"}),
		mustJSON(t, jose.JSONWebKey{Key: ed.priv.Public(), KeyID: "enc", Use: "enc"}),
		mustJSON(t, jose.JSONWebKey{Key: ed.priv.Public(), KeyID: "hs-alg", Algorithm: "HS256"}),
		strings.Replace(mustJSON(t, jose.JSONWebKey{Key: ed.priv.Public(), KeyID: "sign-only"}), `{`, `{"key_ops":["sign"],`, 1),
		`{"kty":"RSA","kid":"broken","n":"AQAB"}`,
		`"not an object"`,
		strings.Replace(mustJSON(t, jose.JSONWebKey{Key: ed.priv.Public(), KeyID: "verify"}), `{`, `{"key_ops":["verify"],`, 1),
	}
	clock := testclock.New(t0)
	p := newIDP(t)
	p.raw = []byte(`{"keys":[` + strings.Join(rawKeys, ",") + `]}`)
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256", "EdDSA", "RS256")}})
	if _, err := v.Verify(context.Background(), sign(t, ecPriv, claimsAt(p.srv.URL, t0, nil), nil)); err != nil {
		t.Fatalf("key published with its private part: %v", err)
	}
	var kept []string
	for _, k := range v.order[0].keys.set.Load().keys {
		kept = append(kept, k.kid)
		if _, ok := k.pub.(*ecdsa.PrivateKey); ok {
			t.Errorf("key %q kept its private part", k.kid)
		}
	}
	if got := strings.Join(kept, " "); got != "private verify" {
		t.Errorf("keys kept = %q, want %q", got, "private verify")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStartPrefetches(t *testing.T) {
	clock := testclock.New(t0)
	k := newEC(t, "k", jose.ES256)
	p := newIDP(t, k.publicJWK())
	p.fetched = make(chan struct{}, 1)
	v := newTestVerifier(t, clock, p, Options{Issuers: []Issuer{oneIssuer(p, false, "ES256")}})
	ctx, cancel := context.WithCancel(context.Background())
	v.Start(ctx)
	select {
	case <-p.fetched:
	case <-time.After(10 * time.Second):
		t.Fatal("Start fetched nothing")
	}
	// Join the fetch if it still runs; a request prompts no other.
	if _, err := v.refresh(context.Background(), v.order[0], true, true); err != nil {
		t.Fatal(err)
	}
	p.setStatus(http.StatusInternalServerError)
	if _, err := v.Verify(context.Background(), sign(t, k, claimsAt(p.srv.URL, t0, nil), nil)); err != nil {
		t.Fatalf("prefetched key: %v", err)
	}
	cancel()
	v.bg.Wait() // the refresh loop ends with its context
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestVerifyGivesUpWithItsContext(t *testing.T) {
	clock := testclock.New(t0)
	k := newEC(t, "k", jose.ES256)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.publicJWK()}})
	}))
	defer srv.Close()
	v, err := New(Options{
		Issuers: []Issuer{{Issuer: "https://issuer.example", JWKSURL: srv.URL + "/jwks", Audiences: []string{"api"}, Algorithms: []string{"ES256"}}},
		Now:     clock.Now,
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = v.Verify(ctx, sign(t, k, claimsAt("https://issuer.example", t0, nil), nil))
	assertUnavailable(t, err)
	close(release)
	v.bg.Wait()
	// The fetch went on without the request, and its keys are now held.
	if _, err := v.Verify(context.Background(), sign(t, k, claimsAt("https://issuer.example", t0, nil), nil)); err != nil {
		t.Errorf("after the fetch: %v", err)
	}
}
