package portal

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/session"
)

// token GETs page and returns the CSRF token of its forms, as webauthn.js
// reads it from the form it runs.
func (b *browser) token(page string) string {
	b.f.t.Helper()
	r := b.get(page)
	if r.status != http.StatusOK {
		b.f.t.Fatalf("GET %s: %d, want 200", page, r.status)
	}
	return csrfOf(b.f.t, r.body)
}

// sendJSON posts body to path as webauthn.js does: with contentType (none
// when ""), the CSRF token in X-Moat-CSRF (none when ""), and the
// browser's cookies. It checks the headers every passkey reply must carry.
func (b *browser) sendJSON(path, csrf, contentType string, body []byte) reply {
	b.f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		b.f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if csrf != "" {
		req.Header.Set(CSRFHeader, csrf)
	}
	for k, v := range b.hd {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.f.t.Fatal(err)
	}
	for name, want := range map[string]string{
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Content-Type":           "application/json",
	} {
		if got := resp.Header.Get(name); got != want {
			b.f.t.Errorf("POST %s: %s %q, want %q", path, name, got, want)
		}
	}
	return reply{resp.StatusCode, resp.Header, data}
}

func (b *browser) postJSON(path, csrf string, v any) reply {
	b.f.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		b.f.t.Fatal(err)
	}
	return b.sendJSON(path, csrf, "application/json", body)
}

// begin runs a begin request that must succeed.
func (b *browser) begin(path, csrf string, fields map[string]string) PasskeyBegin {
	b.f.t.Helper()
	r := b.postJSON(path, csrf, fields)
	if r.status != http.StatusOK {
		b.f.t.Fatalf("POST %s: %d, want 200\n%s", path, r.status, r.body)
	}
	var beg PasskeyBegin
	if err := json.Unmarshal(r.body, &beg); err != nil || beg.Ceremony == "" || len(beg.Options) == 0 {
		b.f.t.Fatalf("POST %s: reply %s: %v", path, r.body, err)
	}
	return beg
}

// register adds a passkey made by a, from page (which must be a page the
// session may see), and returns the finish reply.
func (b *browser) register(page string, a *passkeytest.Authenticator, name string) reply {
	b.f.t.Helper()
	csrf := b.token(page)
	beg := b.begin(PathPasskeyRegisterBegin, csrf, map[string]string{FieldName: name})
	return b.postJSON(PathPasskeyRegisterFinish, csrf, PasskeyFinish{Ceremony: beg.Ceremony, Credential: a.Create(beg.Options), Name: name})
}

// passkeyLogin signs in with a, without a user name, from the login page.
func (b *browser) passkeyLogin(a *passkeytest.Authenticator, returnTo string, tweaks ...passkeytest.Tweak) (reply, PasskeyFinish) {
	b.f.t.Helper()
	csrf := b.token(PathLogin)
	beg := b.begin(PathPasskeyLoginBegin, csrf, map[string]string{FieldReturnTo: returnTo})
	fin := PasskeyFinish{Ceremony: beg.Ceremony, Credential: a.Get(beg.Options, tweaks...), ReturnTo: returnTo}
	return b.postJSON(PathPasskeyLoginFinish, csrf, fin), fin
}

func decodeReply(t *testing.T, r reply) PasskeyReply {
	t.Helper()
	var pr PasskeyReply
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		t.Fatalf("reply %q is not a PasskeyReply: %v", r.body, err)
	}
	return pr
}

// wantGo checks a finish reply that sends the page on to redirect.
func wantGo(t *testing.T, step string, r reply, redirect string) {
	t.Helper()
	pr := decodeReply(t, r)
	if r.status != http.StatusOK || pr.Redirect != redirect || pr.Error != "" {
		t.Fatalf("%s: %d %+v, want 200 to %q", step, r.status, pr, redirect)
	}
}

// wantRefused checks a passkey reply that shows an error.
func wantRefused(t *testing.T, step string, r reply, status int, text string) {
	t.Helper()
	pr := decodeReply(t, r)
	if r.status != status || pr.Redirect != "" || !strings.Contains(pr.Error, text) {
		t.Fatalf("%s: %d %+v, want %d with %q", step, r.status, pr, status, text)
	}
	if setsSession(r) {
		t.Errorf("%s: a refused passkey request set a session cookie", step)
	}
}

