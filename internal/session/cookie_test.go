package session

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/store"
)

func setCookieOf(t *testing.T, rec *httptest.ResponseRecorder) (*http.Cookie, string) {
	t.Helper()
	lines := rec.Result().Header.Values("Set-Cookie")
	if len(lines) != 1 {
		t.Fatalf("%d Set-Cookie headers, want 1: %q", len(lines), lines)
	}
	c, err := http.ParseSetCookie(lines[0])
	if err != nil {
		t.Fatalf("parsing Set-Cookie %q: %v", lines[0], err)
	}
	return c, lines[0]
}

func TestSetCookie(t *testing.T) {
	tok, _, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		tok      string
		expires  time.Duration
		wantAge  time.Duration // 0: the cookie is cleared
		wantBody string
	}{
		{"session", tok, 12 * time.Hour, 12 * time.Hour, tok},
		{"short", tok, 90 * time.Second, 90 * time.Second, tok},
		{"expired", tok, -time.Second, 0, ""},
		{"malformed token", "not a token", time.Hour, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			SetCookie(rec, tc.tok, &store.Session{ExpiresAt: time.Now().Add(tc.expires)})
			c, raw := setCookieOf(t, rec)
			if c.Name != CookieName || c.Value != tc.wantBody {
				t.Errorf("cookie %s=%q, want %s=%q", c.Name, c.Value, CookieName, tc.wantBody)
			}
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("attributes of %q: want Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain", raw)
			}
			if strings.Contains(strings.ToLower(raw), "domain") {
				t.Errorf("%q names a domain", raw)
			}
			if tc.wantAge == 0 {
				if c.MaxAge >= 0 {
					t.Errorf("Max-Age %d, want the cookie deleted (Max-Age=0)", c.MaxAge)
				}
				return
			}
			age := time.Duration(c.MaxAge) * time.Second
			if age > tc.wantAge || age < tc.wantAge-2*time.Second {
				t.Errorf("Max-Age %v, want just under %v", age, tc.wantAge)
			}
		})
	}
}

func TestClearCookie(t *testing.T) {
	rec := httptest.NewRecorder()
	ClearCookie(rec)
	c, raw := setCookieOf(t, rec)
	if c.Name != CookieName || c.Value != "" || c.MaxAge >= 0 || !strings.Contains(raw, "Max-Age=0") {
		t.Errorf("ClearCookie sent %q, want %s emptied with Max-Age=0", raw, CookieName)
	}
	if !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Errorf("ClearCookie sent %q: a __Host- cookie is only replaced with Secure, Path=/ and no Domain", raw)
	}
}

