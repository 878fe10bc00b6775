package portal

import (
	"bytes"
	"context"
	"encoding/base32"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

const flowPassword = "correct horse battery staple"

// Relying party of the flow's passkeys. The software authenticator
// reports this origin; the handler never compares it with the test
// server's address.
const (
	flowRPID   = "localhost"
	flowOrigin = "https://localhost"
)

// flow is a portal Handler on a TLS test server, backed by a real accounts
// service on SQLite, with passkeys on unless the flow is made with
// noPasskeys.
type flow struct {
	t        *testing.T
	srv      *httptest.Server
	svc      *accounts.Service
	sessions *session.Manager
	clock    *testclock.Clock
}

type flowOption int

const noPasskeys flowOption = 1

func newFlow(t *testing.T, opts ...flowOption) *flow {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	c := testclock.New(time.Now().Truncate(time.Second))
	sessions, err := session.New(st.Sessions(), session.Options{Now: c.Now, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sessions.Close() })
	hasher, err := password.NewHasher(password.DefaultParams(), 64<<20, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	policy := password.DefaultPolicy()
	var pks *passkey.Service
	if !slices.Contains(opts, noPasskeys) {
		pks, err = passkey.New(passkey.Options{
			RPID: flowRPID, RPOrigins: []string{flowOrigin},
			Credentials: st.Credentials(), Users: st.Users(), Now: c.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	svc, err := accounts.New(ctx, accounts.Options{
		Store: st, Hasher: hasher, Policy: policy, Sessions: sessions, Passkeys: pks,
		Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := NewPages(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{
		Accounts: svc, Sessions: sessions, Pages: pages, CSRF: testCSRF(t), FlashKey: testFlashKey,
		PasswordPolicyMin: policy.MinLength, PasswordPolicyMax: policy.MaxLength,
		Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	// As the gateway mounts them: the assets beside the portal.
	mux := http.NewServeMux()
	mux.Handle(StaticPrefix, StaticHandler())
	mux.Handle(Prefix, h)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return &flow{t: t, srv: srv, svc: svc, sessions: sessions, clock: c}
}

// user creates a user with flowPassword.
func (f *flow) user(name string, roles ...string) {
	f.t.Helper()
	ctx := context.Background()
	_, tok, err := f.svc.CreateUser(ctx, name, name+"@example.test", "", roles)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, flowPassword); err != nil {
		f.t.Fatal(err)
	}
}

// browser is one user agent: a cookie jar, redirects not followed.
type browser struct {
	f  *flow
	c  *http.Client
	hd http.Header // added to every request
}

func (f *flow) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	// A copy of the server's client, so that each browser keeps its own
	// cookie jar.
	c := *f.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{f: f, c: &c, hd: http.Header{}}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) location() string { return r.header.Get("Location") }

func (b *browser) do(method, path string, form url.Values) reply {
	b.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, body)
	if err != nil {
		b.f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
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
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		b.f.t.Errorf("%s %s: Cache-Control %q, want no-store", method, path, cc)
	}
	return reply{resp.StatusCode, resp.Header, data}
}

func (b *browser) get(path string) reply { return b.do(http.MethodGet, path, nil) }

// post GETs page for its CSRF token, then posts form (with the token) to
// path.
func (b *browser) post(page, path string, form url.Values) reply {
	b.f.t.Helper()
	r := b.get(page)
	if r.status != http.StatusOK {
		b.f.t.Fatalf("GET %s: %d, want 200", page, r.status)
	}
	form.Set(FieldCSRF, csrfOf(b.f.t, r.body))
	return b.do(http.MethodPost, path, form)
}

// sessionCookie returns the session cookie the browser holds, or "".
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.f.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == session.CookieName {
			return c.Value
		}
	}
	return ""
}

// login posts the login form.
func (b *browser) login(user, pw, returnTo string) reply {
	b.f.t.Helper()
	page := PathLogin
	form := url.Values{FieldUsername: {user}, FieldPassword: {pw}}
	if returnTo != "" {
		page += "?" + FieldReturnTo + "=" + url.QueryEscape(returnTo)
		form.Set(FieldReturnTo, returnTo)
	}
	return b.post(page, PathLogin, form)
}

func (b *browser) logout() {
	b.f.t.Helper()
	if r := b.post(PathLogin, PathLogout, url.Values{}); r.status != http.StatusOK || !bytes.Contains(r.body, []byte("You are signed out")) {
		b.f.t.Fatalf("logout: %d", r.status)
	}
	if c := b.sessionCookie(); c != "" {
		b.f.t.Fatal("the session cookie survived logout")
	}
}

func parseHTML(t *testing.T, body []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func csrfOf(t *testing.T, body []byte) string {
	t.Helper()
	els := find(parseHTML(t, body), func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == FieldCSRF })
	if len(els) == 0 {
		t.Fatalf("no csrf field in %s", body)
	}
	return attr(els[0], "value")
}

func setsSession(r reply) bool {
	for _, line := range r.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == session.CookieName && c.Value != "" {
			return true
		}
	}
	return false
}

func wantRedirect(t *testing.T, step string, r reply, to string) {
	t.Helper()
	if r.status != http.StatusSeeOther || r.location() != to {
		t.Fatalf("%s: %d to %q, want 303 to %q\n%s", step, r.status, r.location(), to, r.body)
	}
}

func wantPage(t *testing.T, step string, r reply, status int, contains string) {
	t.Helper()
	if r.status != status || !bytes.Contains(r.body, []byte(contains)) {
		t.Fatalf("%s: %d, want %d with %q\n%s", step, r.status, status, contains, r.body)
	}
}

func TestHandlerPasswordLogin(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	wantRedirect(t, "account before login", b.get(PathAccount), PathLogin+"?return_to=%2F.moat%2Faccount")
	r := b.login("alice", flowPassword, "")
	wantRedirect(t, "login", r, "/")
	if !setsSession(r) || b.sessionCookie() == "" {
		t.Fatal("login set no session cookie")
	}
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "<strong>alice</strong>")
	b.logout()
	wantRedirect(t, "account after logout", b.get(PathAccount), PathLogin+"?return_to=%2F.moat%2Faccount")
}

var (
	csrfValueRE = regexp.MustCompile(`name="csrf" value="[^"]*"`)
	requestIDRE = regexp.MustCompile(`(?i)request[ -]id[^<]*`)
)

func TestHandlerLoginFailureSameAnswer(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	answer := func(user, pw string) []byte {
		t.Helper()
		r := b.login(user, pw, "")
		wantPage(t, "failed login as "+user, r, http.StatusUnauthorized, msgLoginFailed)
		if setsSession(r) || b.sessionCookie() != "" {
			t.Fatalf("failed login as %s set a session cookie", user)
		}
		body := csrfValueRE.ReplaceAll(r.body, nil)
		body = requestIDRE.ReplaceAll(body, nil)
		return bytes.ReplaceAll(body, []byte(`value="`+user+`"`), []byte(`value="USER"`))
	}
	wrong := answer("alice", "not the password at all")
	f.clock.Advance(2 * time.Second)
	unknown := answer("nobody", flowPassword)
	if !bytes.Equal(wrong, unknown) {
		t.Errorf("wrong password and unknown user answered differently:\n%s\n----\n%s", wrong, unknown)
	}
}

func TestHandlerCSRF(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	b.get(PathLogin) // the CSRF cookie, but no token in the form
	r := b.do(http.MethodPost, PathLogin, url.Values{FieldUsername: {"alice"}, FieldPassword: {flowPassword}})
	wantPage(t, "no token", r, http.StatusForbidden, "Form expired")
	if setsSession(r) {
		t.Error("a login without a CSRF token set a session")
	}
	b.hd.Set("Sec-Fetch-Site", "cross-site")
	r = b.login("alice", flowPassword, "")
	wantPage(t, "cross-site", r, http.StatusForbidden, "Form expired")
	if setsSession(r) {
		t.Error("a cross-site login set a session")
	}
	b.hd.Set("Sec-Fetch-Site", "same-origin")
	wantRedirect(t, "same-origin", b.login("alice", flowPassword, ""), "/")
	// Logout is a form like the others.
	wantPage(t, "logout without token", b.do(http.MethodPost, PathLogout, url.Values{}), http.StatusForbidden, "Form expired")
	if b.sessionCookie() == "" {
		t.Error("a logout without a CSRF token ended the session")
	}
}

func TestHandlerReturnTo(t *testing.T) {
	for _, c := range []struct{ name, rt, want string }{
		{"path", "/app/report?id=7", "/app/report?id=7"},
		{"protocol-relative", "//evil.example", "/"},
		{"absolute", "https://evil.example/", "/"},
		{"backslash", `/\evil.example`, "/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFlow(t)
			f.user("alice", "user")
			b := f.browser()
			page := b.get(PathLogin + "?return_to=" + url.QueryEscape(c.rt))
			if c.want == "/" && bytes.Contains(page.body, []byte("evil.example")) {
				t.Errorf("the login page carries %q", c.rt)
			}
			wantRedirect(t, "login", b.login("alice", flowPassword, c.rt), c.want)
		})
	}
}

func TestHandlerSessionFixation(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	f.user("mallory", "user")
	// The attacker's own valid session, planted in the victim's browser.
	res, err := f.svc.PasswordLogin(context.Background(), "mallory", flowPassword, netipLoopback)
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	u, _ := url.Parse(f.srv.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: session.CookieName, Value: res.Token, Path: "/", Secure: true}})
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	if got := b.sessionCookie(); got == "" || got == res.Token {
		t.Fatal("the planted session cookie is still the browser's session")
	}
	wantPage(t, "account", b.get(PathAccount), http.StatusOK, "<strong>alice</strong>")
	if _, err := f.svc.Authenticate(context.Background(), res.Token); err == nil {
		t.Error("the planted session still works after the login")
	}
}

