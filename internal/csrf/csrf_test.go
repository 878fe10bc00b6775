package csrf

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

const host = "app.example.com"

var (
	testKey = bytes.Repeat([]byte{7}, KeySize)
	session = []byte("session-binding-one")
	other   = []byte("session-binding-two")
)

func newProtection(t testing.TB, cfg Config) *Protection {
	t.Helper()
	p, err := New(testKey, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func urlencoded(fields url.Values) (string, string) {
	return "application/x-www-form-urlencoded", fields.Encode()
}

func multipartBody(t testing.TB, fields [][2]string) (string, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), b.String()
}

func TestCheck(t *testing.T) {
	p := newProtection(t, Config{
		TrustedOrigins: []string{"https://partner.example.net", "https://Admin.Example.com:8443"},
		TrustOrigin:    func(o string) bool { return o == "https://cors.example.org" },
		MaxFormBytes:   2048,
	})
	good := p.Token(session)
	foreign := p.Token(other)
	tampered := []byte(good) // one character of the MAC changed, still base64url
	if tampered[50] == 'A' {
		tampered[50] = 'B'
	} else {
		tampered[50] = 'A'
	}
	goodForm := func() (string, string) { return urlencoded(url.Values{"moat_csrf": {good}, "name": {"x"}}) }

	type tc struct {
		name    string
		method  string
		host    string
		headers [][2]string
		form    func() (ctype, body string)
		binding []byte
		rule    string // "" means allowed
	}
	tests := []tc{
		// Exempt methods.
		{name: "GET cross-site", method: "GET", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.test"}}},
		{name: "HEAD cross-site", method: "HEAD", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}}},
		{name: "OPTIONS without anything", method: "OPTIONS"},

		// Fetch metadata.
		{name: "same-origin", headers: [][2]string{{"Sec-Fetch-Site", "same-origin"}}},
		{name: "same-origin with foreign Origin", headers: [][2]string{{"Sec-Fetch-Site", "same-origin"}, {"Origin", "https://evil.test"}}},
		{name: "none", headers: [][2]string{{"Sec-Fetch-Site", "none"}}},
		{name: "same-site without Origin", headers: [][2]string{{"Sec-Fetch-Site", "same-site"}}, rule: RuleCrossSite},
		{name: "same-site sibling", headers: [][2]string{{"Sec-Fetch-Site", "same-site"}, {"Origin", "https://blog.example.com"}}, rule: RuleCrossSite},
		{name: "cross-site", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.test"}}, rule: RuleCrossSite},
		{name: "cross-site with a valid token", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.test"}, {DefaultHeader, good}}, rule: RuleCrossSite},
		{name: "cross-site from trusted", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://partner.example.net"}}},
		{name: "same-site from trusted", headers: [][2]string{{"Sec-Fetch-Site", "same-site"}, {"Origin", "https://admin.example.com:8443"}}},
		{name: "cross-site from trust func", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://cors.example.org"}}},
		{name: "cross-site from trusted host, other port", headers: [][2]string{{"Sec-Fetch-Site", "same-site"}, {"Origin", "https://admin.example.com"}}, rule: RuleCrossSite},
		{name: "cross-site from trusted host, http", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "http://partner.example.net"}}, rule: RuleCrossSite},
		{name: "cross-site Origin null", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "null"}}, rule: RuleCrossSite},
		{name: "cross-site claiming own origin", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://" + host}}, rule: RuleCrossSite},
		{name: "unknown Sec-Fetch-Site", headers: [][2]string{{"Sec-Fetch-Site", "same-origin, none"}}, rule: RuleCrossSite},
		{name: "upper-case Sec-Fetch-Site value", headers: [][2]string{{"Sec-Fetch-Site", "Same-Origin"}}, rule: RuleCrossSite},
		{name: "two Sec-Fetch-Site", headers: [][2]string{{"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Site", "same-origin"}}, rule: RuleCrossSite},

		// Origin, for browsers without fetch metadata.
		{name: "own origin", headers: [][2]string{{"Origin", "https://" + host}}},
		{name: "own origin, Host upper case", host: "App.Example.COM", headers: [][2]string{{"Origin", "https://" + host}}},
		{name: "own origin, Host with default port", host: host + ":443", headers: [][2]string{{"Origin", "https://" + host}}},
		{name: "own origin with port", host: host + ":8443", headers: [][2]string{{"Origin", "https://" + host + ":8443"}}},
		{name: "port differs", headers: [][2]string{{"Origin", "https://" + host + ":8443"}}, rule: RuleOrigin},
		{name: "port missing", host: host + ":8443", headers: [][2]string{{"Origin", "https://" + host}}, rule: RuleOrigin},
		{name: "scheme http", headers: [][2]string{{"Origin", "http://" + host}}, rule: RuleOrigin},
		{name: "suffix host", headers: [][2]string{{"Origin", "https://" + host + ".evil.test"}}, rule: RuleOrigin},
		{name: "Origin null", headers: [][2]string{{"Origin", "null"}}, rule: RuleOrigin},
		{name: "Origin null with valid token", headers: [][2]string{{"Origin", "null"}, {DefaultHeader, good}}, rule: RuleOrigin},
		{name: "trusted Origin", headers: [][2]string{{"Origin", "https://partner.example.net"}}},
		{name: "trust func Origin", headers: [][2]string{{"Origin", "https://cors.example.org"}}},
		{name: "foreign Origin", headers: [][2]string{{"Origin", "https://evil.test"}}, rule: RuleOrigin},
		{name: "two Origin headers", headers: [][2]string{{"Origin", "https://" + host}, {"Origin", "https://" + host}}, rule: RuleOrigin},
		{name: "empty Host", host: "-", headers: [][2]string{{"Origin", "https://" + host}}, rule: RuleOrigin},

		// Token, for clients sending neither header.
		{name: "no headers, no token", rule: RuleTokenMissing},
		{name: "token in header", headers: [][2]string{{DefaultHeader, good}}},
		{name: "token in lower-case header", headers: [][2]string{{"x-moat-csrf-token", good}}},
		{name: "token of another session", headers: [][2]string{{DefaultHeader, foreign}}, rule: RuleTokenInvalid},
		{name: "tampered token", headers: [][2]string{{DefaultHeader, string(tampered)}}, rule: RuleTokenInvalid},
		{name: "truncated token", headers: [][2]string{{DefaultHeader, good[:TokenLen-1]}}, rule: RuleTokenInvalid},
		{name: "padded token", headers: [][2]string{{DefaultHeader, good + "="}}, rule: RuleTokenInvalid},
		{name: "not base64url", headers: [][2]string{{DefaultHeader, strings.Repeat("+", TokenLen)}}, rule: RuleTokenInvalid},
		{name: "empty token header", headers: [][2]string{{DefaultHeader, ""}}, rule: RuleTokenMissing},
		{name: "two token headers", headers: [][2]string{{DefaultHeader, good}, {DefaultHeader, good}}, rule: RuleTokenInvalid},
		{name: "no binding", headers: [][2]string{{DefaultHeader, good}}, binding: []byte{}, rule: RuleTokenInvalid},
		{name: "token in urlencoded form", form: goodForm},
		{name: "token in urlencoded form, last field", form: func() (string, string) {
			return "application/x-www-form-urlencoded", "a=1&b=2&moat_csrf=" + good
		}},
		{name: "token in multipart form", form: func() (string, string) {
			return multipartBody(t, [][2]string{{"moat_csrf", good}, {"file", "x"}})
		}},
		{name: "token of another session in form", form: func() (string, string) {
			return urlencoded(url.Values{"moat_csrf": {foreign}})
		}, rule: RuleTokenInvalid},
		{name: "token in text/plain body", form: func() (string, string) {
			return "text/plain", "moat_csrf=" + good
		}, rule: RuleTokenMissing},
		{name: "token in JSON body", form: func() (string, string) {
			return "application/json", `{"moat_csrf":"` + good + `"}`
		}, rule: RuleTokenMissing},
		{name: "form without the field", form: func() (string, string) {
			return urlencoded(url.Values{"name": {"x"}})
		}, rule: RuleTokenMissing},
		{name: "field after the cap", form: func() (string, string) {
			return "application/x-www-form-urlencoded", "pad=" + strings.Repeat("a", 3000) + "&moat_csrf=" + good
		}, rule: RuleTokenMissing},
		{name: "field cut by the cap", form: func() (string, string) {
			return "application/x-www-form-urlencoded", "pad=" + strings.Repeat("a", 2048-len("pad=&moat_csrf=")-10) + "&moat_csrf=" + good + "&more=" + strings.Repeat("b", 100)
		}, rule: RuleTokenMissing},
		{name: "multipart field cut by the cap", form: func() (string, string) {
			return multipartBody(t, [][2]string{{"pad", strings.Repeat("a", 1990)}, {"moat_csrf", good}})
		}, rule: RuleTokenMissing},
		{name: "header wins over form", headers: [][2]string{{DefaultHeader, foreign}}, form: goodForm, rule: RuleTokenInvalid},
		{name: "same-origin needs no token", headers: [][2]string{{"Sec-Fetch-Site", "same-origin"}}, binding: []byte{}},
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE", "TRACE", "PROPFIND"} {
		tests = append(tests, tc{name: m + " without anything", method: m, rule: RuleTokenMissing})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "POST"
			}
			var body io.Reader
			ctype := ""
			if tt.form != nil {
				var s string
				ctype, s = tt.form()
				body = strings.NewReader(s)
			}
			r := httptest.NewRequest(method, "https://"+host+"/do", body)
			switch tt.host {
			case "":
			case "-":
				r.Host = ""
			default:
				r.Host = tt.host
			}
			if ctype != "" {
				r.Header.Set("Content-Type", ctype)
			}
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			binding := session
			if tt.binding != nil {
				binding = tt.binding
			}
			err := p.Check(r, binding)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("Check = %v, want allowed", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Check = %v, want refusal by %s", err, tt.rule)
			}
			if ce.Rule != tt.rule {
				t.Fatalf("Check refused by %s (%v), want %s", ce.Rule, err, tt.rule)
			}
			if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), foreign) {
				t.Errorf("error %q contains a token", err)
			}
		})
	}
}