// codesOf returns the recovery codes a page shows.
func codesOf(t *testing.T, body []byte) []string {
	t.Helper()
	var codes []string
	for _, n := range find(parseHTML(t, body), func(n *html.Node) bool { return n.Data == "code" && n.Parent != nil && n.Parent.Data == "li" }) {
		codes = append(codes, textOf(n))
	}
	return codes
}

// cookie returns the value of the named cookie the browser holds, or "".
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.f.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.f.srv.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true}})
}

// passkeysOn returns the passkeys listed on a passkeys page, by name: the
// id their remove form sends.
func passkeysOn(t *testing.T, body []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, it := range find(parseHTML(t, body), func(n *html.Node) bool { return hasClass(n, "item") }) {
		h3 := find(it, func(n *html.Node) bool { return n.Data == "h3" })
		rm := formTo(it, PathPasskeyRemove)
		if len(h3) != 1 || len(rm) != 1 {
			t.Fatalf("a passkey item without one heading and one remove form")
		}
		ids := find(rm[0], func(n *html.Node) bool { return attr(n, "name") == FieldID })
		if len(ids) != 1 {
			t.Fatalf("a remove form without one id")
		}
		out[textOf(h3[0])] = attr(ids[0], "value")
	}
	return out
}

// withPasskey makes a user with a password and a passkey, and returns the
// passkey.
func (f *flow) withPasskey(name string, roles ...string) *passkeytest.Authenticator {
	f.t.Helper()
	f.user(name, roles...)
	a := passkeytest.New(f.t, flowRPID, flowOrigin)
	b := f.browser()
	page := PathPasskeys
	switch r := b.login(name, flowPassword, ""); r.location() {
	case "/":
	case PathTOTP:
		page = PathTOTP
	default:
		f.t.Fatalf("login as %s: %d to %q", name, r.status, r.location())
	}
	wantGo(f.t, "first passkey of "+name, b.register(page, a, "first key"), PathRecoveryCodes)
	b.logout()
	f.clock.Advance(time.Minute)
	return a
}

func TestPasskeyLoginPasswordless(t *testing.T) {
	f := newFlow(t)
	a := f.withPasskey("alice", "user")
	f.user("mallory", "user")
	// The attacker's own valid session, planted in the victim's browser.
	planted, err := f.svc.PasswordLogin(context.Background(), "mallory", flowPassword, netipLoopback)
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.setCookie(session.CookieName, planted.Token)

	page := b.get(PathLogin + "?return_to=%2Fapp%3Fx%3D1")
	doc := checkPage(t, page.body, checkOpts{csrf: csrfOf(t, page.body)})
	if pk := formTo(doc, PathPasskeyLoginBegin); len(pk) != 1 || attr(pk[0], "data-moat-finish") != PathPasskeyLoginFinish {
		t.Fatal("the login page offers no passkey sign-in")
	}

	r, fin := b.passkeyLogin(a, "/app?x=1")
	wantGo(t, "passkey login", r, "/app?x=1")
	if !setsSession(r) {
		t.Fatal("the passkey login set no session cookie")
	}
	if got := b.sessionCookie(); got == "" || got == planted.Token {
		t.Fatal("the planted session cookie is still the browser's session")
	}
	if _, err := f.svc.Authenticate(context.Background(), planted.Token); err == nil {
		t.Error("the planted session still works after the passkey login")
	}
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "<strong>alice</strong>")

	// The same finish again: its ceremony is used up.
	f.clock.Advance(time.Second)
	c := f.browser()
	replay := c.postJSON(PathPasskeyLoginFinish, c.token(PathLogin), fin)
	wantRefused(t, "replayed finish", replay, http.StatusUnauthorized, msgPasskeyLogin)
	if c.sessionCookie() != "" {
		t.Error("the replayed finish signed in")
	}

	t.Run("unsafe return address", func(t *testing.T) {
		f.clock.Advance(time.Minute)
		r, _ := f.browser().passkeyLogin(a, "//evil.example/")
		wantGo(t, "passkey login", r, "/")
	})
	t.Run("refused answers", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			tweak passkeytest.Tweak
		}{
			{"foreign signature", passkeytest.WithSigner(other)},
			{"another origin", passkeytest.WithOrigin("https://evil.example")},
			{"no user verification", passkeytest.WithFlags(passkeytest.FlagUP)},
			{"unknown user", passkeytest.WithUserHandle([]byte("no-such-user"))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.clock.Advance(time.Minute) // past any back-off of the last failure
				b := f.browser()
				r, _ := b.passkeyLogin(a, "/", tc.tweak)
				wantRefused(t, "login", r, http.StatusUnauthorized, msgPasskeyLogin)
				if b.sessionCookie() != "" {
					t.Error("a refused passkey signed in")
				}
			})
		}
	})
}

