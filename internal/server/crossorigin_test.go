package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestCSRFThroughGateway: unsafe requests made with the session cookie
// pass only from the route's own origin, a trusted one, or with a token
// bound to the session; API keys are exempt; the token reaches pages in
// their forms and scripts in a readable cookie.
func TestCSRFThroughGateway(t *testing.T) {
	var mu sync.Mutex
	var got []string // method and path of what reached the upstream
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/page") {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, `<html><body><form method="post" action="/app/save"><input name="a"></form>`+
				`<form method="get" action="/app/search"></form><form method="post" action="https://elsewhere.example/x"></form></body></html>`)
		}
	}))
	t.Cleanup(up.Close)
	g := startLoginGatewayWith(t, "", loginAccounts, func(string) string {
		return fmt.Sprintf(`  - name: app
    path: /app
    policy: authenticated
    accept: [session, apikey]
    upstreams: [%q]
    csrf: {trusted_origins: ["https://partner.example"], inject_forms: true, token_cookie: true}
`, up.URL)
	})
	g.addUser(t, "carol")
	b := g.newBrowser(t)
	b.mustLogin("carol")
	reached := func(what string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range got {
			if s == what {
				return true
			}
		}
		return false
	}

	// A page served to the signed-in user carries the token in its POST
	// form only, and in a readable cookie.
	page := b.page("/app/page")
	if page.status != http.StatusOK {
		t.Fatalf("page: %s", page)
	}
	tok := formValue(t, page.body, "moat_csrf")
	if tok == "" || strings.Count(page.body, `name="moat_csrf"`) != 1 {
		t.Fatalf("the POST form to this origin, and only it, should carry the token:\n%s", page.body)
	}
	var jar string
	for _, c := range b.c.Jar.Cookies(&url.URL{Scheme: "https", Host: strings.TrimPrefix(g.base, "https://"), Path: "/"}) {
		if c.Name == "__Host-moat_csrf_token" {
			jar = c.Value
		}
	}
	if jar == "" {
		t.Fatal("no readable token cookie was set")
	}

	form := "a=1"
	cases := []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": g.base}, form, 200},
		{"cross site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, form, 403},
		{"same site, another origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.localhost"}, form, 403},
		{"trusted origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://partner.example"}, form, 200},
		{"origin only, foreign", map[string]string{"Origin": "https://evil.example"}, form, 403},
		{"origin null", map[string]string{"Origin": "null"}, form, 403},
		{"neither header, no token", nil, form, 403},
		{"neither header, token in the form", nil, form + "&moat_csrf=" + url.QueryEscape(tok), 200},
		{"neither header, token from the cookie in the header", map[string]string{"X-Moat-CSRF-Token": jar}, form, 200},
		{"neither header, forged token", map[string]string{"X-Moat-CSRF-Token": strings.Repeat("A", len(jar))}, form, 403},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
			for k, v := range tc.hdr {
				h[k] = v
			}
			path := fmt.Sprintf("/app/save%d", i)
			r := b.do("POST", path, h, strings.NewReader(tc.body))
			if r.status != tc.want {
				t.Fatalf("%s, want %d", r, tc.want)
			}
			if reached("POST "+path) != (tc.want == 200) {
				t.Errorf("upstream reached: %v", !(tc.want == 200))
			}
		})
	}
	if g.events.find("request.denied", "csrf.cross_site") == nil || g.events.find("request.denied", "csrf.token_missing") == nil {
		t.Error("refusals were not recorded as csrf.* events")
	}
	// A token is bound to its session: another user's is refused.
	other := g.newBrowser(t)
	g.addUser(t, "dave")
	other.mustLogin("dave")
	if r := other.do("POST", "/app/x", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Moat-CSRF-Token": jar}, strings.NewReader(form)); r.status != 403 {
		t.Errorf("another session's token: %s, want 403", r)
	}
	if r := b.do("GET", "/app/read", map[string]string{"Sec-Fetch-Site": "cross-site"}, nil); r.status != 200 {
		t.Errorf("a cross-site GET (safe method): %s, want 200", r)
	}
}

