package assertion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://gw.example.test"
	testAudience = "orders"
)

// gateway stands in for Moat: it holds signing keys and serves their
// public halves as a JWK Set, counting fetches.
type gateway struct {
	mu      sync.Mutex
	keys    map[string]ed25519.PrivateKey
	down    bool
	extra   []json.RawMessage // more entries for the set, as they are
	fetches atomic.Int32
	srv     *httptest.Server
}

func newGateway(t testing.TB) *gateway {
	t.Helper()
	g := &gateway{keys: map[string]ed25519.PrivateKey{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.fetches.Add(1)
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		set := struct {
			Keys []any `json:"keys"`
		}{Keys: []any{}}
		for kid, priv := range g.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: "EdDSA", Use: "sig"})
		}
		for _, e := range g.extra {
			set.Keys = append(set.Keys, e)
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// addKey makes a signing key under kid and returns it.
func (g *gateway) addKey(kid string) ed25519.PrivateKey {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys[kid] = priv
	return priv
}

func (g *gateway) removeKey(kid string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.keys, kid)
}

func (g *gateway) setDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
}

// clock is a settable time for the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (g *gateway) verifier(c *clock) *Verifier {
	v := NewVerifier(g.srv.URL, testIssuer, testAudience, g.srv.Client())
	if c != nil {
		v.now = c.Now
	}
	return v
}

// claimsAt are the claims of a good assertion issued at t.
func claimsAt(t time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "u-123", "aud": testAudience,
		"iat": t.Unix(), "nbf": t.Unix(), "exp": t.Add(time.Minute).Unix(),
		"jti": "abc", "method": "session", "name": "alice",
		"roles": []string{"admin", "user"}, "amr": []string{"pwd", "otp"},
		"auth_time": t.Add(-time.Hour).Unix(), "idp": "moat", "sid": "s-1",
		"ext": map[string]any{"email": "alice@example.test"},
	}
}

