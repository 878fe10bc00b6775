package portal

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

func testCSRF(t testing.TB) *CSRF {
	t.Helper()
	c, err := NewCSRF(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue returns a CSRF cookie and its token, as a first page view sets them.
func issue(t testing.TB, c *CSRF) (*http.Cookie, string) {
	t.Helper()
	w := httptest.NewRecorder()
	tok := c.Token(w, httptest.NewRequest(http.MethodGet, "https://moat.example/.moat/login", nil))
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Token set %d cookies, want 1", len(cookies))
	}
	return cookies[0], tok
}

func TestNewCSRFKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewCSRF(make([]byte, n)); err == nil {
			t.Errorf("accepted a %d-byte key", n)
		}
	}
	key := bytes.Repeat([]byte{1}, 32)
	c, err := NewCSRF(key)
	if err != nil {
		t.Fatal(err)
	}
	ck, tok := issue(t, c)
	key[0] = 9 // the caller's slice must not matter afterwards
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(ck)
	if c.Token(httptest.NewRecorder(), r) != tok {
		t.Errorf("changing the caller's key slice changed the tokens")
	}
}

func TestCSRFToken(t *testing.T) {
	c := testCSRF(t)
	ck, tok := issue(t, c)
	if ck.Name != CSRFCookie || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("cookie %+v is not a __Host- cookie that is Secure, HttpOnly, SameSite=Strict, Path=/", ck)
	}
	if len(tok) != 43 {
		t.Errorf("token %q is not base64url of 32 bytes", tok)
	}

	t.Run("existing cookie is kept", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(ck)
		w := httptest.NewRecorder()
		if got := c.Token(w, r); got != tok {
			t.Errorf("token changed for the same cookie")
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("cookie set again")
		}
	})
	t.Run("one id per response", func(t *testing.T) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		a, b := c.Token(w, r), c.Token(w, r)
		if a != b || len(w.Result().Cookies()) != 1 {
			t.Errorf("two calls made two ids: %q %q, %d cookies", a, b, len(w.Result().Cookies()))
		}
	})
	t.Run("malformed cookie is replaced", func(t *testing.T) {
		for _, v := range []string{"", "short", strings.Repeat("A", 42), strings.Repeat("!", 43), strings.Repeat("A", 44)} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(&http.Cookie{Name: CSRFCookie, Value: v})
			w := httptest.NewRecorder()
			c.Token(w, r)
			if len(w.Result().Cookies()) != 1 {
				t.Errorf("cookie %q was not replaced", v)
			}
		}
	})
	t.Run("browsers get different ids", func(t *testing.T) {
		_, other := issue(t, c)
		if other == tok {
			t.Errorf("two browsers got the same token")
		}
	})
	t.Run("key matters", func(t *testing.T) {
		c2, _ := NewCSRF(bytes.Repeat([]byte{0x43}, 32))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(ck)
		if c2.Token(httptest.NewRecorder(), r) == tok {
			t.Errorf("a different key gave the same token")
		}
	})
}