func TestCheckOrigin(t *testing.T) {
	p := newProtection(t, Config{TrustedOrigins: []string{"https://partner.example.net"}})
	tests := []struct {
		name    string
		headers [][2]string
		rule    string
	}{
		{name: "neither header", rule: ""},
		{name: "same-origin", headers: [][2]string{{"Sec-Fetch-Site", "same-origin"}}},
		{name: "cross-site", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.test"}}, rule: RuleCrossSite},
		{name: "trusted", headers: [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://partner.example.net"}}},
		{name: "foreign Origin", headers: [][2]string{{"Origin", "https://evil.test"}}, rule: RuleOrigin},
		{name: "own Origin", headers: [][2]string{{"Origin", "https://" + host}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "https://"+host+"/", strings.NewReader("a=b"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			err := p.CheckOrigin(r)
			var ce *Error
			switch {
			case tt.rule == "" && err != nil:
				t.Fatalf("CheckOrigin = %v, want allowed", err)
			case tt.rule != "" && (!errors.As(err, &ce) || ce.Rule != tt.rule):
				t.Fatalf("CheckOrigin = %v, want refusal by %s", err, tt.rule)
			}
		})
	}
}

// TestCheckRestoresBody checks that the upstream receives the same body
// after Check has looked for the form field, whether the body is shorter
// than the cap or longer.
func TestCheckRestoresBody(t *testing.T) {
	p := newProtection(t, Config{MaxFormBytes: 1024})
	tok := p.Token(session)
	mpType, mpBody := multipartBody(t, [][2]string{{"moat_csrf", tok}, {"big", strings.Repeat("z", 5000)}})
	tests := []struct {
		name, ctype, body string
		allowed           bool
	}{
		{"short urlencoded", "application/x-www-form-urlencoded", "moat_csrf=" + tok + "&a=1", true},
		{"long urlencoded", "application/x-www-form-urlencoded", "moat_csrf=" + tok + "&a=" + strings.Repeat("x", 10000), true},
		{"long urlencoded without field", "application/x-www-form-urlencoded", "a=" + strings.Repeat("x", 10000), false},
		{"long multipart", mpType, mpBody, true},
		{"exactly the cap", "application/x-www-form-urlencoded", "moat_csrf=" + tok + "&a=" + strings.Repeat("x", 1024-len("moat_csrf=&a=")-TokenLen), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "https://"+host+"/", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", tt.ctype)
			err := p.Check(r, session)
			if (err == nil) != tt.allowed {
				t.Fatalf("Check = %v, allowed want %v", err, tt.allowed)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.body {
				t.Fatalf("body after Check is %d bytes, want the original %d", len(got), len(tt.body))
			}
			if err := r.Body.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		cfg     Config
		wantErr []string // substrings; nil means valid
	}{
		{name: "zero config", key: testKey},
		{name: "trusted origins", key: testKey, cfg: Config{TrustedOrigins: []string{"https://a.example", "http://localhost:3000", "https://[::1]:8443", "HTTPS://B.Example:443"}}},
		{name: "custom names", key: testKey, cfg: Config{HeaderName: "X-XSRF-Token", FieldName: "_csrf", CookieName: "__Host-XSRF-TOKEN", MaxFormBytes: 4096}},
		{name: "short key", key: testKey[:16], wantErr: []string{"key is 16 bytes"}},
		{name: "origin with path", key: testKey, cfg: Config{TrustedOrigins: []string{"https://a.example/"}}, wantErr: []string{"no path"}},
		{name: "origin without scheme", key: testKey, cfg: Config{TrustedOrigins: []string{"a.example"}}, wantErr: []string{"not an origin"}},
		{name: "wildcard origin", key: testKey, cfg: Config{TrustedOrigins: []string{"https://*.example.com"}}, wantErr: []string{"wildcard"}},
		{name: "null origin", key: testKey, cfg: Config{TrustedOrigins: []string{"null"}}, wantErr: []string{"not an origin"}},
		{name: "ftp origin", key: testKey, cfg: Config{TrustedOrigins: []string{"ftp://a.example"}}, wantErr: []string{"scheme"}},
		{name: "bad port", key: testKey, cfg: Config{TrustedOrigins: []string{"https://a.example:99999", "https://a.example:0443"}}, wantErr: []string{"trusted origin 0", "trusted origin 1"}},
		{name: "user info", key: testKey, cfg: Config{TrustedOrigins: []string{"https://u@a.example"}}, wantErr: []string{"user"}},
		{name: "cookie without prefix", key: testKey, cfg: Config{CookieName: "csrf"}, wantErr: []string{"__Host-"}},
		{name: "bad header", key: testKey, cfg: Config{HeaderName: "X Token"}, wantErr: []string{"header name"}},
		{name: "field needing escapes", key: testKey, cfg: Config{FieldName: `a"b`}, wantErr: []string{"field name"}},
		{name: "tiny form cap", key: testKey, cfg: Config{MaxFormBytes: 10}, wantErr: []string{"max form bytes"}},
		{name: "every problem at once", key: nil, cfg: Config{CookieName: "x", FieldName: "<", TrustedOrigins: []string{"x"}},
			wantErr: []string{"key is 0 bytes", "__Host-", "field name", "trusted origin 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.key, tt.cfg)
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

func TestTrustedOriginsNormalized(t *testing.T) {
	p := newProtection(t, Config{TrustedOrigins: []string{"HTTPS://Partner.Example.NET:443"}})
	r := httptest.NewRequest("POST", "https://"+host+"/", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.Header.Set("Origin", "https://partner.example.net")
	if err := p.Check(r, session); err != nil {
		t.Fatalf("Check = %v, want the normalized trusted origin to pass", err)
	}
}

func TestTokens(t *testing.T) {
	p := newProtection(t, Config{})
	a, b := p.Token(session), p.Token(session)
	if a == b {
		t.Fatal("two tokens for one session are equal; each needs a fresh nonce")
	}
	for _, tok := range []string{a, b} {
		if len(tok) != TokenLen {
			t.Errorf("token %q is %d bytes, want %d", tok, len(tok), TokenLen)
		}
		if !p.Valid(session, tok) {
			t.Errorf("token not valid for its own session")
		}
		if p.Valid(other, tok) {
			t.Errorf("token valid for another session")
		}
	}
	// Another key makes other tokens.
	q, err := New(bytes.Repeat([]byte{8}, KeySize), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if q.Valid(session, a) {
		t.Error("token valid under another key")
	}
	// A binding that is a prefix of another does not share its tokens.
	if p.Valid(session[:len(session)-1], a) {
		t.Error("token valid for a prefix of its binding")
	}
}

func TestSetCookie(t *testing.T) {
	p := newProtection(t, Config{})
	tests := []struct {
		name   string
		cookie string // "" means none
		want   bool   // a Set-Cookie expected
	}{
		{"missing", "", true},
		{"current session", p.Token(session), false},
		{"other session", p.Token(other), true},
		{"garbage", "not-a-token", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://"+host+"/", nil)
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: DefaultCookie, Value: tt.cookie})
			}
			w := httptest.NewRecorder()
			p.SetCookie(w, r, session)
			cookies := w.Result().Cookies()
			if !tt.want {
				if len(cookies) != 0 {
					t.Fatalf("Set-Cookie %v, want none", w.Header().Values("Set-Cookie"))
				}
				return
			}
			if len(cookies) != 1 {
				t.Fatalf("%d cookies set, want 1", len(cookies))
			}
			c := cookies[0]
			if c.Name != DefaultCookie || !c.Secure || c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.Domain != "" {
				t.Errorf("cookie %+v: want %s, Secure, readable by scripts, Path=/, SameSite=Lax, host-only", c, DefaultCookie)
			}
			if !p.Valid(session, c.Value) {
				t.Error("cookie value is not a token of the session")
			}
		})
	}

	w := httptest.NewRecorder()
	p.DeleteCookie(w)
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].MaxAge >= 0 || c[0].Name != DefaultCookie {
		t.Errorf("DeleteCookie set %v, want an expired %s", w.Header().Values("Set-Cookie"), DefaultCookie)
	}
}

// TestRoundTrip runs Handler on a loopback server: a browser-like client
// gets the cookie on a GET, then posts with the token from it; forged
// requests are refused with 403 before the application sees them.
func TestRoundTrip(t *testing.T) {
	p := newProtection(t, Config{})
	var reached int
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" {
			reached++
		}
		p.SetCookie(w, r, session)
		_, _ = io.WriteString(w, "ok")
	})
	cookieAuth := func(r *http.Request) []byte {
		if r.Header.Get("Authorization") != "" {
			return nil // a bearer token: not cookie-authenticated
		}
		return session
	}
	srv := httptest.NewServer(p.Handler(app, cookieAuth))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var tok string
	for _, c := range resp.Cookies() {
		if c.Name == DefaultCookie {
			tok = c.Value
		}
	}
	if tok == "" {
		t.Fatal("GET did not set the token cookie")
	}

	tests := []struct {
		name    string
		headers [][2]string
		body    string
		want    int
	}{
		{"token from cookie in header", [][2]string{{DefaultHeader, tok}}, "", 200},
		{"token in form", [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}}, "moat_csrf=" + tok, 200},
		{"forged from another site", [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.test"}}, "", 403},
		{"forged by an old browser", [][2]string{{"Origin", "https://evil.test"}}, "", 403},
		{"no token", nil, "", 403},
		{"bearer token needs none", [][2]string{{"Authorization", "Bearer x"}, {"Sec-Fetch-Site", "cross-site"}}, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reached
			req, err := http.NewRequest("POST", srv.URL+"/do", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tt.headers {
				req.Header.Add(h[0], h[1])
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want == 403 {
				if reached != before {
					t.Error("the application saw a refused request")
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q, want application/problem+json", ct)
				}
			}
		})
	}
}