// signEdDSA signs claims with priv; kid and typ go in the header unless
// empty.
func signEdDSA(t testing.TB, priv ed25519.PrivateKey, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken builds a compact JWS from a header and claims, with sig as its
// signature part.
func rawToken(t testing.TB, header, claims map[string]any, sig []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString(sig)
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range m {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestVerify(t *testing.T) {
	g := newGateway(t)
	priv := g.addKey("k1")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now().Truncate(time.Second)
	good := claimsAt(now)

	hs256 := func(secret []byte, kid string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
			(&jose.SignerOptions{}).WithType(TokenType).WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jwt.Signed(signer).Claims(good).Serialize()
		return tok
	}
	tamper := func(tok string, part int) string {
		parts := strings.Split(tok, ".")
		b, _ := base64.RawURLEncoding.DecodeString(parts[part])
		if part == 1 {
			b = []byte(strings.Replace(string(b), `"u-123"`, `"u-999"`, 1))
		} else {
			b[0] ^= 1
		}
		parts[part] = base64.RawURLEncoding.EncodeToString(b)
		return strings.Join(parts, ".")
	}
	valid := signEdDSA(t, priv, "k1", TokenType, good)

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"valid", valid, true},
		{"expired within leeway", signEdDSA(t, priv, "k1", TokenType, with(good, "exp", now.Add(-20*time.Second).Unix())), true},
		{"not yet valid within leeway", signEdDSA(t, priv, "k1", TokenType, with(good, "nbf", now.Add(20*time.Second).Unix())), true},
		{"no nbf", signEdDSA(t, priv, "k1", TokenType, with(good, "nbf", nil)), true},
		{"aud as a one-element list", signEdDSA(t, priv, "k1", TokenType, with(good, "aud", []string{testAudience})), true},

		{"expired", signEdDSA(t, priv, "k1", TokenType, with(good, "exp", now.Add(-40*time.Second).Unix())), false},
		{"not yet valid", signEdDSA(t, priv, "k1", TokenType, with(good, "nbf", now.Add(40*time.Second).Unix())), false},
		{"issued in the future", signEdDSA(t, priv, "k1", TokenType, with(good, "iat", now.Add(2*time.Minute).Unix())), false},
		{"no exp", signEdDSA(t, priv, "k1", TokenType, with(good, "exp", nil)), false},
		{"no iat", signEdDSA(t, priv, "k1", TokenType, with(good, "iat", nil)), false},
		{"no sub", signEdDSA(t, priv, "k1", TokenType, with(good, "sub", nil)), false},
		{"wrong audience", signEdDSA(t, priv, "k1", TokenType, with(good, "aud", "billing")), false},
		{"several audiences", signEdDSA(t, priv, "k1", TokenType, with(good, "aud", []string{testAudience, "billing"})), false},
		{"audience differs in case", signEdDSA(t, priv, "k1", TokenType, with(good, "aud", "Orders")), false},
		{"wrong issuer", signEdDSA(t, priv, "k1", TokenType, with(good, "iss", "https://evil.example.test")), false},
		{"issuer with a trailing slash", signEdDSA(t, priv, "k1", TokenType, with(good, "iss", testIssuer+"/")), false},
		{"no kid", signEdDSA(t, priv, "", TokenType, good), false},
		{"unknown kid", signEdDSA(t, priv, "k9", TokenType, good), false},
		{"no typ", signEdDSA(t, priv, "k1", "", good), false},
		{"another typ", signEdDSA(t, priv, "k1", "JWT", good), false},
		{"signed by another key", signEdDSA(t, other, "k1", TokenType, good), false},
		{"tampered payload", tamper(valid, 1), false},
		{"tampered signature", tamper(valid, 2), false},
		{"tampered header", tamper(valid, 0), false},
		{"alg none", rawToken(t, map[string]any{"alg": "none", "kid": "k1", "typ": TokenType}, good, nil), false},
		{"alg none with a signature", rawToken(t, map[string]any{"alg": "none", "kid": "k1", "typ": TokenType}, good, []byte("x")), false},
		{"HS256 keyed with the public key", hs256(priv.Public().(ed25519.PublicKey), "k1"), false},
		{"HS256 keyed with its base64", hs256([]byte(base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))), "k1"), false},
		{"ES256 header on an EdDSA signature", rawToken(t, map[string]any{"alg": "ES256", "kid": "k1", "typ": TokenType}, good, ed25519.Sign(priv, []byte("x"))), false},
		{"signature stripped", strings.Join(strings.Split(valid, ".")[:2], ".") + ".", false},
		{"two parts", strings.Join(strings.Split(valid, ".")[:2], "."), false},
		{"five parts", valid + ".a.b", false},
		{"empty", "", false},
		{"garbage", "not a token", false},
		{"too long", valid + strings.Repeat("A", maxTokenSize), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := g.verifier(&clock{t: now})
			c, err := v.Verify(context.Background(), tt.token)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				if c.Subject != "u-123" || c.Audience != testAudience || c.Issuer != testIssuer {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Verify error %v does not wrap ErrInvalid", err)
			}
			if c != nil {
				t.Errorf("claims %+v returned with an error", c)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	g := newGateway(t)
	priv := g.addKey("k1")
	now := time.Now().Truncate(time.Second)
	v := g.verifier(&clock{t: now})
	c, err := v.Verify(context.Background(), signEdDSA(t, priv, "k1", TokenType, with(claimsAt(now), "key_id", "ak-7")))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", c.Issuer, testIssuer},
		{"subject", c.Subject, "u-123"},
		{"audience", c.Audience, testAudience},
		{"method", c.Method, "session"},
		{"name", c.Name, "alice"},
		{"roles", strings.Join(c.Roles, ","), "admin,user"},
		{"amr", strings.Join(c.AMR, ","), "pwd,otp"},
		{"scopes", len(c.Scopes), 0},
		{"auth time", c.AuthTime, now.Add(-time.Hour)},
		{"issued at", c.IssuedAt, now},
		{"expiry", c.Expiry, now.Add(time.Minute)},
		{"id", c.ID, "abc"},
		{"request id", c.RequestID, ""},
		{"idp", c.IdP, "moat"},
		{"session id", c.SessionID, "s-1"},
		{"key id", c.KeyID, "ak-7"},
		{"extra", c.Extra["email"], "alice@example.test"},
	}
	for _, ch := range checks {
		t.Run(ch.name, func(t *testing.T) {
			if gt, ok := ch.got.(time.Time); ok {
				if !gt.Equal(ch.want.(time.Time)) {
					t.Errorf("got %v, want %v", gt, ch.want)
				}
				return
			}
			if ch.got != ch.want {
				t.Errorf("got %v, want %v", ch.got, ch.want)
			}
		})
	}
}

func TestKeySetFetching(t *testing.T) {
	ctx := context.Background()
	t.Run("fetched once for many tokens", func(t *testing.T) {
		g := newGateway(t)
		priv := g.addKey("k1")
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		for range 5 {
			if _, err := v.Verify(ctx, signEdDSA(t, priv, "k1", TokenType, claimsAt(c.Now()))); err != nil {
				t.Fatal(err)
			}
		}
		if n := g.fetches.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
	})
	t.Run("a new key is fetched on first sight", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatal(err)
		}
		k2 := g.addKey("k2")
		if _, err := v.Verify(ctx, signEdDSA(t, k2, "k2", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatalf("token of a newly published key: %v", err)
		}
		if n := g.fetches.Load(); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
	})
	t.Run("unknown key ids refetch at most once a minute", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if _, err := v.Verify(ctx, signEdDSA(t, k1, "bogus", TokenType, claimsAt(c.Now()))); !errors.Is(err, ErrInvalid) {
				t.Fatalf("try %d: %v, want ErrInvalid", i, err)
			}
		}
		if n := g.fetches.Load(); n != 2 {
			t.Fatalf("%d fetches after 10 unknown key ids, want 2", n)
		}
		k2 := g.addKey("k2")
		c.Advance(30 * time.Second)
		if _, err := v.Verify(ctx, signEdDSA(t, k2, "k2", TokenType, claimsAt(c.Now()))); err == nil {
			t.Fatal("a key published within the minute was fetched")
		}
		c.Advance(31 * time.Second)
		if _, err := v.Verify(ctx, signEdDSA(t, k2, "k2", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatalf("a minute later: %v", err)
		}
		if n := g.fetches.Load(); n != 3 {
			t.Errorf("%d fetches, want 3", n)
		}
	})
	t.Run("refreshed every 5 minutes, dropping retired keys", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		g.addKey("k2")
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatal(err)
		}
		g.removeKey("k1")
		c.Advance(4 * time.Minute)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatalf("before the refresh: %v", err)
		}
		c.Advance(time.Minute)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); !errors.Is(err, ErrInvalid) {
			t.Fatalf("after the refresh: %v, want ErrInvalid", err)
		}
	})
	t.Run("known keys outlive an unreachable gateway", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatal(err)
		}
		g.setDown(true)
		c.Advance(10 * time.Minute)
		for range 3 {
			if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
				t.Fatalf("with the gateway down: %v", err)
			}
		}
		if n := g.fetches.Load(); n != 2 {
			t.Errorf("%d fetches, want 2 (one failed refresh, then a minute's pause)", n)
		}
	})
	t.Run("no key set: unavailable, retried after a pause", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		g.setDown(true)
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		for range 3 {
			if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v, want ErrUnavailable", err)
			}
		}
		if n := g.fetches.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
		g.setDown(false)
		c.Advance(5 * time.Second)
		if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
			t.Fatalf("once the gateway is back: %v", err)
		}
	})
	t.Run("keys that are not Ed25519 signing keys are ignored", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		enc := base64.RawURLEncoding.EncodeToString
		pub := enc(priv.Public().(ed25519.PublicKey))
		g.extra = []json.RawMessage{
			json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"` + pub + `","alg":"EdDSA"}`),                                  // no kid
			json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"` + pub + `","kid":"enc","use":"enc"}`),                        // not for signatures
			json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"` + pub + `","kid":"es","alg":"ES256"}`),                       // another algorithm
			json.RawMessage(`{"kty":"oct","k":"` + pub + `","kid":"hmac"}`),                                                   // a symmetric key
			json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"` + pub + `","d":"` + enc(priv.Seed()) + `","kid":"private"}`), // a private key
			json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"short"}`),                                         // malformed
			json.RawMessage(`"not a key"`),
		}
		c := &clock{t: time.Now()}
		for _, kid := range []string{"enc", "es", "hmac", "private", "short"} {
			t.Run(kid, func(t *testing.T) {
				v := g.verifier(c)
				if _, err := v.Verify(ctx, signEdDSA(t, priv, kid, TokenType, claimsAt(c.Now()))); !errors.Is(err, ErrInvalid) {
					t.Fatalf("%v, want ErrInvalid", err)
				}
				if _, err := v.Verify(ctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(c.Now()))); err != nil {
					t.Fatalf("the good key beside it: %v", err)
				}
			})
		}
	})
	t.Run("a key set without usable keys is an error", func(t *testing.T) {
		g := newGateway(t)
		c := &clock{t: time.Now()}
		v := g.verifier(c)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := v.Verify(ctx, signEdDSA(t, priv, "k1", TokenType, claimsAt(c.Now()))); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%v, want ErrUnavailable", err)
		}
	})
	t.Run("a cancelled context while another fetch runs", func(t *testing.T) {
		g := newGateway(t)
		k1 := g.addKey("k1")
		v := g.verifier(nil)
		v.keys.sem <- struct{}{} // a fetch in progress
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := v.Verify(cctx, signEdDSA(t, k1, "k1", TokenType, claimsAt(time.Now())))
		<-v.keys.sem
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%v, want ErrUnavailable", err)
		}
	})
}

func TestConcurrentVerify(t *testing.T) {
	g := newGateway(t)
	priv := g.addKey("k1")
	v := g.verifier(nil)
	tok := signEdDSA(t, priv, "k1", TokenType, claimsAt(time.Now()))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := g.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for 20 concurrent first requests, want 1", n)
	}
	// Waiting for that fetch did not count as fetching for an unknown key
	// id: a key published now is still fetched at once.
	k2 := g.addKey("k2")
	if _, err := v.Verify(context.Background(), signEdDSA(t, k2, "k2", TokenType, claimsAt(time.Now()))); err != nil {
		t.Errorf("a new key after the first fetch: %v", err)
	}
}

func TestMiddleware(t *testing.T) {
	g := newGateway(t)
	priv := g.addKey("k1")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := FromContext(r.Context())
		if !ok {
			http.Error(w, "no claims", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, c.Subject+" "+strings.Join(c.Roles, ","))
	})
	app := httptest.NewServer(g.verifier(nil).Middleware(handler))
	defer app.Close()
	// An upstream whose gateway's key set cannot be fetched.
	down := newGateway(t)
	down.addKey("k1")
	down.setDown(true)
	downApp := httptest.NewServer(down.verifier(nil).Middleware(handler))
	defer downApp.Close()
	valid := signEdDSA(t, priv, "k1", TokenType, claimsAt(time.Now()))

	tests := []struct {
		name    string
		url     string
		headers []string
		status  int
		body    string
	}{
		{"valid", app.URL, []string{valid}, http.StatusOK, "u-123 admin,user"},
		{"missing", app.URL, nil, http.StatusUnauthorized, ""},
		{"empty", app.URL, []string{""}, http.StatusUnauthorized, ""},
		{"two", app.URL, []string{valid, valid}, http.StatusUnauthorized, ""},
		{"invalid", app.URL, []string{valid + "x"}, http.StatusUnauthorized, ""},
		{"key set unavailable", downApp.URL, []string{valid}, http.StatusServiceUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.url, nil)
			for _, h := range tt.headers {
				req.Header.Add(Header, h)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			if tt.body != "" && string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if tt.status != http.StatusOK && strings.Contains(string(body), "u-123") {
				t.Errorf("refusal reveals claims: %q", body)
			}
		})
	}
}

func TestFromContextEmpty(t *testing.T) {
	if c, ok := FromContext(context.Background()); ok || c != nil {
		t.Errorf("FromContext of a bare context = %v, %v", c, ok)
	}
}

func TestKeySetAlgorithmsOnly(t *testing.T) {
	// Every algorithm but EdDSA is refused before a key is looked up, so a
	// refused token never makes the verifier fetch.
	g := newGateway(t)
	g.addKey("k1")
	v := g.verifier(nil)
	good := claimsAt(time.Now())
	for _, alg := range []string{"none", "HS256", "HS512", "RS256", "ES256", "PS256", "EdDSA "} {
		t.Run(alg, func(t *testing.T) {
			tok := rawToken(t, map[string]any{"alg": alg, "kid": "k1", "typ": TokenType}, good, []byte("sig"))
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v, want ErrInvalid", err)
			}
		})
	}
	if n := g.fetches.Load(); n != 0 {
		t.Errorf("%d fetches, want none", n)
	}
}