// TestCORSThroughGateway: Moat answers preflights itself, before
// authentication, with the route's policy only; actual responses carry the
// allowed origin (never another, never "*" with credentials) and Vary:
// Origin, and the upstream's own CORS headers are replaced.
func TestCORSThroughGateway(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*") // what a careless app sends
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf(`  - name: api
    path: /api
    policy: public
    upstreams: [%q]
    cors:
      allowed_origins: ["https://app.example", "https://*.tenant.example"]
      allowed_methods: [GET, POST, PUT]
      allowed_headers: [Content-Type, Authorization]
      allow_credentials: true
      max_age: 10m
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	preflight := func(origin, method, headers string) *http.Response {
		hdr := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			hdr["Access-Control-Request-Headers"] = headers
		}
		resp, _ := g.do(t, "OPTIONS", "/api/x", hdr)
		return resp
	}
	for _, tc := range []struct {
		origin, method, headers string
		want                    int
	}{
		{"https://app.example", "PUT", "content-type", 204},
		{"https://a.tenant.example", "POST", "", 204},
		{"https://evil.example", "POST", "", 403},
		{"https://app.example.evil.example", "POST", "", 403},
		{"https://a.b.tenant.example", "POST", "", 403},
		{"http://app.example", "POST", "", 403},
		{"null", "POST", "", 403},
		{"https://app.example", "DELETE", "", 403},
		{"https://app.example", "POST", "x-secret", 403},
	} {
		resp := preflight(tc.origin, tc.method, tc.headers)
		if resp.StatusCode != tc.want {
			t.Errorf("preflight from %s for %s %s: %d, want %d", tc.origin, tc.method, tc.headers, resp.StatusCode, tc.want)
			continue
		}
		acao := resp.Header.Get("Access-Control-Allow-Origin")
		if tc.want == 204 && (acao != tc.origin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Max-Age") != "600") {
			t.Errorf("preflight from %s: ACAO %q, credentials %q, max-age %q", tc.origin, acao, resp.Header.Get("Access-Control-Allow-Credentials"), resp.Header.Get("Access-Control-Max-Age"))
		}
		if tc.want == 403 && acao != "" {
			t.Errorf("refused preflight from %s carries ACAO %q", tc.origin, acao)
		}
	}
	for origin, want := range map[string]string{"https://app.example": "https://app.example", "https://evil.example": "", "": ""} {
		hdr := map[string]string{}
		if origin != "" {
			hdr["Origin"] = origin
		}
		resp, _ := g.do(t, "GET", "/api/x", hdr)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("GET from %q: ACAO %q, want %q (the upstream's \"*\" must not pass)", origin, got, want)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("GET from %q: no Vary: Origin", origin)
		}
	}
}

// TestUpstreamCookiesHardened: a route's cookies section adds the
// attributes an upstream's cookies lack, and keeps those it set.
func TestUpstreamCookiesHardened(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "sid=abc; Path=/")
		w.Header().Add("Set-Cookie", "theme=dark; SameSite=Strict")
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf(`  - name: hardened
    path: /h
    policy: public
    upstreams: [%[1]q]
    cookies: {secure: true, http_only: true, same_site: lax}
  - name: plain
    path: /
    policy: public
    upstreams: [%[1]q]
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	resp, _ := g.do(t, "GET", "/h/x", nil)
	want := []string{"sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax", "theme=dark; SameSite=Strict; Secure; HttpOnly"}
	if got := resp.Header.Values("Set-Cookie"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hardened route: Set-Cookie %q, want %q", got, want)
	}
	resp, _ = g.do(t, "GET", "/x", nil)
	if got := resp.Header.Values("Set-Cookie"); got[0] != "sid=abc; Path=/" {
		t.Errorf("route without a cookies section changed %q", got)
	}
}