func TestPasskeyCSRF(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	csrf := b.token(PathPasskeys)
	other := f.browser().token(PathLogin) // valid, but for another browser's cookie
	for _, path := range []string{
		PathPasskeyLoginBegin, PathPasskeyLoginFinish,
		PathPasskeyVerifyBegin, PathPasskeyVerifyFinish,
		PathPasskeyRegisterBegin, PathPasskeyRegisterFinish,
	} {
		for _, tc := range []struct {
			name, token, site string
		}{
			{"no header", "", ""},
			{"another browser's token", other, ""},
			{"garbage token", "not-a-token", ""},
			{"cross-site", csrf, "cross-site"},
		} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				b.hd = http.Header{}
				if tc.site != "" {
					b.hd.Set("Sec-Fetch-Site", tc.site)
				}
				r := b.sendJSON(path, tc.token, "application/json", []byte(`{"ceremony":"x","credential":{}}`))
				wantRefused(t, path, r, http.StatusForbidden, msgPasskeyForbidden)
			})
		}
	}
	b.hd = http.Header{}
	// The form token in a form body does not stand in for the header.
	r := b.sendJSON(PathPasskeyRegisterBegin, "", "application/x-www-form-urlencoded", []byte(url.Values{FieldCSRF: {csrf}}.Encode()))
	wantRefused(t, "token in a form body", r, http.StatusForbidden, msgPasskeyForbidden)
	// The right token passes.
	b.begin(PathPasskeyRegisterBegin, csrf, map[string]string{FieldName: "key"})
}

func TestPasskeyBodies(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	csrf := b.token(PathPasskeys)
	big := `{"ceremony":"x","credential":{"pad":"` + strings.Repeat("a", maxPasskeyBody) + `"}}`
	tests := []struct {
		name, ct, body string
		begin, finish  bool // sent to the begin or finish endpoints
	}{
		{"form content type", "application/x-www-form-urlencoded", `{"name":"k"}`, true, true},
		{"text content type", "text/plain", `{"name":"k"}`, true, true},
		{"no content type", "", `{"name":"k"}`, true, true},
		{"latin-1 charset", "application/json; charset=iso-8859-1", `{"name":"k"}`, true, true},
		{"empty", "application/json", ``, true, true},
		{"not an object", "application/json", `["name"]`, true, true},
		{"null", "application/json", `null`, true, true},
		{"truncated", "application/json", `{"name":"k"`, true, true},
		{"trailing data", "application/json", `{"name":"k"} {}`, true, true},
		{"unknown member", "application/json", `{"name":"k","admin":true}`, true, true},
		{"member in another case", "application/json", `{"Name":"k"}`, true, true},
		{"duplicate member", "application/json", `{"name":"a","name":"b"}`, true, true},
		{"number for a string", "application/json", `{"name":1}`, true, true},
		{"invalid UTF-8", "application/json", "{\"name\":\"\xff\"}", true, true},
		{"oversize", "application/json", big, true, true},
		{"no ceremony", "application/json", `{"credential":{}}`, false, true},
		{"empty ceremony", "application/json", `{"ceremony":"","credential":{}}`, false, true},
		{"long ceremony", "application/json", `{"ceremony":"` + strings.Repeat("c", 200) + `","credential":{}}`, false, true},
		{"no credential", "application/json", `{"ceremony":"x"}`, false, true},
		{"string credential", "application/json", `{"ceremony":"x","credential":"e30"}`, false, true},
		{"null credential", "application/json", `{"ceremony":"x","credential":null}`, false, true},
	}
	for _, tt := range tests {
		var paths []string
		if tt.begin {
			paths = append(paths, PathPasskeyLoginBegin, PathPasskeyVerifyBegin, PathPasskeyRegisterBegin)
		}
		if tt.finish {
			paths = append(paths, PathPasskeyLoginFinish, PathPasskeyVerifyFinish, PathPasskeyRegisterFinish)
		}
		for _, path := range paths {
			t.Run(tt.name+path, func(t *testing.T) {
				r := b.sendJSON(path, csrf, tt.ct, []byte(tt.body))
				wantRefused(t, path, r, http.StatusBadRequest, msgPasskeyBody)
			})
		}
	}
	t.Run("utf-8 charset accepted", func(t *testing.T) {
		r := b.sendJSON(PathPasskeyRegisterBegin, csrf, "application/json; charset=UTF-8", []byte(` {"name":"k"} `))
		if r.status != http.StatusOK {
			t.Errorf("%d, want 200: %s", r.status, r.body)
		}
	})
	t.Run("unknown ceremony", func(t *testing.T) {
		r := b.postJSON(PathPasskeyRegisterFinish, csrf, PasskeyFinish{Ceremony: "nope", Credential: json.RawMessage(`{}`)})
		wantRefused(t, "finish", r, http.StatusBadRequest, "Try again")
	})
}

