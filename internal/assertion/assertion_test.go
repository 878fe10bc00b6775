package assertion

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	moatassertion "github.com/moatgw/moat/assertion"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/testclock"
)

func TestSignVerifies(t *testing.T) {
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	c := testclock.New(now)
	in := newInstance(t, st, c)

	apiKey := &authn.Principal{
		Subject: "svc-billing", Name: "billing export", Method: authn.MethodAPIKey,
		Scopes: []string{"orders:read"}, Issuer: authn.LocalIssuer, KeyID: "ak-42",
	}
	token := &authn.Principal{
		Subject: "ext|77", Method: authn.MethodJWT, Roles: []string{"user"},
		Scopes: []string{"read", "write"}, Issuer: "https://idp.example.test",
		Claims: map[string]any{"email": "bob@example.test", "tenant": "t1"},
	}
	tests := []struct {
		name  string
		p     *authn.Principal
		check func(t *testing.T, cl *moatassertion.Claims)
	}{
		{"session", alice(now), func(t *testing.T, cl *moatassertion.Claims) {
			want := moatassertion.Claims{
				Issuer: testIssuer, Subject: "u-alice", Audience: "orders", Method: "session", Name: "alice",
				IdP: "moat", SessionID: "sess-1",
			}
			if cl.Issuer != want.Issuer || cl.Subject != want.Subject || cl.Audience != want.Audience ||
				cl.Method != want.Method || cl.Name != want.Name || cl.IdP != want.IdP || cl.SessionID != want.SessionID {
				t.Errorf("claims %+v, want %+v", cl, want)
			}
			if !slices.Equal(cl.Roles, []string{"admin", "user"}) || !slices.Equal(cl.AMR, []string{"pwd", "otp"}) {
				t.Errorf("roles %v, amr %v", cl.Roles, cl.AMR)
			}
			if !cl.AuthTime.Equal(now.Add(-10*time.Minute)) || !cl.IssuedAt.Equal(now) || !cl.Expiry.Equal(now.Add(time.Minute)) {
				t.Errorf("auth_time %v, iat %v, exp %v", cl.AuthTime, cl.IssuedAt, cl.Expiry)
			}
			if cl.KeyID != "" || cl.RequestID != "" || cl.ID == "" {
				t.Errorf("key id %q, request id %q, jti %q", cl.KeyID, cl.RequestID, cl.ID)
			}
		}},
		{"api key", apiKey, func(t *testing.T, cl *moatassertion.Claims) {
			if cl.Method != "apikey" || cl.KeyID != "ak-42" || !slices.Equal(cl.Scopes, []string{"orders:read"}) {
				t.Errorf("claims %+v", cl)
			}
			if !cl.AuthTime.IsZero() || cl.SessionID != "" || len(cl.Roles) != 0 || len(cl.AMR) != 0 {
				t.Errorf("claims the principal does not have: %+v", cl)
			}
		}},
		{"jwt with passed-on claims", token, func(t *testing.T, cl *moatassertion.Claims) {
			if cl.IdP != "https://idp.example.test" || cl.Extra["email"] != "bob@example.test" || cl.Extra["tenant"] != "t1" {
				t.Errorf("claims %+v", cl)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := sign(t, in.s, tt.p, "orders", "req-1")
			h := part(t, tok, 0)
			if h["alg"] != "EdDSA" || h["typ"] != "moat-assertion+jwt" || h["kid"] == "" || len(h) != 3 {
				t.Errorf("header %v", h)
			}
			cl, err := in.verify("orders", tok)
			if err != nil {
				t.Fatalf("public verifier: %v", err)
			}
			tt.check(t, cl)
		})
	}
}

func TestSignRefused(t *testing.T) {
	in := newInstance(t, openStore(t), testclock.New(time.Now()))
	tests := []struct {
		name     string
		p        *authn.Principal
		audience string
	}{
		{"no principal", nil, "orders"},
		{"no subject", &authn.Principal{Method: authn.MethodSession}, "orders"},
		{"no audience", alice(time.Now()), ""},
		{"claims that are not JSON", &authn.Principal{Subject: "u", Claims: map[string]any{"c": make(chan int)}}, "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := in.s.Sign(tt.p, tt.audience, "r"); err == nil {
				t.Fatalf("Sign = %q, want an error", tok)
			}
		})
	}
}