func TestHandlerAdminTOTP(t *testing.T) {
	f := newFlow(t)
	f.user("root", "admin")
	b := f.browser()

	// First login: the admin must enroll, and can reach nothing else.
	wantRedirect(t, "first login", b.login("root", flowPassword, "/admin"), PathTOTP)
	wantRedirect(t, "account while enrolling", b.get(PathAccount), PathTOTP)
	wantRedirect(t, "second factor while enrolling", b.get(PathLoginTOTP), PathTOTP)
	page := b.get(PathTOTP)
	wantPage(t, "enrollment", page, http.StatusOK, "<svg")
	secret := keyOf(t, page.body)
	// A wrong code starts over with a new key.
	wrong := url.Values{FieldCode: {"000000"}, FieldCSRF: {csrfOf(t, page.body)}}
	if mfa.Code(secret, f.clock.Now()) == "000000" {
		wrong.Set(FieldCode, "111111")
	}
	page = b.do(http.MethodPost, PathTOTP, wrong)
	wantPage(t, "wrong enrollment code", page, http.StatusBadRequest, msgEnrollRetry)
	secret = keyOf(t, page.body)
	done := b.do(http.MethodPost, PathTOTP, url.Values{
		FieldCode: {mfa.Code(secret, f.clock.Now())}, FieldName: {"phone"}, FieldCSRF: {csrfOf(t, page.body)},
	})
	wantPage(t, "enrollment", done, http.StatusOK, "Save your recovery codes")
	if !setsSession(done) {
		t.Fatal("enrollment did not replace the session cookie")
	}
	var codes []string
	for _, n := range find(parseHTML(t, done.body), func(n *html.Node) bool { return n.Data == "code" }) {
		codes = append(codes, textOf(n))
	}
	if len(codes) != accounts.RecoveryCodeCount {
		t.Fatalf("%d recovery codes shown, want %d", len(codes), accounts.RecoveryCodeCount)
	}
	wantRedirect(t, "codes saved", b.do(http.MethodPost, PathRecoveryCodes, url.Values{FieldSaved: {"yes"}, FieldCSRF: {csrfOf(t, done.body)}}), PathAccount)
	wantPage(t, "account after enrollment", b.get(PathAccount), http.StatusOK, "10 codes left")
	b.logout()

	// The next login asks for a code.
	f.clock.Advance(time.Minute)
	wantRedirect(t, "second login", b.login("root", flowPassword, "/admin"), PathLoginTOTP+"?return_to=%2Fadmin")
	wantRedirect(t, "account before the second factor", b.get(PathAccount), PathLoginTOTP+"?return_to=%2F.moat%2Faccount")
	sf := PathLoginTOTP + "?return_to=%2Fadmin"
	wantPage(t, "wrong code", b.post(sf, PathLoginTOTP, url.Values{FieldCode: {wrong.Get(FieldCode)}, FieldReturnTo: {"/admin"}}), http.StatusUnauthorized, msgCodeRejected)
	f.clock.Advance(2 * time.Second) // the failure's back-off
	wantRedirect(t, "right code", b.post(sf, PathLoginTOTP, url.Values{FieldCode: {mfa.Code(secret, f.clock.Now())}, FieldReturnTo: {"/admin"}}), "/admin")
	wantPage(t, "account after the second factor", b.get(PathAccount), http.StatusOK, "<strong>root</strong>")
	b.logout()

	// A recovery code works once.
	f.clock.Advance(time.Minute)
	recovery := func() reply {
		t.Helper()
		wantRedirect(t, "login", b.login("root", flowPassword, ""), PathLoginTOTP)
		return b.post(PathLoginTOTP, PathLoginRecovery, url.Values{FieldRecoveryCode: {codes[0]}})
	}
	wantRedirect(t, "recovery code", recovery(), "/")
	wantPage(t, "account after a recovery code", b.get(PathAccount), http.StatusOK, "9 codes left")
	b.logout()
	f.clock.Advance(time.Minute)
	wantPage(t, "recovery code again", recovery(), http.StatusUnauthorized, msgCodeRejected)
	wantRedirect(t, "account with a pending login", b.get(PathAccount), PathLoginTOTP+"?return_to=%2F.moat%2Faccount")
}