func TestPasskeyVerify(t *testing.T) {
	f := newFlow(t)
	a := f.withPasskey("alice", "user")
	b := f.browser()
	wantRedirect(t, "password", b.login("alice", flowPassword, "/app"), PathLoginTOTP+"?return_to=%2Fapp")
	page := b.get(PathLoginTOTP + "?return_to=%2Fapp")
	csrf := csrfOf(t, page.body)
	doc := checkPage(t, page.body, checkOpts{csrf: csrf})
	if len(formTo(doc, PathPasskeyVerifyBegin)) != 1 {
		t.Fatal("the second-factor page does not offer the passkey")
	}
	if len(formTo(doc, PathLoginTOTP)) != 0 {
		t.Error("the second-factor page asks for an app the user does not have")
	}

	// A passkey answer signed by another key is refused, and the login
	// stays pending.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	beg := b.begin(PathPasskeyVerifyBegin, csrf, map[string]string{FieldReturnTo: "/app"})
	r := b.postJSON(PathPasskeyVerifyFinish, csrf, PasskeyFinish{Ceremony: beg.Ceremony, Credential: a.Get(beg.Options, passkeytest.WithSigner(other)), ReturnTo: "/app"})
	wantRefused(t, "foreign signature", r, http.StatusUnauthorized, msgPasskeyRejected)
	wantRedirect(t, "account while pending", b.get(PathAccount), PathLoginTOTP+"?return_to=%2F.moat%2Faccount")

	f.clock.Advance(time.Minute)
	pending := b.sessionCookie()
	beg = b.begin(PathPasskeyVerifyBegin, csrf, map[string]string{FieldReturnTo: "/app"})
	fin := PasskeyFinish{Ceremony: beg.Ceremony, Credential: a.Get(beg.Options), ReturnTo: "/app"}
	r = b.postJSON(PathPasskeyVerifyFinish, csrf, fin)
	wantGo(t, "passkey", r, "/app")
	if !setsSession(r) || b.sessionCookie() == pending {
		t.Fatal("the second factor did not replace the session")
	}
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "<strong>alice</strong>")
	if _, err := f.svc.Authenticate(context.Background(), pending); err == nil {
		t.Error("the pending session still works")
	}

	// The finished login is no longer waiting for a second factor.
	wantRefused(t, "verify after login", b.postJSON(PathPasskeyVerifyBegin, csrf, map[string]string{}), http.StatusUnauthorized, msgPasskeyExpired)
	wantRefused(t, "replay after login", b.postJSON(PathPasskeyVerifyFinish, csrf, fin), http.StatusUnauthorized, msgPasskeyExpired)
	c := f.browser()
	wantRefused(t, "verify without a session", c.postJSON(PathPasskeyVerifyBegin, c.token(PathLogin), map[string]string{}), http.StatusUnauthorized, msgPasskeyExpired)
}

func TestPasskeyVerifyWithoutPasskey(t *testing.T) {
	f := newFlow(t)
	f.user("root", "admin")
	b := f.browser()
	b.enrollTOTP("root")
	b.logout()
	f.clock.Advance(time.Minute)
	wantRedirect(t, "password", b.login("root", flowPassword, ""), PathLoginTOTP)
	page := b.get(PathLoginTOTP)
	doc := checkPage(t, page.body, checkOpts{csrf: csrfOf(t, page.body)})
	if len(formTo(doc, PathPasskeyVerifyBegin)) != 0 {
		t.Error("the second-factor page offers a passkey the user does not have")
	}
	wantRefused(t, "verify begin", b.postJSON(PathPasskeyVerifyBegin, csrfOf(t, page.body), map[string]string{}), http.StatusBadRequest, msgNoPasskeys)
}

