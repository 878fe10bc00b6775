package cors

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newPolicy(t testing.TB, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; nil means valid
	}{
		{name: "exact and pattern", cfg: Config{AllowedOrigins: []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000", "https://[::1]:8443"}, AllowCredentials: true}},
		{name: "any without credentials", cfg: Config{AllowedOrigins: []string{"*"}}},
		{name: "null without credentials", cfg: Config{AllowedOrigins: []string{"null"}}},
		{name: "extension origin", cfg: Config{AllowedOrigins: []string{"chrome-extension://abcdef"}}},
		{name: "full config", cfg: Config{AllowedOrigins: []string{"https://a.example"}, AllowedMethods: []string{"GET", "PUT"}, AllowedHeaders: []string{"Content-Type", "X-Api"}, ExposedHeaders: []string{"X-Total"}, MaxAge: time.Hour}},
		{name: "no origins", cfg: Config{}, wantErr: []string{"at least one"}},
		{name: "any with credentials", cfg: Config{AllowedOrigins: []string{"*"}, AllowCredentials: true}, wantErr: []string{"credentials"}},
		{name: "null with credentials", cfg: Config{AllowedOrigins: []string{"null"}, AllowCredentials: true}, wantErr: []string{"credentials"}},
		{name: "path", cfg: Config{AllowedOrigins: []string{"https://a.example/"}}, wantErr: []string{"no path"}},
		{name: "no scheme", cfg: Config{AllowedOrigins: []string{"a.example"}}, wantErr: []string{"not an origin"}},
		{name: "user info", cfg: Config{AllowedOrigins: []string{"https://u@a.example"}}, wantErr: []string{"user"}},
		{name: "bad port", cfg: Config{AllowedOrigins: []string{"https://a.example:70000", "https://a.example:", "https://a.example:08"}}, wantErr: []string{"origin 0", "origin 1", "origin 2"}},
		{name: "wildcard inside a label", cfg: Config{AllowedOrigins: []string{"https://api-*.example.com"}}, wantErr: []string{"leftmost label"}},
		{name: "wildcard not leftmost", cfg: Config{AllowedOrigins: []string{"https://a.*.example.com"}}, wantErr: []string{"leftmost label"}},
		{name: "two wildcards", cfg: Config{AllowedOrigins: []string{"https://*.*.example.com"}}, wantErr: []string{"only one"}},
		{name: "wildcard on a TLD", cfg: Config{AllowedOrigins: []string{"https://*.com"}}, wantErr: []string{"two labels"}},
		{name: "wildcard scheme", cfg: Config{AllowedOrigins: []string{"*://a.example.com"}}, wantErr: []string{"not an origin"}},
		{name: "wildcard port", cfg: Config{AllowedOrigins: []string{"https://*.example.com:*"}}, wantErr: []string{"port"}},
		{name: "wildcard alone in a host", cfg: Config{AllowedOrigins: []string{"https://*"}}, wantErr: []string{"leftmost label"}},
		{name: "wildcard method", cfg: Config{AllowedOrigins: []string{"https://a.example"}, AllowedMethods: []string{"*"}}, wantErr: []string{"method"}},
		{name: "bad header", cfg: Config{AllowedOrigins: []string{"https://a.example"}, AllowedHeaders: []string{"X Y", "*"}, ExposedHeaders: []string{"a:b"}}, wantErr: []string{"allowed header 0", "allowed header 1", "exposed header 0"}},
		{name: "max age", cfg: Config{AllowedOrigins: []string{"https://a.example"}, MaxAge: 48 * time.Hour}, wantErr: []string{"max age"}},
		{name: "every problem at once", cfg: Config{AllowedOrigins: []string{"*", "https://*.com"}, AllowCredentials: true, MaxAge: -1},
			wantErr: []string{"origin 0", "origin 1", "max age"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New = %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error with %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestAllowOrigin(t *testing.T) {
	p := newPolicy(t, Config{
		AllowedOrigins:   []string{"https://app.example.com", "HTTPS://Admin.Example.com:443", "https://*.example.org", "https://*.dev.example.net:8443", "http://localhost:3000"},
		AllowCredentials: true,
	})
	tests := []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"https://admin.example.com", true}, // normalized at compilation
		{"https://a.example.org", true},
		{"https://xn--bcher-kva.example.org", true},
		{"https://a-b-1.example.org", true},
		{"https://a.dev.example.net:8443", true},
		{"http://localhost:3000", true},

		{"", false},
		{"null", false},
		{"*", false},
		{"https://example.org", false},              // the wildcard needs a label
		{"https://.example.org", false},             // an empty label
		{"https://a.b.example.org", false},          // one label only
		{"https://example.org.evil.com", false},     // suffix trick
		{"https://app.example.com.evil.com", false}, // exact origin as a prefix
		{"https://evil.com.example.org.attacker.net", false},
		{"https://evilexample.org", false},
		{"https://evil.com/.example.org", false},
		{"https://evil.com?.example.org", false},
		{"https://evil.com#.example.org", false},
		{"https://evil@a.example.org", false},
		{"https://a.example.org:443", false},  // browsers never send the default port
		{"https://a.example.org:8443", false}, // port mismatch
		{"https://a.dev.example.net", false},  // port missing
		{"https://a.dev.example.net:844", false},
		{"http://a.example.org", false},     // scheme mismatch
		{"http://app.example.com", false},   // scheme mismatch
		{"https://localhost:3000", false},   // scheme mismatch
		{"http://localhost:3001", false},    // port mismatch
		{"http://localhost", false},         // port missing
		{"https://APP.example.com", false},  // browsers send lower case
		{"https://A.example.org", false},    // browsers send lower case
		{"https://app.example.com/", false}, // not an origin
		{" https://app.example.com", false},
		{"https://a_b.example.org", false},
		{"https://" + strings.Repeat("a", 64) + ".example.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			if got := p.AllowOrigin(tt.origin); got != tt.want {
				t.Fatalf("AllowOrigin(%q) = %v, want %v", tt.origin, got, tt.want)
			}
			if got := p.Credentialed(tt.origin); got != tt.want {
				t.Fatalf("Credentialed(%q) = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}

	anyP := newPolicy(t, Config{AllowedOrigins: []string{"*"}})
	if !anyP.AllowOrigin("https://whatever.test") || anyP.AllowOrigin("null") || anyP.Credentialed("https://whatever.test") {
		t.Error("a policy of any origin: want any origin but null, and no credentials")
	}
	nullP := newPolicy(t, Config{AllowedOrigins: []string{"null", "*"}})
	if !nullP.AllowOrigin("null") {
		t.Error("null listed literally, but not allowed")
	}
}

func preflight(origin, method, headers string) *http.Request {
	r := httptest.NewRequest("OPTIONS", "https://api.example.com/items", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if method != "" {
		r.Header.Set("Access-Control-Request-Method", method)
	}
	if headers != "" {
		r.Header.Set("Access-Control-Request-Headers", headers)
	}
	return r
}

func TestPreflight(t *testing.T) {
	cred := newPolicy(t, Config{
		AllowedOrigins:   []string{"https://app.example.com", "https://*.example.org"},
		AllowedMethods:   []string{"GET", "POST", "PUT", "DELETE"},
		AllowedHeaders:   []string{"Content-Type", "X-Request-Id"},
		ExposedHeaders:   []string{"X-Total"},
		AllowCredentials: true,
		MaxAge:           10 * time.Minute,
	})
	anyP := newPolicy(t, Config{AllowedOrigins: []string{"*"}})
	tests := []struct {
		name    string
		p       *Policy
		r       *http.Request
		handled bool
		rule    string            // "" means allowed
		want    map[string]string // response fields; "" means absent
	}{
		{name: "allowed", p: cred, r: preflight("https://app.example.com", "PUT", "content-type,x-request-id"), handled: true, want: map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.com",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, POST, PUT, DELETE",
			"Access-Control-Allow-Headers":     "Content-Type, X-Request-Id",
			"Access-Control-Max-Age":           "600",
			"Access-Control-Expose-Headers":    "",
			"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		}},
		{name: "pattern origin", p: cred, r: preflight("https://shop.example.org", "GET", ""), handled: true, want: map[string]string{
			"Access-Control-Allow-Origin": "https://shop.example.org",
		}},
		{name: "header names in any case, spaces", p: cred, r: preflight("https://app.example.com", "POST", " Content-Type , X-REQUEST-ID,"), handled: true},
		{name: "safelisted headers need no listing", p: cred, r: preflight("https://app.example.com", "POST", "accept,accept-language,content-language"), handled: true},
		{name: "any origin", p: anyP, r: preflight("https://x.test", "POST", ""), handled: true, want: map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Allow-Methods":     "GET, HEAD, POST",
			"Access-Control-Allow-Headers":     "",
			"Access-Control-Max-Age":           "",
		}},
		{name: "disallowed origin", p: cred, r: preflight("https://evil.test", "GET", ""), handled: true, rule: RuleOrigin},
		{name: "suffix trick", p: cred, r: preflight("https://example.org.evil.test", "GET", ""), handled: true, rule: RuleOrigin},
		{name: "null origin", p: cred, r: preflight("null", "GET", ""), handled: true, rule: RuleOrigin},
		{name: "null origin, any policy", p: anyP, r: preflight("null", "GET", ""), handled: true, rule: RuleOrigin},
		{name: "disallowed method", p: cred, r: preflight("https://app.example.com", "PATCH", ""), handled: true, rule: RuleMethod},
		{name: "method case matters", p: cred, r: preflight("https://app.example.com", "put", ""), handled: true, rule: RuleMethod},
		{name: "disallowed header", p: cred, r: preflight("https://app.example.com", "GET", "content-type,authorization"), handled: true, rule: RuleHeaders},
		{name: "any policy, custom header", p: anyP, r: preflight("https://x.test", "GET", "x-custom"), handled: true, rule: RuleHeaders},
		{name: "too many headers", p: cred, r: preflight("https://app.example.com", "GET", strings.Repeat("accept,", 65)), handled: true, rule: RuleHeaders},
		{name: "two origins", p: cred, r: func() *http.Request {
			r := preflight("https://app.example.com", "GET", "")
			r.Header.Add("Origin", "https://app.example.com")
			return r
		}(), handled: true, rule: RuleOrigin},
		{name: "not a preflight: no request method", p: cred, r: preflight("https://app.example.com", "", "")},
		{name: "not a preflight: no origin", p: cred, r: preflight("", "GET", "")},
		{name: "not a preflight: GET", p: cred, r: func() *http.Request {
			r := preflight("https://app.example.com", "GET", "")
			r.Method = "GET"
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			w.Header().Set("Access-Control-Allow-Origin", "https://stale.test") // must not survive
			handled, err := tt.p.Preflight(w, tt.r)
			if handled != tt.handled {
				t.Fatalf("handled = %v, want %v", handled, tt.handled)
			}
			if !handled {
				if err != nil || w.Code != 200 || w.Body.Len() != 0 {
					t.Fatalf("not handled but err %v, status %d, body %q", err, w.Code, w.Body)
				}
				return
			}
			h := w.Result().Header
			if got := h.Values("Vary"); len(got) != 1 || got[0] != "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" {
				t.Errorf("Vary %q, want Origin and the two request fields once", got)
			}
			if tt.rule != "" {
				var ce *Error
				if !errors.As(err, &ce) || ce.Rule != tt.rule {
					t.Fatalf("err = %v, want rule %s", err, tt.rule)
				}
				if w.Code != http.StatusForbidden {
					t.Errorf("status %d, want 403", w.Code)
				}
				for k := range h {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("refused preflight carries %s: %q", k, h.Get(k))
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want allowed", err)
			}
			if w.Code != http.StatusNoContent {
				t.Errorf("status %d, want 204", w.Code)
			}
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
				if n := len(h.Values(k)); v != "" && n != 1 {
					t.Errorf("%s sent %d times", k, n)
				}
			}
		})
	}
}

func TestDecorate(t *testing.T) {
	cred := newPolicy(t, Config{
		AllowedOrigins:   []string{"https://app.example.com", "https://*.example.org"},
		ExposedHeaders:   []string{"X-Total", "ETag"},
		AllowCredentials: true,
	})
	anyP := newPolicy(t, Config{AllowedOrigins: []string{"*"}})
	tests := []struct {
		name     string
		p        *Policy
		origin   []string
		upstream [][2]string // response fields before Decorate
		want     map[string]string
		vary     []string // every Vary line
	}{
		{name: "allowed", p: cred, origin: []string{"https://app.example.com"}, want: map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.com",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "X-Total, ETag",
		}, vary: []string{"Origin"}},
		{name: "pattern", p: cred, origin: []string{"https://a.example.org"}, want: map[string]string{
			"Access-Control-Allow-Origin": "https://a.example.org",
		}, vary: []string{"Origin"}},
		{name: "disallowed still varies", p: cred, origin: []string{"https://evil.test"}, want: map[string]string{
			"Access-Control-Allow-Origin":      "",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Expose-Headers":    "",
		}, vary: []string{"Origin"}},
		{name: "no origin still varies", p: cred, want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}, vary: []string{"Origin"}},
		{name: "two origins", p: cred, origin: []string{"https://app.example.com", "https://app.example.com"}, want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}, vary: []string{"Origin"}},
		{name: "upstream fields replaced", p: cred, origin: []string{"https://evil.test"}, upstream: [][2]string{
			{"Access-Control-Allow-Origin", "*"},
			{"Access-Control-Allow-Credentials", "true"},
			{"access-control-allow-methods", "DELETE"},
		}, want: map[string]string{
			"Access-Control-Allow-Origin":      "",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Allow-Methods":     "",
		}, vary: []string{"Origin"}},
		{name: "upstream reflection replaced", p: cred, origin: []string{"https://app.example.com"}, upstream: [][2]string{
			{"Access-Control-Allow-Origin", "https://evil.test"},
		}, want: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example.com",
		}, vary: []string{"Origin"}},
		{name: "upstream Vary kept, Origin not doubled", p: cred, origin: []string{"https://app.example.com"}, upstream: [][2]string{
			{"Vary", "Accept-Encoding, origin"},
		}, vary: []string{"Accept-Encoding, origin"}},
		{name: "upstream Vary extended", p: cred, origin: []string{"https://app.example.com"}, upstream: [][2]string{
			{"Vary", "Accept-Encoding"},
		}, vary: []string{"Accept-Encoding", "Origin"}},
		{name: "Vary star left alone", p: cred, upstream: [][2]string{{"Vary", "*"}}, vary: []string{"*"}},
		{name: "any origin", p: anyP, origin: []string{"https://x.test"}, want: map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Credentials": "",
		}, vary: []string{"Origin"}},
		{name: "any origin, null", p: anyP, origin: []string{"null"}, want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}, vary: []string{"Origin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://api.example.com/items", nil)
			for _, o := range tt.origin {
				r.Header.Add("Origin", o)
			}
			w := httptest.NewRecorder()
			for _, f := range tt.upstream {
				w.Header()[f[0]] = append(w.Header()[f[0]], f[1]) // as sent, not canonicalized
			}
			tt.p.Decorate(w, r)
			// Twice, as a handler chain might: nothing doubles.
			tt.p.Decorate(w, r)
			h := w.Header()
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
				if v != "" && len(h.Values(k)) != 1 {
					t.Errorf("%s sent %d times", k, len(h.Values(k)))
				}
			}
			if got := h.Values("Vary"); strings.Join(got, "|") != strings.Join(tt.vary, "|") {
				t.Errorf("Vary %q, want %q", got, tt.vary)
			}
			//lint:ignore SA1008 the test sets this field non-canonically, as an upstream may
			if _, ok := h["access-control-allow-methods"]; ok {
				t.Error("non-canonical upstream field survived")
			}
		})
	}
}