// TestVerifierRefuses runs assertions that Moat did not sign as they are,
// or not for this upstream, or not now, through the public verifier.
func TestVerifierRefuses(t *testing.T) {
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	in := newInstance(t, st, testclock.New(now))
	past := newInstance(t, st, testclock.New(now.Add(-2*time.Minute)))
	future := newInstance(t, st, testclock.New(now.Add(2*time.Minute)))
	p := alice(now)
	tok := sign(t, in.s, p, "orders", "")
	parts := strings.Split(tok, ".")
	header := part(t, tok, 0)
	pub := pubKey(t, in.s, kid(t, tok))

	withHeader := func(k string, v any) map[string]any {
		h := map[string]any{}
		for kk, vv := range header {
			h[kk] = vv
		}
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	hs256 := func(secret []byte) string {
		unsigned := reencode(t, withHeader("alg", "HS256"), tok, "")
		unsigned = strings.TrimSuffix(unsigned, ".")
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(unsigned))
		return unsigned + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[5] == 'A' {
			b[5] = 'B'
		} else {
			b[5] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name     string
		token    string
		audience string
	}{
		{"tampered claims", parts[0] + "." + flip(parts[1]) + "." + parts[2], "orders"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), "orders"},
		{"claims of another assertion", parts[0] + "." + strings.Split(sign(t, in.s, p, "billing", ""), ".")[1] + "." + parts[2], "orders"},
		{"wrong audience", tok, "billing"},
		{"expired", sign(t, past.s, p, "orders", ""), "orders"},
		{"not yet valid", sign(t, future.s, p, "orders", ""), "orders"},
		{"alg none", reencode(t, withHeader("alg", "none"), tok, ""), "orders"},
		{"alg none keeping the signature", reencode(t, withHeader("alg", "none"), tok, parts[2]), "orders"},
		{"HS256 keyed with the public key", hs256(pub), "orders"},
		{"HS256 keyed with the JWK x", hs256([]byte(base64.RawURLEncoding.EncodeToString(pub))), "orders"},
		{"unknown kid", reencode(t, withHeader("kid", "no-such-key"), tok, parts[2]), "orders"},
		{"missing kid", reencode(t, withHeader("kid", nil), tok, parts[2]), "orders"},
		{"missing typ", reencode(t, withHeader("typ", nil), tok, parts[2]), "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := in.verify(tt.audience, tt.token)
			if err == nil {
				t.Fatalf("accepted: %+v", cl)
			}
			if !errors.Is(err, moatassertion.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
	// The untouched token passes, so the refusals above are the changes'.
	if _, err := in.verify("orders", tok); err != nil {
		t.Fatalf("the original token: %v", err)
	}
}

// pubKey is the public key kid of s.
func pubKey(t *testing.T, s *Signer, kid string) []byte {
	t.Helper()
	for _, k := range s.set.Load().keys {
		if k.id == kid {
			return k.priv[32:]
		}
	}
	t.Fatalf("no key %q", kid)
	return nil
}

func TestLifetime(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		name     string
		lifetime time.Duration
		want     time.Duration
	}{
		{"default", 0, time.Minute},
		{"five minutes", 5 * time.Minute, 5 * time.Minute},
		{"the most", 10 * time.Minute, 10 * time.Minute},
	}
	st := openStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, st, testclock.New(now), func(o *Options) { o.Lifetime = tt.lifetime })
			cl, err := in.verify("orders", sign(t, in.s, alice(now), "orders", ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := cl.Expiry.Sub(cl.IssuedAt); got != tt.want {
				t.Errorf("exp - iat = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOptionsRefused(t *testing.T) {
	st := openStore(t)
	tests := []struct {
		name string
		o    Options
	}{
		{"no key store", Options{Issuer: testIssuer}},
		{"no issuer", Options{Keys: st.SigningKeys()}},
		{"lifetime too long", Options{Keys: st.SigningKeys(), Issuer: testIssuer, Lifetime: 11 * time.Minute}},
		{"negative lifetime", Options{Keys: st.SigningKeys(), Issuer: testIssuer, Lifetime: -time.Second}},
		{"rotation too often", Options{Keys: st.SigningKeys(), Issuer: testIssuer, Rotation: 30 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(context.Background(), tt.o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	keys, err := st.SigningKeys().List(context.Background(), KeyUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("refused options stored %d keys", len(keys))
	}
}

func TestCache(t *testing.T) {
	st := openStore(t)
	now := time.Now().Truncate(time.Second)

	t.Run("reused for the same principal and route", func(t *testing.T) {
		c := testclock.New(now)
		in := newInstance(t, st, c)
		a := sign(t, in.s, alice(now), "orders", "req-1")
		b := sign(t, in.s, alice(now), "orders", "req-2")
		if a != b {
			t.Fatal("a second request of the same principal to the same route was signed again")
		}
		if _, ok := part(t, a, 1)["rid"]; ok {
			t.Error("a cached assertion carries a request id")
		}
		c.Advance(4 * time.Second)
		if sign(t, in.s, alice(now), "orders", "req-3") != a {
			t.Error("not reused within CacheTTL")
		}
		c.Advance(time.Second)
		if sign(t, in.s, alice(now), "orders", "req-4") == a {
			t.Error("reused after CacheTTL")
		}
	})
	t.Run("never for another route or principal", func(t *testing.T) {
		in := newInstance(t, st, testclock.New(now))
		base := alice(now)
		first := sign(t, in.s, base, "orders", "")
		changes := []struct {
			name   string
			route  string
			change func(p *authn.Principal)
		}{
			{"route", "billing", nil},
			{"subject", "orders", func(p *authn.Principal) { p.Subject = "u-bob" }},
			{"a role more", "orders", func(p *authn.Principal) { p.Roles = append(p.Roles, "auditor") }},
			{"roles split differently", "orders", func(p *authn.Principal) { p.Roles = []string{"admin,user"} }},
			{"scopes", "orders", func(p *authn.Principal) { p.Scopes = []string{"write"} }},
			{"a factor more", "orders", func(p *authn.Principal) { p.AuthMethods = append(p.AuthMethods, authn.AMRWebAuthn) }},
			{"auth time", "orders", func(p *authn.Principal) { p.AuthTime = now }},
			{"session", "orders", func(p *authn.Principal) { p.SessionID = "sess-2" }},
			{"method", "orders", func(p *authn.Principal) { p.Method = authn.MethodJWT }},
			{"name", "orders", func(p *authn.Principal) { p.Name = "Alice" }},
			{"issuer", "orders", func(p *authn.Principal) { p.Issuer = "https://idp.example.test" }},
			{"key id", "orders", func(p *authn.Principal) { p.KeyID = "ak-1" }},
			{"claims", "orders", func(p *authn.Principal) { p.Claims = map[string]any{"tenant": "t2"} }},
		}
		for _, ch := range changes {
			t.Run(ch.name, func(t *testing.T) {
				p := alice(now)
				if ch.change != nil {
					ch.change(p)
				}
				tok := sign(t, in.s, p, ch.route, "")
				if tok == first {
					t.Fatal("got the assertion of another principal or route")
				}
				cl, err := in.verify(ch.route, tok)
				if err != nil {
					t.Fatal(err)
				}
				if cl.Subject != p.Subject || !slices.Equal(cl.Roles, p.Roles) || cl.SessionID != p.SessionID {
					t.Errorf("claims %+v do not describe %+v", cl, p)
				}
			})
		}
	})
	t.Run("not once half the lifetime has passed", func(t *testing.T) {
		c := testclock.New(now)
		in := newInstance(t, st, c, func(o *Options) { o.Lifetime = 20 * time.Second; o.CacheTTL = time.Minute })
		a := sign(t, in.s, alice(now), "orders", "")
		c.Advance(9 * time.Second)
		if sign(t, in.s, alice(now), "orders", "") != a {
			t.Error("not reused with more than half its lifetime left")
		}
		c.Advance(time.Second)
		if sign(t, in.s, alice(now), "orders", "") == a {
			t.Error("reused with half its lifetime gone")
		}
	})
	t.Run("not after a rotation", func(t *testing.T) {
		c := testclock.New(now)
		in := newInstance(t, st, c)
		a := sign(t, in.s, alice(now), "orders", "")
		c.Advance(time.Second)
		if err := in.s.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		b := sign(t, in.s, alice(now), "orders", "")
		if a == b || kid(t, a) == kid(t, b) {
			t.Error("an assertion of the previous key was reused after a rotation")
		}
	})
	t.Run("off: every request signed, with its request id", func(t *testing.T) {
		in := newInstance(t, st, testclock.New(now), func(o *Options) { o.CacheTTL = -1 })
		a := sign(t, in.s, alice(now), "orders", "req-1")
		b := sign(t, in.s, alice(now), "orders", "req-2")
		if a == b {
			t.Fatal("reused with the cache off")
		}
		for tok, rid := range map[string]string{a: "req-1", b: "req-2"} {
			cl, err := in.verify("orders", tok)
			if err != nil {
				t.Fatal(err)
			}
			if cl.RequestID != rid {
				t.Errorf("request id %q, want %q", cl.RequestID, rid)
			}
		}
		if part(t, a, 1)["jti"] == part(t, b, 1)["jti"] {
			t.Error("two assertions share a jti")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := testclock.New(now)
		in := newInstance(t, st, c)
		in.s.cacheMax = 50
		p := alice(now)
		size := func() int {
			in.s.cacheMu.RLock()
			defer in.s.cacheMu.RUnlock()
			return len(in.s.cache)
		}
		for i := range 60 {
			p.SessionID = fmt.Sprint("s", i)
			sign(t, in.s, p, "orders", "")
			if n := size(); n > 50 {
				t.Fatalf("%d cached assertions, want at most 50", n)
			}
		}
		// Stale entries make room before fresh ones are dropped.
		c.Advance(DefaultCacheTTL)
		p.SessionID = "fresh"
		fresh := sign(t, in.s, p, "orders", "")
		for i := range 49 {
			q := alice(now)
			q.SessionID = fmt.Sprint("t", i)
			sign(t, in.s, q, "orders", "")
		}
		if sign(t, in.s, p, "orders", "") != fresh {
			t.Error("a fresh assertion was dropped while stale ones were kept")
		}
	})
}

func TestConcurrentSign(t *testing.T) {
	in := newInstance(t, openStore(t), testclock.New(time.Now()), func(o *Options) { o.Now = nil })
	v := in.verifier("orders")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 8 {
				p := alice(time.Now())
				p.Subject = "u" + string(rune('0'+(i+j)%4))
				tok, err := in.s.Sign(p, "orders", "")
				if err == nil {
					_, err = v.Verify(context.Background(), tok)
				}
				errs <- err
			}
		})
	}
	wg.Go(func() {
		if err := in.s.Rotate(context.Background()); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
