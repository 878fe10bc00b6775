package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func BenchmarkDecorate(b *testing.B) {
	p := newPolicy(b, Config{
		AllowedOrigins:   []string{"https://app.example.com", "https://*.example.org"},
		ExposedHeaders:   []string{"X-Total"},
		AllowCredentials: true,
	})
	for _, origin := range []string{"https://app.example.com", "https://a.example.org", "https://evil.test"} {
		b.Run(origin, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://api.example.com/", nil)
			r.Header.Set("Origin", origin)
			h := http.Header{}
			w := headerWriter{h}
			b.ReportAllocs()
			for b.Loop() {
				clear(h)
				p.Decorate(w, r)
			}
		})
	}
}

type headerWriter struct{ h http.Header }

func (w headerWriter) Header() http.Header       { return w.h }
func (headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (headerWriter) WriteHeader(int)             {}
