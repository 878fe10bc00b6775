package assertion

import (
	"context"
	"testing"
	"time"
)

// BenchmarkVerify is the cost of checking one assertion with the key set
// cached: what an upstream pays per request.
func BenchmarkVerify(b *testing.B) {
	g := newGateway(b)
	priv := g.addKey("k1")
	v := g.verifier(nil)
	tok := signEdDSA(b, priv, "k1", TokenType, claimsAt(time.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