// enrollTOTP signs in as an admin that must enroll, turns on an
// authenticator app and saves the recovery codes; it returns the app's
// secret.
func (b *browser) enrollTOTP(user string) []byte {
	t := b.f.t
	t.Helper()
	wantRedirect(t, "first login", b.login(user, flowPassword, ""), PathTOTP)
	page := b.get(PathTOTP)
	secret := keyOf(t, page.body)
	done := b.do(http.MethodPost, PathTOTP, url.Values{FieldCode: {mfa.Code(secret, b.f.clock.Now())}, FieldCSRF: {csrfOf(t, page.body)}})
	wantPage(t, "enrollment", done, http.StatusOK, "Save your recovery codes")
	return secret
}

func TestPasskeyRecoveryCodesOnce(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	a := passkeytest.New(t, flowRPID, flowOrigin)
	r := b.register(PathPasskeys, a, "Work laptop")
	wantGo(t, "first passkey", r, PathRecoveryCodes)
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.Contains(strings.ToLower(c), "recovery") || strings.Contains(r.location(), "code") {
			t.Errorf("codes travel outside the flash cookie: %q", c)
		}
	}
	if b.cookie(FlashCookie) == "" {
		t.Fatal("no flash cookie after the first passkey")
	}

	page := b.get(PathRecoveryCodes)
	wantPage(t, "codes", page, http.StatusOK, "Save your recovery codes")
	checkPage(t, page.body, checkOpts{csrf: csrfOf(t, page.body)})
	codes := codesOf(t, page.body)
	if len(codes) != accounts.RecoveryCodeCount {
		t.Fatalf("%d recovery codes shown, want %d", len(codes), accounts.RecoveryCodeCount)
	}
	if b.cookie(FlashCookie) != "" {
		t.Error("the flash cookie survived showing the codes")
	}
	again := b.get(PathRecoveryCodes)
	wantRedirect(t, "codes again", again, PathAccount)
	if bytes.Contains(again.body, []byte(codes[0])) {
		t.Error("the codes were shown twice")
	}
	wantRedirect(t, "codes saved", b.do(http.MethodPost, PathRecoveryCodes, url.Values{FieldSaved: {"yes"}, FieldCSRF: {csrfOf(t, page.body)}}), PathAccount)

	// A second passkey brings no new codes.
	wantGo(t, "second passkey", b.register(PathPasskeys, passkeytest.New(t, flowRPID, flowOrigin), "Blue key"), PathPasskeys+"?notice=added")
	if b.cookie(FlashCookie) != "" {
		t.Error("a second passkey set a flash cookie")
	}
	list := b.get(PathPasskeys + "?notice=added")
	wantPage(t, "list", list, http.StatusOK, "Passkey added.")
	text := textOf(checkPage(t, list.body, checkOpts{csrf: csrfOf(t, list.body)}))
	for _, want := range []string{"Work laptop", "Blue key", "Never", when(f.clock.Now())} {
		if !strings.Contains(text, want) {
			t.Errorf("the passkey list does not show %q", want)
		}
	}
	b.logout()

	// The codes shown are the account's.
	f.clock.Advance(time.Minute)
	wantRedirect(t, "password", b.login("alice", flowPassword, ""), PathLoginTOTP)
	wantRedirect(t, "recovery code", b.post(PathLoginTOTP, PathLoginRecovery, url.Values{FieldRecoveryCode: {codes[3]}}), "/")
}

