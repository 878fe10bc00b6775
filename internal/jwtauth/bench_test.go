package jwtauth

import (
	"context"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/testclock"
)

// benchVerify measures Verify of a typical access token signed by s,
// with the token cache on or off. Besides wall time it reports the CPU
// time of the process per verification (cpu-ns/op), steadier than wall
// time on a busy machine.
func benchVerify(b *testing.B, s signer, cached bool) {
	clock := testclock.New(t0)
	p := newIDP(b, s.publicJWK())
	entries := -1
	if cached {
		entries = 0
	}
	v := newTestVerifier(b, clock, p, Options{
		Issuers: []Issuer{{
			Issuer: p.srv.URL, JWKSURL: p.srv.URL + "/jwks", Audiences: []string{"api"},
			Algorithms: []string{string(s.alg)}, RolesClaim: "realm_access.roles", Claims: []string{"email"},
		}},
		CacheEntries: entries,
	})
	tok := sign(b, s, typicalClaims(p.srv.URL), nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// typicalClaims are the claims of an access token such as issuers send.
func typicalClaims(iss string) map[string]any {
	return claimsAt(iss, t0, map[string]any{
		"scope":              "orders:read orders:write",
		"realm_access":       map[string]any{"roles": []string{"admin", "user"}},
		"email":              "alice@example.com",
		"preferred_username": "alice",
		"jti":                "4f6c1a0e-8d2b-4c55-9f0e-1f2a3b4c5d6e",
		"client_id":          "orders-service",
	})
}

func reportCPU(b *testing.B, start interface{ Nanoseconds() int64 }) {
	if end := processCPU(); end > 0 {
		b.ReportMetric(float64(end.Nanoseconds()-start.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkVerifyES256(b *testing.B)  { benchVerify(b, newEC(b, "k", jose.ES256), false) }
func BenchmarkVerifyEdDSA(b *testing.B)  { benchVerify(b, newEd(b, "k"), false) }
func BenchmarkVerifyRS256(b *testing.B)  { benchVerify(b, newRSA(b, "k", jose.RS256), false) }
func BenchmarkVerifyCached(b *testing.B) { benchVerify(b, newEC(b, "k", jose.ES256), true) }

// BenchmarkSignatureOnly measures go-jose's signature check alone on a
// parsed token, the floor under the uncached Verify benchmarks.
func BenchmarkSignatureOnly(b *testing.B) {
	for _, s := range []signer{newEC(b, "k", jose.ES256), newEd(b, "k"), newRSA(b, "k", jose.RS256)} {
		b.Run(string(s.alg), func(b *testing.B) {
			jws, err := jose.ParseSignedCompact(sign(b, s, typicalClaims("https://issuer.example"), nil), []jose.SignatureAlgorithm{s.alg})
			if err != nil {
				b.Fatal(err)
			}
			pub := s.priv.Public()
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if _, err := jws.Verify(pub); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}
