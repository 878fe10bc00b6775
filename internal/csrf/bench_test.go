package csrf

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func BenchmarkCheck(b *testing.B) {
	p := newProtection(b, Config{TrustedOrigins: []string{"https://partner.example.net"}})
	tok := p.Token(session)
	cases := []struct {
		name    string
		headers [][2]string
	}{
		{"fetch-metadata", [][2]string{{"Sec-Fetch-Site", "same-origin"}}},
		{"origin", [][2]string{{"Origin", "https://" + host}}},
		{"token-header", [][2]string{{DefaultHeader, tok}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest("POST", "https://"+host+"/", nil)
			for _, h := range c.headers {
				r.Header.Set(h[0], h[1])
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Check(r, session); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFormInjector(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("<!doctype html><html><head><title>x</title><style>p{color:red}</style><script>var a = 1 < 2;</script></head><body>")
	for sb.Len() < 100<<10 {
		sb.WriteString(`<div class="row"><p title='a > b'>Some text &amp; more text</p><!-- comment --><form method="post" action="/save"><input name="a" value="b"></form></div>`)
	}
	doc := []byte(sb.String())
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		f := NewFormInjector(io.Discard, page, "moat_csrf", "TOKEN")
		for i := 0; i < len(doc); i += 32 << 10 {
			_, _ = f.Write(doc[i:min(i+32<<10, len(doc))])
		}
	}
}