func TestCSRFCheck(t *testing.T) {
	c := testCSRF(t)
	ck, tok := issue(t, c)
	otherCk, otherTok := issue(t, c)
	const origin = "https://moat.example"

	type req struct {
		method string
		site   []string // Sec-Fetch-Site values
		origin []string
		cookie *http.Cookie
		form   string // urlencoded body
		header []string
		ctype  string
		host   string
	}
	form := func(tok string) string { return url.Values{FieldCSRF: {tok}, "username": {"alice"}}.Encode() }
	tests := []struct {
		name string
		req  req
		want error
	}{
		{"same-origin form", req{site: []string{"same-origin"}, cookie: ck, form: form(tok)}, nil},
		{"user initiated", req{site: []string{"none"}, cookie: ck, form: form(tok)}, nil},
		{"header token", req{site: []string{"same-origin"}, cookie: ck, header: []string{tok}, ctype: "application/json"}, nil},
		{"old browser, own origin", req{origin: []string{origin}, cookie: ck, form: form(tok)}, nil},
		{"old browser, own origin in capitals", req{origin: []string{"https://MOAT.example"}, cookie: ck, form: form(tok)}, nil},
		{"no browser headers", req{cookie: ck, form: form(tok)}, nil},
		{"GET passes", req{method: http.MethodGet, site: []string{"cross-site"}}, nil},
		{"HEAD passes", req{method: http.MethodHead, site: []string{"cross-site"}}, nil},
		{"OPTIONS passes", req{method: http.MethodOptions}, nil},

		{"cross-site", req{site: []string{"cross-site"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"same-site", req{site: []string{"same-site"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"unknown fetch site", req{site: []string{"same-galaxy"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"two fetch sites", req{site: []string{"same-origin", "cross-site"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"cross-site PUT", req{method: http.MethodPut, site: []string{"cross-site"}, cookie: ck, header: []string{tok}}, ErrCSRFOrigin},
		{"cross-site DELETE", req{method: http.MethodDelete, site: []string{"cross-site"}, cookie: ck, header: []string{tok}}, ErrCSRFOrigin},
		{"other origin", req{origin: []string{"https://evil.example"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"http origin", req{origin: []string{"http://moat.example"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"other port", req{origin: []string{"https://moat.example:8443"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"suffix origin", req{origin: []string{"https://moat.example.evil.example"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"null origin", req{origin: []string{"null"}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"two origins", req{origin: []string{origin, origin}, cookie: ck, form: form(tok)}, ErrCSRFOrigin},
		{"empty host", req{origin: []string{"https://"}, host: "-", cookie: ck, form: form(tok)}, ErrCSRFOrigin},

		{"no cookie", req{site: []string{"same-origin"}, form: form(tok)}, ErrCSRFToken},
		{"malformed cookie", req{site: []string{"same-origin"}, cookie: &http.Cookie{Name: CSRFCookie, Value: "x"}, form: form(tok)}, ErrCSRFToken},
		{"no token", req{site: []string{"same-origin"}, cookie: ck, form: "username=alice"}, ErrCSRFToken},
		{"empty token", req{site: []string{"same-origin"}, cookie: ck, form: form("")}, ErrCSRFToken},
		{"wrong token", req{site: []string{"same-origin"}, cookie: ck, form: form(otherTok)}, ErrCSRFToken},
		{"token of another cookie", req{site: []string{"same-origin"}, cookie: otherCk, form: form(tok)}, ErrCSRFToken},
		{"token with a byte changed", req{site: []string{"same-origin"}, cookie: ck, form: form(flip(tok))}, ErrCSRFToken},
		{"token not canonical", req{site: []string{"same-origin"}, cookie: ck, form: form(lastBits(tok))}, ErrCSRFToken},
		{"token with padding", req{site: []string{"same-origin"}, cookie: ck, form: form(tok + "=")}, ErrCSRFToken},
		{"cookie value as token", req{site: []string{"same-origin"}, cookie: ck, form: form(ck.Value)}, ErrCSRFToken},
		{"two form tokens", req{site: []string{"same-origin"}, cookie: ck, form: form(tok) + "&csrf=" + tok}, ErrCSRFToken},
		{"wrong header token", req{site: []string{"same-origin"}, cookie: ck, header: []string{otherTok}}, ErrCSRFToken},
		{"two header tokens", req{site: []string{"same-origin"}, cookie: ck, header: []string{tok, tok}}, ErrCSRFToken},
		{"token in the query only", req{site: []string{"same-origin"}, cookie: ck, form: "username=alice", host: "q"}, ErrCSRFToken},
		{"multipart body", req{site: []string{"same-origin"}, cookie: ck, form: "--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + tok + "\r\n--b--\r\n", ctype: "multipart/form-data; boundary=b"}, ErrCSRFToken},
		{"oversized form", req{site: []string{"same-origin"}, cookie: ck, form: form(tok) + "&pad=" + strings.Repeat("a", maxCSRFFormBytes)}, ErrCSRFToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.req.method
			if m == "" {
				m = http.MethodPost
			}
			target := origin + PathLogin
			if tt.req.host == "q" {
				target += "?csrf=" + tok
			}
			r := httptest.NewRequest(m, target, strings.NewReader(tt.req.form))
			if tt.req.host == "-" {
				r.Host = ""
			}
			ct := tt.req.ctype
			if ct == "" && tt.req.form != "" {
				ct = "application/x-www-form-urlencoded"
			}
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			r.Header["Sec-Fetch-Site"] = tt.req.site
			r.Header["Origin"] = tt.req.origin
			r.Header[http.CanonicalHeaderKey(CSRFHeader)] = tt.req.header
			if tt.req.cookie != nil {
				r.AddCookie(tt.req.cookie)
			}
			err := c.Check(r)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if err == nil && tt.req.form != "" && r.PostForm.Get("username") != "alice" {
				t.Errorf("form fields not available after Check")
			}
		})
	}
}

// lastBits changes the unused low bits of a token's last character, which
// a lenient decoder would ignore.
func lastBits(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[i^1])
}

// flip changes one character of a token, keeping it valid base64url.
func flip(tok string) string {
	b := []byte(tok)
	if b[10] == 'A' {
		b[10] = 'B'
	} else {
		b[10] = 'A'
	}
	return string(b)
}

// TestCSRFRoundTrip runs a browser-like client against a real TLS server:
// a page view sets the cookie and embeds the token, the form post with it
// passes, and forged posts are refused.
func TestCSRFRoundTrip(t *testing.T) {
	c := testCSRF(t)
	p := testPages(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathLogin, func(w http.ResponseWriter, r *http.Request) {
		p.Render(w, r, http.StatusOK, PageLogin, LoginData{CSRF: c.Token(w, r)})
	})
	mux.Handle("POST "+PathLogin, c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "welcome "+r.PostForm.Get(FieldUsername))
	})))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Transport: srv.Client().Transport, Jar: jar}

	res, err := client.Get(srv.URL + PathLogin)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no token in the page")
	}
	tok := string(m[1])

	post := func(t *testing.T, client *http.Client, origin, site, tok string) (int, string) {
		t.Helper()
		body := url.Values{FieldCSRF: {tok}, FieldUsername: {"alice"}}.Encode()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+PathLogin, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	t.Run("same origin with token", func(t *testing.T) {
		code, body := post(t, client, srv.URL, "same-origin", tok)
		if code != http.StatusOK || body != "welcome alice" {
			t.Errorf("got %d %q", code, body)
		}
	})
	t.Run("cross-site with token", func(t *testing.T) {
		if code, _ := post(t, client, "https://evil.example", "cross-site", tok); code != http.StatusForbidden {
			t.Errorf("got %d, want 403", code)
		}
	})
	t.Run("same origin without token", func(t *testing.T) {
		code, body := post(t, client, srv.URL, "same-origin", "")
		if code != http.StatusForbidden || !strings.Contains(body, "another site") {
			t.Errorf("got %d %q, want the 403 page", code, body)
		}
	})
	t.Run("token without its cookie", func(t *testing.T) {
		fresh := &http.Client{Transport: srv.Client().Transport} // no jar: the attacker's own client cannot send the victim's cookie
		if code, _ := post(t, fresh, srv.URL, "", tok); code != http.StatusForbidden {
			t.Errorf("got %d, want 403", code)
		}
	})
}

func BenchmarkCSRFCheck(b *testing.B) {
	c := testCSRF(b)
	ck, tok := issue(b, c)
	r := httptest.NewRequest(http.MethodPost, "https://moat.example/x", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set(CSRFHeader, tok)
	r.AddCookie(ck)
	for b.Loop() {
		if err := c.Check(r); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCSRFCheck feeds Check arbitrary cookies, tokens and fetch metadata.
// It must never accept a request unless the token is the one Token issues
// for the cookie and the request comes from the portal's own origin.
func FuzzCSRFCheck(f *testing.F) {
	c := testCSRF(f)
	// A fixed id, so that saved failures reproduce.
	ck := &http.Cookie{Name: CSRFCookie, Value: b64.EncodeToString(bytes.Repeat([]byte{7}, csrfIDSize))}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(ck)
	tok := c.Token(httptest.NewRecorder(), r)
	f.Add(ck.Value, tok, "same-origin", "", true)
	f.Add(ck.Value, tok, "", "https://moat.example", false)
	f.Add(ck.Value, tok+"A", "cross-site", "https://evil.example", true)
	f.Add("x", "y", "none", "null", false)
	f.Fuzz(func(t *testing.T, cookie, token, site, origin string, inHeader bool) {
		body := ""
		if !inHeader {
			body = url.Values{FieldCSRF: {token}}.Encode()
		}
		r := httptest.NewRequest(http.MethodPost, "https://moat.example"+PathLogin, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if inHeader {
			r.Header.Set(CSRFHeader, token)
		}
		if site != "" {
			r.Header.Set("Sec-Fetch-Site", site)
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		r.Header.Set("Cookie", CSRFCookie+"="+cookie)
		err := c.Check(r)
		if err != nil {
			if !errors.Is(err, ErrCSRFOrigin) && !errors.Is(err, ErrCSRFToken) {
				t.Fatalf("Check returned an error that is neither sentinel: %v", err)
			}
			return
		}
		want := c.Token(httptest.NewRecorder(), r)
		if token != want || requestCSRFID(r) == nil {
			t.Fatalf("accepted token %q for cookie %q", token, cookie)
		}
		if site != "" && site != "same-origin" && site != "none" {
			t.Fatalf("accepted Sec-Fetch-Site %q", site)
		}
		if site == "" && origin != "" && !strings.EqualFold(origin, "https://moat.example") {
			t.Fatalf("accepted Origin %q", origin)
		}
	})
}