func TestTokenFromRequest(t *testing.T) {
	tok, _, _ := newToken()
	tok2, _, _ := newToken()
	for _, tc := range []struct {
		name    string
		cookies []string // Cookie header lines
		want    string
	}{
		{"none", nil, ""},
		{"only", []string{CookieName + "=" + tok}, tok},
		{"among others", []string{"a=1; " + CookieName + "=" + tok + "; b=2"}, tok},
		{"no spaces", []string{"a=1;" + CookieName + "=" + tok + ";b=2"}, tok},
		{"second header line", []string{"a=1", CookieName + "=" + tok}, tok},
		{"duplicate", []string{CookieName + "=" + tok + "; " + CookieName + "=" + tok2}, ""},
		{"duplicate same value", []string{CookieName + "=" + tok + "; " + CookieName + "=" + tok}, ""},
		{"duplicate across lines", []string{CookieName + "=" + tok, CookieName + "=" + tok2}, ""},
		{"duplicate malformed", []string{CookieName + "=" + tok + "; " + CookieName + "=x"}, ""},
		{"duplicate without value", []string{CookieName + "=" + tok + "; " + CookieName}, ""},
		{"without prefix", []string{"moat_session=" + tok}, ""},
		{"other case", []string{"__host-moat_session=" + tok}, ""},
		{"quoted", []string{CookieName + `="` + tok + `"`}, ""},
		{"malformed", []string{CookieName + "=" + tok[:40]}, ""},
		{"padded", []string{CookieName + "=" + tok + "="}, ""},
		{"empty", []string{CookieName + "="}, ""},
		{"oversized header", []string{"a=" + strings.Repeat("x", maxCookieBytes) + "; " + CookieName + "=" + tok}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, l := range tc.cookies {
				r.Header.Add("Cookie", l)
			}
			if got := TokenFromRequest(r); got != tc.want {
				t.Errorf("TokenFromRequest = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTokenFromRequestAllocations(t *testing.T) {
	tok, _, _ := newToken()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "theme=dark; "+CookieName+"="+tok+"; lang=en")
	if n := testing.AllocsPerRun(100, func() { TokenFromRequest(r) }); n != 0 {
		t.Errorf("TokenFromRequest allocates %v times, want 0", n)
	}
}

// A browser-like client against a real TLS server: log in, use the session,
// log out.
func TestCookieRoundTrip(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, openStore(t, "alice").Sessions(), newClock(), Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		tok, s, err := m.Create(r.Context(), "alice", []string{"pwd"}, time.Time{})
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		SetCookie(w, tok, s)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Lookup(r.Context(), TokenFromRequest(r))
		switch {
		case errors.Is(err, ErrNoSession):
			http.Error(w, "log in", http.StatusUnauthorized)
		case err != nil:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, s.UserID)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Revoke(r.Context(), TokenFromRequest(r)); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		ClearCookie(w)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	client := srv.Client()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client.Jar = jar

	do := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	if code, _ := do("GET", "/me"); code != http.StatusUnauthorized {
		t.Errorf("before login: %d, want 401", code)
	}
	do("POST", "/login")
	u, _ := url.Parse(srv.URL)
	if n := len(jar.Cookies(u)); n != 1 {
		t.Fatalf("the client holds %d cookies after login, want 1", n)
	}
	stolen := jar.Cookies(u)[0].Value
	if code, body := do("GET", "/me"); code != http.StatusOK || body != "alice" {
		t.Errorf("after login: %d %q, want 200 alice", code, body)
	}
	do("POST", "/logout")
	if n := len(jar.Cookies(u)); n != 0 {
		t.Errorf("the client holds %d cookies after logout, want 0", n)
	}
	if code, _ := do("GET", "/me"); code != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", code)
	}
	// The cookie, replayed after logout, is worthless.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/me", nil)
	req.Header.Set("Cookie", CookieName+"="+stolen)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed cookie after logout: %d, want 401", resp.StatusCode)
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	tok, _, _ := newToken()
	for _, s := range []string{
		"",
		CookieName + "=" + tok,
		"a=b; " + CookieName + "=" + tok + "; c=d",
		CookieName + "=" + tok + "; " + CookieName + "=" + tok,
		CookieName + `="` + tok + `"`,
		";;;==; " + CookieName,
		"\t" + CookieName + "=" + tok + "\t;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		got := TokenFromRequest(r)
		if got == "" {
			return
		}
		if !wellFormed(got) {
			t.Fatalf("returned a malformed token %q", got)
		}
		if _, ok := parseToken(got); !ok {
			t.Fatalf("returned a token that does not parse: %q", got)
		}
		n, value := 0, ""
		for _, pair := range strings.Split(header, ";") {
			name, v, _ := strings.Cut(strings.Trim(pair, " \t"), "=")
			if name == CookieName {
				n++
				value = v
			}
		}
		if n != 1 || value != got {
			t.Fatalf("returned %q from %q, which names the cookie %d times (value %q)", got, header, n, value)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	tok, _, _ := newToken()
	for _, s := range []string{"", tok, tok + "=", tok[:42] + "B", strings.Repeat("_", TokenLen), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, ok := parseToken(s)
		if ok != wellFormed(s) {
			t.Fatalf("parseToken ok %v, wellFormed %v for %q", ok, wellFormed(s), s)
		}
		if !ok {
			return
		}
		raw, err := tokenEncoding.DecodeString(s)
		if err != nil || len(raw) != tokenBytes || tokenEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted %q, which is not the one spelling of 32 bytes", s)
		}
	})
}

func TestCookiesStrict(t *testing.T) {
	tok := strings.Repeat("A", 43)
	for _, tc := range []struct {
		c    Cookies
		want http.SameSite
	}{
		{Cookies{}, http.SameSiteLaxMode},
		{Cookies{SameSite: http.SameSiteStrictMode}, http.SameSiteStrictMode},
		{Cookies{SameSite: http.SameSiteNoneMode}, http.SameSiteLaxMode}, // never None
	} {
		rec := httptest.NewRecorder()
		tc.c.Set(rec, tok, &store.Session{ExpiresAt: time.Now().Add(time.Hour)})
		c, raw := setCookieOf(t, rec)
		if c.SameSite != tc.want || !c.Secure || !c.HttpOnly {
			t.Errorf("%+v wrote %q, want SameSite %v, Secure, HttpOnly", tc.c, raw, tc.want)
		}
	}
}