func keyOf(t *testing.T, body []byte) []byte {
	t.Helper()
	key := textOf(byID(parseHTML(t, body), "totp-key"))
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(key, " ", ""))
	if err != nil || len(secret) == 0 {
		t.Fatalf("key %q: %v", key, err)
	}
	return secret
}

func TestHandlerSetPassword(t *testing.T) {
	f := newFlow(t)
	_, tok, err := f.svc.CreateUser(context.Background(), "newbie", "", "", []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	wantPage(t, "without a link", b.get(PathPassword), http.StatusBadRequest, "Open the link")
	link := PathPassword + "?token=" + url.QueryEscape(tok)
	wantRedirect(t, "link", b.get(link), PathPassword)
	set := func(pw, confirm string) reply {
		t.Helper()
		return b.post(PathPassword, PathPassword, url.Values{FieldNewPassword: {pw}, FieldConfirmPassword: {confirm}})
	}
	wantPage(t, "weak", set("short", "short"), http.StatusBadRequest, "Password must be at least 12 characters long.")
	wantPage(t, "mismatch", set(flowPassword, flowPassword+"x"), http.StatusBadRequest, msgMismatch)
	wantRedirect(t, "good", set(flowPassword, flowPassword), PathLogin+"?notice=password_set")
	wantPage(t, "notice", b.get(PathLogin+"?notice=password_set"), http.StatusOK, msgPasswordSet)
	wantRedirect(t, "login with it", b.login("newbie", flowPassword, ""), "/")
	// The link is used up.
	c := f.browser()
	wantRedirect(t, "link again", c.get(link), PathPassword)
	wantPage(t, "used link", c.post(PathPassword, PathPassword, url.Values{FieldNewPassword: {flowPassword + "!"}, FieldConfirmPassword: {flowPassword + "!"}}), http.StatusBadRequest, "This link does not work")
	wantPage(t, "malformed link", c.get(PathPassword+"?token=a%3Bb"), http.StatusBadRequest, "This link does not work")
}

var netipLoopback = netip.MustParseAddr("127.0.0.1")