func TestFlashBoundToSession(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	a := f.browser()
	wantRedirect(t, "login", a.login("alice", flowPassword, ""), "/")
	key := passkeytest.New(t, flowRPID, flowOrigin)
	wantGo(t, "first passkey", a.register(PathPasskeys, key, "k"), PathRecoveryCodes)
	flash := a.cookie(FlashCookie)

	tests := []struct {
		name  string
		setup func(b *browser)
	}{
		{"another session of the same user", func(b *browser) {
			r, _ := b.passkeyLogin(key, "/")
			wantGo(t, "passkey login", r, "/")
		}},
		{"a login of the same user waiting for its second factor", func(b *browser) {
			wantRedirect(t, "login", b.login("alice", flowPassword, ""), PathLoginTOTP)
		}},
		{"another user", func(b *browser) {
			f.user("bob", "user")
			wantRedirect(t, "login", b.login("bob", flowPassword, ""), "/")
		}},
		{"no session", func(b *browser) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Advance(time.Minute)
			b := f.browser()
			tt.setup(b)
			b.setCookie(FlashCookie, flash)
			r := b.get(PathRecoveryCodes)
			wantRedirect(t, "codes", r, PathAccount)
			if b.cookie(FlashCookie) != "" {
				t.Error("a flash cookie that did not open was kept")
			}
		})
	}
	// The browser it was made for still opens it.
	wantPage(t, "codes", a.get(PathRecoveryCodes), http.StatusOK, "Save your recovery codes")
}

func TestRecoveryCodesNew(t *testing.T) {
	f := newFlow(t)
	f.user("root", "admin")
	b := f.browser()
	b.enrollTOTP("root")
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "10 codes left")

	r := b.post(PathAccount, PathRecoveryCodesNew, url.Values{})
	wantRedirect(t, "new codes", r, PathRecoveryCodes)
	page := b.get(PathRecoveryCodes)
	codes := codesOf(t, page.body)
	if len(codes) != accounts.RecoveryCodeCount {
		t.Fatalf("%d new codes shown, want %d", len(codes), accounts.RecoveryCodeCount)
	}
	wantRedirect(t, "reload", b.get(PathRecoveryCodes), PathAccount)

	// Sealed codes expire, even where the cookie is kept.
	wantRedirect(t, "new codes again", b.post(PathAccount, PathRecoveryCodesNew, url.Values{}), PathRecoveryCodes)
	f.clock.Advance(flashTTL)
	wantRedirect(t, "expired codes", b.get(PathRecoveryCodes), PathAccount)

	t.Run("without a second factor", func(t *testing.T) {
		f.user("carol", "user")
		c := f.browser()
		wantRedirect(t, "login", c.login("carol", flowPassword, ""), "/")
		wantPage(t, "new codes", c.post(PathAccount, PathRecoveryCodesNew, url.Values{}), http.StatusBadRequest, msgNoSecondStep)
		if c.cookie(FlashCookie) != "" {
			t.Error("codes made for a user without a second factor")
		}
	})
}

func TestAdminEnrollsPasskey(t *testing.T) {
	f := newFlow(t)
	f.user("root", "admin")
	b := f.browser()
	wantRedirect(t, "first login", b.login("root", flowPassword, ""), PathTOTP)
	page := b.get(PathTOTP)
	doc := checkPage(t, page.body, checkOpts{csrf: csrfOf(t, page.body)})
	pk := formTo(doc, PathPasskeyRegisterBegin)
	if len(pk) != 1 || attr(pk[0], "data-moat-passkey") != "create" || attr(pk[0], "data-moat-finish") != PathPasskeyRegisterFinish {
		t.Fatal("the enrollment page does not offer a passkey")
	}
	wantRedirect(t, "passkeys page while enrolling", b.get(PathPasskeys), PathTOTP)

	pending := b.sessionCookie()
	a := passkeytest.New(t, flowRPID, flowOrigin)
	r := b.register(PathTOTP, a, "YubiKey")
	wantGo(t, "passkey instead of an app", r, PathRecoveryCodes)
	if !setsSession(r) || b.sessionCookie() == pending {
		t.Fatal("the enrollment did not replace the session")
	}
	wantPage(t, "codes", b.get(PathRecoveryCodes), http.StatusOK, "Save your recovery codes")
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "1 passkey.")

	// The only second factor of an admin stays.
	id := passkeysOn(t, b.get(PathPasskeys).body)["YubiKey"]
	if id == "" {
		t.Fatal("the passkey is not on the list")
	}
	r = b.post(PathPasskeys, PathPasskeyRemove, url.Values{FieldID: {id}})
	wantPage(t, "remove the last factor", r, http.StatusBadRequest, html.EscapeString(msgLastFactor))
	doc = checkPage(t, r.body, checkOpts{csrf: csrfOf(t, r.body)})
	if e := find(doc, func(n *html.Node) bool { return attr(n, "role") == "alert" }); len(e) != 1 || textOf(e[0]) != msgLastFactor {
		t.Error("the refusal is not announced")
	}
	wantPage(t, "still listed", b.get(PathPasskeys), http.StatusOK, "YubiKey")

	// Signing in next time: a passkey alone, without a password.
	b.logout()
	f.clock.Advance(time.Minute)
	r, _ = b.passkeyLogin(a, "/admin")
	wantGo(t, "passkey login", r, "/admin")
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "<strong>root</strong>")
}