func TestStripUpstream(t *testing.T) {
	h := http.Header{
		"Access-Control-Allow-Origin": {"*"},
		"Access-Control-Max-Age":      {"999"},
		"ACCESS-CONTROL-EXPOSE-X":     {"a"},
		"Access-Control":              {"kept: not the prefix"},
		"Content-Type":                {"text/plain"},
	}
	StripUpstream(h)
	if len(h) != 2 || h.Get("Content-Type") == "" || h["Access-Control"] == nil {
		t.Fatalf("after StripUpstream: %v", h)
	}
}

// TestRoundTrip puts Handler in front of an upstream that answers CORS on
// its own, too generously, and checks what a browser would see.
func TestRoundTrip(t *testing.T) {
	p := newPolicy(t, Config{
		AllowedOrigins:   []string{"https://app.example.com"},
		AllowedMethods:   []string{"GET", "POST", "DELETE"},
		AllowedHeaders:   []string{"Content-Type"},
		ExposedHeaders:   []string{"X-Total"},
		AllowCredentials: true,
		MaxAge:           time.Minute,
	})
	var upstreamSaw []string
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamSaw = append(upstreamSaw, r.Method)
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin")) // reflects anything
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("X-Total", "3")
		_, _ = io.WriteString(w, "items")
	})
	srv := httptest.NewServer(p.Handler(upstream))
	defer srv.Close()

	tests := []struct {
		name, method, origin, reqMethod string
		status                          int
		acao                            string
		upstream                        bool
	}{
		{"preflight allowed", "OPTIONS", "https://app.example.com", "DELETE", 204, "https://app.example.com", false},
		{"preflight refused", "OPTIONS", "https://evil.test", "DELETE", 403, "", false},
		{"preflight bad method", "OPTIONS", "https://app.example.com", "PUT", 403, "", false},
		{"actual allowed", "GET", "https://app.example.com", "", 200, "https://app.example.com", true},
		{"actual from another origin", "GET", "https://evil.test", "", 200, "", true},
		{"same-origin or no browser", "GET", "", "", 200, "", true},
		{"plain OPTIONS goes upstream", "OPTIONS", "https://app.example.com", "", 200, "https://app.example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstreamSaw = nil
			req, err := http.NewRequest(tt.method, srv.URL+"/items", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.reqMethod != "" {
				req.Header.Set("Access-Control-Request-Method", tt.reqMethod)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); strings.Join(got, ",") != tt.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.acao)
			}
			if tt.acao == "" && resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed without an allowed origin")
			}
			if tt.acao != "" && tt.method == "GET" && resp.Header.Get("Access-Control-Expose-Headers") != "X-Total" {
				t.Errorf("Expose-Headers %q", resp.Header.Get("Access-Control-Expose-Headers"))
			}
			if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %q lacks Origin", resp.Header.Values("Vary"))
			}
			if (len(upstreamSaw) > 0) != tt.upstream {
				t.Errorf("upstream saw %v, want reached=%v", upstreamSaw, tt.upstream)
			}
		})
	}
}
