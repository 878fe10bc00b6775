package cors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAllowOrigin checks the origin matcher on arbitrary strings against
// an independent reading of the policy: an origin is allowed only when it
// is listed exactly or is "https://" + one lower-case DNS label +
// ".example.org", and the answer never reflects anything else.
func FuzzAllowOrigin(f *testing.F) {
	p := newPolicy(f, Config{
		AllowedOrigins:   []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"},
		AllowCredentials: true,
	})
	for _, s := range []string{
		"https://app.example.com", "https://a.example.org", "https://example.org", "https://a.b.example.org",
		"https://example.org.evil.com", "https://evil.com.example.org.attacker.net", "null", "", "*",
		"https://a.example.org:443", "http://localhost:3000", "https://.example.org", "https://a..example.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		got := p.AllowOrigin(origin)
		want := origin == "https://app.example.com" || origin == "http://localhost:3000"
		if label, ok := strings.CutPrefix(origin, "https://"); ok {
			if label, ok = strings.CutSuffix(label, ".example.org"); ok && label != "" && len(label) <= 63 &&
				strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" {
				want = true
			}
		}
		if got != want {
			t.Fatalf("AllowOrigin(%q) = %v, want %v", origin, got, want)
		}

		// Whatever the header, Decorate answers with the origin itself
		// or nothing.
		r := httptest.NewRequest("GET", "https://api.example.com/", nil)
		r.Header["Origin"] = []string{origin}
		w := httptest.NewRecorder()
		p.Decorate(w, r)
		acao := w.Header().Values("Access-Control-Allow-Origin")
		switch {
		case got && (len(acao) != 1 || acao[0] != origin):
			t.Fatalf("allowed %q answered with %q", origin, acao)
		case !got && len(acao) != 0:
			t.Fatalf("disallowed %q answered with %q", origin, acao)
		}
	})
}

// FuzzCheckPreflight drives the preflight check with arbitrary request
// fields: it never panics, and an allowed preflight only ever asks for
// listed methods and headers.
func FuzzCheckPreflight(f *testing.F) {
	p := newPolicy(f, Config{
		AllowedOrigins: []string{"https://app.example.com"},
		AllowedMethods: []string{"GET", "PUT"},
		AllowedHeaders: []string{"Content-Type", "X-Api-Key"},
	})
	f.Add("https://app.example.com", "PUT", "content-type, x-api-key")
	f.Add("https://app.example.com", "DELETE", "")
	f.Add("https://app.example.com", "GET", ",,, ,accept")
	f.Add("null", "GET", "authorization")
	f.Fuzz(func(t *testing.T, origin, method, headers string) {
		r := httptest.NewRequest("OPTIONS", "https://api.example.com/", nil)
		r.Header = http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}, "Access-Control-Request-Headers": {headers}}
		if p.CheckPreflight(r) != nil {
			return
		}
		if origin != "https://app.example.com" || (method != "GET" && method != "PUT") {
			t.Fatalf("allowed origin %q method %q", origin, method)
		}
		for h := range strings.SplitSeq(headers, ",") {
			switch strings.ToLower(strings.TrimSpace(h)) {
			case "", "content-type", "x-api-key", "accept", "accept-language", "content-language":
			default:
				t.Fatalf("allowed header %q", h)
			}
		}
	})
}