func TestRemoveTOTP(t *testing.T) {
	f := newFlow(t)
	f.user("root", "admin")
	b := f.browser()
	b.enrollTOTP("root")
	r := b.post(PathAccount, PathTOTPRemove, url.Values{})
	wantPage(t, "remove the only app", r, http.StatusBadRequest, html.EscapeString(msgLastFactor))
	checkPage(t, r.body, checkOpts{csrf: csrfOf(t, r.body)})
	wantPage(t, "app kept", b.get(PathAccount), http.StatusOK, "On: sign-in asks for a code")

	// With a passkey as well, the app may go.
	wantGo(t, "passkey", b.register(PathPasskeys, passkeytest.New(t, flowRPID, flowOrigin), "k"), PathPasskeys+"?notice=added")
	wantRedirect(t, "remove the app", b.post(PathAccount, PathTOTPRemove, url.Values{}), PathAccount+"?notice=totp_removed")
	page := b.get(PathAccount + "?notice=totp_removed")
	wantPage(t, "app gone", page, http.StatusOK, "The authenticator app is turned off.")
	if bytes.Contains(page.body, []byte("On: sign-in asks")) {
		t.Error("the app is still on")
	}
}

func TestPasskeyRenameRemove(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	f.user("bob", "user")
	bob := f.browser()
	wantRedirect(t, "bob", bob.login("bob", flowPassword, ""), "/")
	wantGo(t, "bob's passkey", bob.register(PathPasskeys, passkeytest.New(t, flowRPID, flowOrigin), "bob key"), PathRecoveryCodes)
	bobsID := passkeysOn(t, bob.get(PathPasskeys).body)["bob key"]

	b := f.browser()
	wantRedirect(t, "alice", b.login("alice", flowPassword, ""), "/")
	wantGo(t, "alice's passkey", b.register(PathPasskeys, passkeytest.New(t, flowRPID, flowOrigin), "old name"), PathRecoveryCodes)
	wantGo(t, "another", b.register(PathPasskeys, passkeytest.New(t, flowRPID, flowOrigin), "spare"), PathPasskeys+"?notice=added")
	id := passkeysOn(t, b.get(PathPasskeys).body)["old name"]
	if id == "" || bobsID == "" {
		t.Fatal("a passkey is missing from its list")
	}

	tests := []struct {
		name   string
		path   string
		form   url.Values
		status int    // 303 for a redirect
		want   string // the page's text, or the redirect's address
	}{
		{"rename", PathPasskeyRename, url.Values{FieldID: {id}, FieldName: {"Work laptop"}}, http.StatusSeeOther, PathPasskeys + "?notice=renamed"},
		{"control character", PathPasskeyRename, url.Values{FieldID: {id}, FieldName: {"evil\u202eyek"}}, http.StatusBadRequest, msgBadName},
		{"too long", PathPasskeyRename, url.Values{FieldID: {id}, FieldName: {strings.Repeat("n", 65)}}, http.StatusBadRequest, msgBadName},
		{"bad name, unknown passkey", PathPasskeyRename, url.Values{FieldID: {"pk_nope"}, FieldName: {"\x01"}}, http.StatusBadRequest, msgBadName},
		{"rename another user's", PathPasskeyRename, url.Values{FieldID: {bobsID}, FieldName: {"mine"}}, http.StatusNotFound, msgNoSuchPasskey},
		{"remove another user's", PathPasskeyRemove, url.Values{FieldID: {bobsID}}, http.StatusNotFound, msgNoSuchPasskey},
		{"remove unknown", PathPasskeyRemove, url.Values{FieldID: {"pk_nope"}}, http.StatusNotFound, msgNoSuchPasskey},
		{"remove", PathPasskeyRemove, url.Values{FieldID: {id}}, http.StatusSeeOther, PathPasskeys + "?notice=removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.post(PathPasskeys, tt.path, tt.form)
			if tt.status == http.StatusSeeOther {
				wantRedirect(t, tt.name, r, tt.want)
				return
			}
			wantPage(t, tt.name, r, tt.status, html.EscapeString(tt.want))
			doc := checkPage(t, r.body, checkOpts{csrf: csrfOf(t, r.body)})
			errs := find(doc, func(n *html.Node) bool { return hasClass(n, "error") && strings.TrimSpace(textOf(n)) == tt.want })
			if len(errs) != 1 {
				t.Errorf("the error is shown %d times, want once", len(errs))
			}
		})
	}
	if got := passkeysOn(t, b.get(PathPasskeys).body); len(got) != 1 || got["spare"] == "" {
		t.Errorf("after rename and removal the list is %v, want only spare", got)
	}
	if got := passkeysOn(t, bob.get(PathPasskeys).body); len(got) != 1 || got["bob key"] != bobsID {
		t.Errorf("bob's passkeys are %v after alice's changes", got)
	}
	// The forms need a finished login and a CSRF token.
	c := f.browser()
	wantRedirect(t, "rename without a session", c.post(PathLogin, PathPasskeyRename, url.Values{FieldID: {bobsID}, FieldName: {"x"}}), PathLogin+"?return_to=%2F.moat%2Fpasskeys")
	wantPage(t, "remove without a token", b.do(http.MethodPost, PathPasskeyRemove, url.Values{FieldID: {id}}), http.StatusForbidden, "Form expired")
}

func TestLogoutEverywhere(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	f.user("bob", "user")
	phone, laptop, other := f.browser(), f.browser(), f.browser()
	wantRedirect(t, "phone", phone.login("alice", flowPassword, ""), "/")
	f.clock.Advance(time.Minute)
	wantRedirect(t, "laptop", laptop.login("alice", flowPassword, ""), "/")
	wantRedirect(t, "bob", other.login("bob", flowPassword, ""), "/")

	page := laptop.get(PathAccount)
	doc := checkPage(t, page.body, checkOpts{csrf: csrfOf(t, page.body)})
	items := find(doc, func(n *html.Node) bool { return hasClass(n, "item") && strings.Contains(textOf(n), "Signed in with") })
	if len(items) != 2 || !strings.Contains(textOf(items[0]), "This device") || strings.Contains(textOf(items[1]), "This device") {
		t.Errorf("the account page lists %d sessions, want 2 with this one first", len(items))
	}

	r := laptop.post(PathAccount, PathLogoutEverywhere, url.Values{})
	wantPage(t, "logout everywhere", r, http.StatusOK, "Every session of your account has ended")
	if laptop.sessionCookie() != "" {
		t.Error("the session cookie survived")
	}
	wantRedirect(t, "phone after", phone.get(PathAccount), PathLogin+"?return_to=%2F.moat%2Faccount")
	wantPage(t, "bob after", other.get(PathAccount), http.StatusOK, "<strong>bob</strong>")
	// Without a session there is nobody to sign out.
	wantRedirect(t, "again", laptop.post(PathLogin, PathLogoutEverywhere, url.Values{}), PathLogin+"?return_to=%2F.moat%2Faccount")
}

func TestPasskeysOff(t *testing.T) {
	f := newFlow(t, noPasskeys)
	f.user("alice", "user")
	b := f.browser()
	page := b.get(PathLogin)
	if bytes.Contains(page.body, []byte("passkey")) {
		t.Error("the login page offers passkeys while they are off")
	}
	csrf := csrfOf(t, page.body)
	wantRefused(t, "login begin", b.postJSON(PathPasskeyLoginBegin, csrf, map[string]string{}), http.StatusNotFound, msgPasskeysOff)
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "this site does not offer passkeys")
	wantRedirect(t, "passkeys page", b.get(PathPasskeys), PathAccount)
	wantRefused(t, "register begin", b.postJSON(PathPasskeyRegisterBegin, b.token(PathAccount), map[string]string{}), http.StatusNotFound, msgPasskeysOff)
}

func TestNewHandlerFlashKey(t *testing.T) {
	f := newFlow(t)
	pages, err := NewPages(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{nil, make([]byte, 16), make([]byte, 33)} {
		_, err := NewHandler(HandlerOptions{Accounts: f.svc, Sessions: f.sessions, Pages: pages, CSRF: testCSRF(t), FlashKey: key})
		if err == nil {
			t.Errorf("a %d-byte flash key was accepted", len(key))
		}
	}
}
