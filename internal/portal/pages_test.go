package portal

import (
	"html/template"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/moatgw/moat/internal/headers"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/request"
)

const testToken = "c3JmLXRva2VuLWZvci10ZXN0cw"

func testPages(t testing.TB) *Pages {
	t.Helper()
	p, err := NewPages(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testWriter sends log output to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// render renders a page as a browser GET would see it.
func render(t testing.TB, p *Pages, status int, page string, data any) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://moat.example"+PathLogin, nil)
	r.Header.Set("Accept", "text/html")
	r = r.WithContext(request.With(r.Context(), &request.Info{ID: "req-7f3a"}))
	w := httptest.NewRecorder()
	p.Render(w, r, status, page, data)
	return w
}

func testQR(t testing.TB) (template.HTML, []byte) {
	t.Helper()
	secret := []byte("0123456789abcdefghij")
	svg, err := mfa.QRCodeSVG("otpauth://totp/Moat:alice?secret=" + mfa.EncodeSecret(secret) + "&issuer=Moat")
	if err != nil {
		t.Fatal(err)
	}
	return template.HTML(svg), secret
}

var (
	t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	t1 = time.Date(2025, 6, 1, 18, 5, 0, 0, time.UTC)
)

// samplePages returns every page with typical data.
func samplePages(t testing.TB) []struct {
	page string
	data any
} {
	qr, secret := testQR(t)
	return []struct {
		page string
		data any
	}{
		{PageLogin, LoginData{CSRF: testToken, ReturnTo: "/app?x=1", PasskeysEnabled: true, PasskeyAutofill: true,
			Providers: []Provider{{Name: "Example ID", URL: "/.moat/oidc/example/start?return_to=%2Fapp"}}}},
		{PageLogin, LoginData{CSRF: testToken, Username: "alice", Error: "Wrong user name or password."}},
		{PageLogin, &LoginData{CSRF: testToken, Notice: "Your session has ended."}},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, ReturnTo: "/app", HasTOTP: true, HasPasskey: true}},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, HasTOTP: true, CodeError: "That code is not right. Try the newest one.", RecoveryError: "That recovery code is not right."}},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, HasPasskey: true, Error: "Too many attempts. Wait a minute."}},
		{PageSetPassword, SetPasswordData{CSRF: testToken, Username: "alice", MinLength: 12, MaxLength: 128}},
		{PageSetPassword, SetPasswordData{CSRF: testToken, Username: "alice", RequireCurrent: true, MinLength: 12,
			CurrentError: "That is not your current password.", NewError: "This password appears in data breaches.", ConfirmError: "The two passwords differ."}},
		{PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, QRCode: qr, Key: mfa.EncodeSecret(secret), Issuer: "Moat", Account: "alice", PasskeysEnabled: true, MaxNameLength: 64}},
		{PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, QRCode: qr, Key: mfa.FormatSecret(secret), Error: "That code is not right."}},
		{PageRecoveryCodes, RecoveryCodesData{CSRF: testToken, Codes: []string{"k3v9-2mq8-xp4t", "a7c2-9dfe-h3jw", "q8n4-z2rt-5vby"}}},
		{PageRecoveryCodes, RecoveryCodesData{CSRF: testToken, Codes: []string{"k3v9-2mq8-xp4t"}, Error: "Tick the box once you have saved the codes."}},
		{PagePasskeys, PasskeysData{CSRF: testToken, MaxNameLength: 64, Notice: "Passkey added.", Passkeys: []Passkey{
			{ID: "pk1", Name: "Work laptop", Created: t0, LastUsed: t1},
			{ID: "pk2", Name: "Blue key", Created: t1},
		}}},
		{PagePasskeys, PasskeysData{CSRF: testToken, Error: "A name must not be empty.", ErrorPasskey: "pk2", Passkeys: []Passkey{
			{ID: "pk1", Name: "Work laptop", Created: t0}, {ID: "pk2", Name: "Blue key", Created: t1},
		}}},
		{PagePasskeys, PasskeysData{CSRF: testToken, Error: "Your passkeys could not be loaded."}},
		{PageAccount, AccountData{CSRF: testToken, Username: "alice", HasPassword: true, TOTPEnabled: true, PasskeysEnabled: true, Passkeys: 2, RecoveryCodesLeft: 9,
			Sessions: []Session{
				{Methods: "Password and authenticator app", Created: t0, LastSeen: t1, Current: true},
				{Methods: "Password", Pending: true, Created: t0, LastSeen: t0},
			}}},
		{PageAccount, AccountData{CSRF: testToken, Username: "bob", Error: "Something failed."}},
		{PageAccount, AccountData{CSRF: testToken, Username: "carol", TOTPEnabled: true, PasskeysEnabled: true, RecoveryCodesLeft: 3, Notice: "The authenticator app is turned off."}},
		{PageLoggedOut, LoggedOutData{}},
		{PageLoggedOut, LoggedOutData{Everywhere: true, LoginURL: "/.moat/login?return_to=%2Fapp"}},
		{PageNotice, NoticeData{Title: "Link expired", Message: "This link is no longer valid.", Error: true, Link: PathLogin, LinkText: "Sign in"}},
		{PageNotice, NoticeData{Title: "Password changed", Message: "Your new password is in use."}},
		{PageStepUp, StepUpData{CSRF: testToken, Username: "alice", ReturnTo: "/admin/settings"}},
		{PageStepUp, StepUpData{CSRF: testToken, Error: "This page needs a second factor."}},
	}
}

func TestPagesRender(t *testing.T) {
	p := testPages(t)
	seen := map[string]bool{}
	for i, tt := range samplePages(t) {
		seen[tt.page] = true
		t.Run(tt.page+"/"+string(rune('a'+i)), func(t *testing.T) {
			w := render(t, p, http.StatusOK, tt.page, tt.data)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", w.Code, w.Body)
			}
			h := w.Result().Header
			for name, want := range map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Cache-Control":           "no-store",
				"Content-Security-Policy": headers.OwnPagesCSP,
				"X-Frame-Options":         "DENY",
				"X-Content-Type-Options":  "nosniff",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			footer := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Footer })
			if len(footer) != 1 || !strings.Contains(textOf(footer[0]), "req-7f3a") {
				t.Errorf("footer does not show the request id")
			}
			title := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Title })
			h1 := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.H1 })
			if len(title) == 1 && len(h1) == 1 && !strings.HasPrefix(textOf(title[0]), textOf(h1[0])) {
				t.Errorf("title %q does not start with the heading %q", textOf(title[0]), textOf(h1[0]))
			}
			scripts := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Script })
			if len(scripts) != 1 || attr(scripts[0], "type") != "module" {
				t.Errorf("want one module script, got %d", len(scripts))
			}
		})
	}
	for name := range pageSpecs {
		if !seen[name] {
			t.Errorf("page %s has no sample", name)
		}
	}
}

func TestRenderStatus(t *testing.T) {
	p := testPages(t)
	w := render(t, p, http.StatusUnauthorized, PageLogin, LoginData{CSRF: testToken, Error: "Wrong user name or password."})
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", w.Code)
	}
	r := httptest.NewRequest(http.MethodHead, "/", nil)
	rec := httptest.NewRecorder()
	p.Render(rec, r, http.StatusOK, PageLoggedOut, LoggedOutData{})
	if rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "0" {
		t.Errorf("HEAD: body %d bytes, Content-Length %q", rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestRenderRefuses(t *testing.T) {
	p := testPages(t)
	tests := []struct {
		name string
		page string
		data any
	}{
		{"unknown page", "admin", LoginData{}},
		{"wrong data type", PageLogin, AccountData{Username: "alice"}},
		{"map data", PageLogin, map[string]string{"Username": "alice"}},
		{"nil data", PageLogin, nil},
		{"nil pointer", PageLogin, (*LoginData)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := render(t, p, http.StatusOK, tt.page, tt.data)
			if w.Code != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", w.Code)
			}
			if strings.Contains(w.Body.String(), "<form") || strings.Contains(w.Body.String(), "alice") {
				t.Errorf("a refused page leaked content: %s", w.Body)
			}
			if !strings.Contains(w.Body.String(), "req-7f3a") {
				t.Errorf("error page does not quote the request id")
			}
		})
	}
}

// TestRenderEscapes renders hostile text in every text field a user or an
// attacker can influence and checks it arrives as text.
func TestRenderEscapes(t *testing.T) {
	p := testPages(t)
	const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	qr, _ := testQR(t)
	pages := []struct {
		page string
		data any
	}{
		{PageLogin, LoginData{CSRF: testToken, Username: evil, Error: evil, Notice: evil, ReturnTo: evil,
			PasskeysEnabled: true, Providers: []Provider{{Name: evil, URL: "/.moat/oidc/x/start"}}}},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, ReturnTo: evil, Error: evil, CodeError: evil, RecoveryError: evil, HasTOTP: true, HasPasskey: true}},
		{PageSetPassword, SetPasswordData{CSRF: testToken, Username: evil, RequireCurrent: true, Error: evil, CurrentError: evil, NewError: evil, ConfirmError: evil}},
		{PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, QRCode: qr, Key: evil, Issuer: evil, Account: evil, Error: evil, PasskeysEnabled: true}},
		{PageRecoveryCodes, RecoveryCodesData{CSRF: testToken, Codes: []string{evil}, Error: evil}},
		{PagePasskeys, PasskeysData{CSRF: testToken, Notice: evil, Error: evil, ErrorPasskey: evil,
			Passkeys: []Passkey{{ID: evil, Name: evil, Created: t0}}}},
		{PageAccount, AccountData{CSRF: testToken, Username: evil, Notice: evil, Error: evil,
			Sessions: []Session{{Methods: evil, Created: t0, LastSeen: t0}}}},
		{PageNotice, NoticeData{Title: evil, Message: evil, Error: true, Link: "/x", LinkText: evil}},
		{PageStepUp, StepUpData{CSRF: testToken, Username: evil, ReturnTo: evil, Error: evil}},
	}
	for _, tt := range pages {
		t.Run(tt.page, func(t *testing.T) {
			w := render(t, p, http.StatusOK, tt.page, tt.data)
			body := w.Body.String()
			if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
				t.Fatalf("hostile markup rendered unescaped:\n%s", body)
			}
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			imgs := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Img && attr(n, "src") == "x" })
			if len(imgs) > 0 {
				t.Errorf("hostile <img> became an element")
			}
			if !strings.Contains(textOf(doc), "<script>alert(1)</script>") && !hasValue(doc, evil) {
				t.Errorf("hostile text is missing from the page instead of shown as text")
			}
		})
	}

	// The value of the prefilled user name is the hostile string itself.
	w := render(t, p, http.StatusOK, PageLogin, LoginData{CSRF: testToken, Username: evil})
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	if u := byID(doc, "username"); u == nil || attr(u, "value") != evil {
		t.Errorf("user name field does not hold the submitted text")
	}
}

func hasValue(doc *html.Node, v string) bool {
	return len(find(doc, func(n *html.Node) bool { return attr(n, "value") == v })) > 0
}

func TestRenderProviderURLSanitized(t *testing.T) {
	p := testPages(t)
	w := render(t, p, http.StatusOK, PageLogin, LoginData{CSRF: testToken,
		Providers: []Provider{{Name: "Evil", URL: "javascript:alert(1)"}}})
	if strings.Contains(w.Body.String(), "javascript:") {
		t.Errorf("a javascript: URL reached the page")
	}
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	if a := find(doc, func(n *html.Node) bool { return attr(n, "href") == "#ZgotmplZ" }); len(a) != 1 {
		t.Errorf("provider link is missing or its address was not replaced")
	}
}

func TestEnrollTOTPEmbedsQRCode(t *testing.T) {
	p := testPages(t)
	qr, secret := testQR(t)
	w := render(t, p, http.StatusOK, PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, QRCode: qr, Key: mfa.EncodeSecret(secret), Account: "a<b"})
	body := w.Body.String()
	if !strings.Contains(body, string(qr)) {
		t.Fatalf("QR code SVG is not in the page as is")
	}
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	svgs := find(doc, func(n *html.Node) bool { return n.Data == "svg" && n.Namespace == "svg" })
	if len(svgs) != 1 {
		t.Fatalf("page has %d svg elements, want 1", len(svgs))
	}
	if paths := find(svgs[0], func(n *html.Node) bool { return n.Data == "path" }); len(paths) != 1 || len(attr(paths[0], "d")) < 100 {
		t.Errorf("svg has no module path")
	}
	key := byID(doc, "totp-key")
	if key == nil {
		t.Fatal("no key on the page")
	}
	groups := strings.Fields(textOf(key))
	if strings.Join(groups, "") != mfa.EncodeSecret(secret) {
		t.Errorf("key %q does not spell the secret", textOf(key))
	}
	for i, g := range groups {
		if len(g) != 4 && i != len(groups)-1 {
			t.Errorf("key group %d is %q, want four characters", i, g)
		}
	}
	if !strings.Contains(body, "a&lt;b") {
		t.Errorf("account name not escaped")
	}
	if w.Result().Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the page with the secret may be cached")
	}
}

func TestEnrollTOTPOffersPasskey(t *testing.T) {
	p := testPages(t)
	qr, secret := testQR(t)
	for _, enabled := range []bool{true, false} {
		t.Run(map[bool]string{true: "passkeys on", false: "passkeys off"}[enabled], func(t *testing.T) {
			w := render(t, p, http.StatusOK, PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, QRCode: qr, Key: mfa.EncodeSecret(secret), PasskeysEnabled: enabled, MaxNameLength: 64})
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			if len(formTo(doc, PathTOTP)) != 1 {
				t.Errorf("the code form is missing")
			}
			pk := formTo(doc, PathPasskeyRegisterBegin)
			if !enabled {
				if len(pk) != 0 {
					t.Errorf("a passkey is offered while passkeys are off")
				}
				return
			}
			if len(pk) != 1 || attr(pk[0], "data-moat-passkey") != "create" || attr(pk[0], "data-moat-finish") != PathPasskeyRegisterFinish {
				t.Fatalf("the passkey form is missing or misconfigured")
			}
			hiddenAbove := false
			for n := pk[0]; n != nil; n = n.Parent {
				hiddenAbove = hiddenAbove || hasAttr(n, "hidden") && hasAttr(n, "data-moat-webauthn")
			}
			if !hiddenAbove {
				t.Errorf("the passkey form shows in browsers without WebAuthn")
			}
			if st := find(pk[0], func(n *html.Node) bool { return hasAttr(n, "data-moat-status") }); len(st) != 1 || attr(st[0], "aria-live") != "polite" {
				t.Errorf("the passkey form has no live status region")
			}
			if name := byID(doc, "passkey-name"); name == nil || attr(name, "name") != FieldName || attr(name, "maxlength") != "64" {
				t.Errorf("the passkey name field is missing or unbounded")
			}
		})
	}
}

func TestLoginPage(t *testing.T) {
	p := testPages(t)
	t.Run("passkeys and providers", func(t *testing.T) {
		w := render(t, p, http.StatusOK, PageLogin, LoginData{CSRF: testToken, ReturnTo: "/app?x=1", PasskeysEnabled: true,
			Providers: []Provider{{Name: "Example ID", URL: "/p/start?return_to=%2Fapp"}}})
		doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
		pk := formTo(doc, PathPasskeyLoginBegin)
		if len(pk) != 1 || !hasAttr(pk[0], "hidden") || attr(pk[0], "data-moat-passkey") != "get" || attr(pk[0], "data-moat-finish") != PathPasskeyLoginFinish {
			t.Fatalf("passkey form is missing, visible without JavaScript or misconfigured")
		}
		if st := find(pk[0], func(n *html.Node) bool { return hasAttr(n, "data-moat-status") }); len(st) != 1 || attr(st[0], "aria-live") == "" {
			t.Errorf("passkey form has no live status region")
		}
		prov := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.A && attr(n, "href") == "/p/start?return_to=%2Fapp" })
		if len(prov) != 1 || textOf(prov[0]) != "Sign in with Example ID" || hasAttr(prov[0].Parent.Parent, "hidden") {
			t.Errorf("provider link missing or hidden")
		}
		for _, f := range append(formTo(doc, PathLogin), pk...) {
			rt := find(f, func(n *html.Node) bool { return attr(n, "name") == FieldReturnTo })
			if len(rt) != 1 || attr(rt[0], "value") != "/app?x=1" {
				t.Errorf("form to %s does not carry the return address", attr(f, "action"))
			}
		}
		if u := byID(doc, "username"); u == nil || !hasAttr(u, "autofocus") {
			t.Errorf("empty user name field is not focused")
		}
	})
	t.Run("password only", func(t *testing.T) {
		w := render(t, p, http.StatusOK, PageLogin, LoginData{CSRF: testToken, Username: "alice", Error: "Wrong user name or password."})
		doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
		if n := len(find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Form })); n != 1 {
			t.Errorf("%d forms, want only the password form", n)
		}
		if strings.Contains(w.Body.String(), "passkey") {
			t.Errorf("passkey offered while disabled")
		}
		pw := byID(doc, "password")
		if pw == nil || attr(pw, "aria-invalid") != "true" || !hasAttr(pw, "autofocus") {
			t.Errorf("password field not marked invalid or not focused after an error")
		}
		// The error comes before the fields it is about, in source order.
		if e := byID(doc, "login-error"); e == nil || attr(e, "role") != "alert" {
			t.Errorf("error is not announced")
		}
	})
}

func TestSecondFactorPage(t *testing.T) {
	p := testPages(t)
	tests := []struct {
		name          string
		data          SecondFactorData
		code, passkey bool
		recoveryOpen  bool
	}{
		{"totp only", SecondFactorData{CSRF: testToken, HasTOTP: true}, true, false, false},
		{"totp and passkey", SecondFactorData{CSRF: testToken, HasTOTP: true, HasPasskey: true}, true, true, false},
		{"passkey only", SecondFactorData{CSRF: testToken, HasPasskey: true}, false, true, true},
		{"recovery error", SecondFactorData{CSRF: testToken, HasTOTP: true, RecoveryError: "No."}, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := render(t, p, http.StatusOK, PageSecondFactor, tt.data)
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			if got := len(formTo(doc, PathLoginTOTP)) == 1; got != tt.code {
				t.Errorf("code form shown: %v, want %v", got, tt.code)
			}
			if got := len(formTo(doc, PathPasskeyVerifyBegin)) == 1; got != tt.passkey {
				t.Errorf("passkey form shown: %v, want %v", got, tt.passkey)
			}
			if len(formTo(doc, PathLoginRecovery)) != 1 {
				t.Errorf("no recovery code form")
			}
			d := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Details })
			if len(d) != 1 || hasAttr(d[0], "open") != tt.recoveryOpen {
				t.Errorf("recovery section open: want %v", tt.recoveryOpen)
			}
			if code := byID(doc, "code"); code != nil && attr(code, "inputmode") != "numeric" {
				t.Errorf("code field has no numeric keyboard")
			}
		})
	}
}

func TestFieldErrorsAreBound(t *testing.T) {
	p := testPages(t)
	tests := []struct {
		page  string
		data  any
		field string // id of the field
		text  string // the error it must be described by
	}{
		{PageLogin, LoginData{CSRF: testToken, Error: "Wrong user name or password."}, "password", "Wrong user name or password."},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, HasTOTP: true, CodeError: "Bad code."}, "code", "Bad code."},
		{PageSecondFactor, SecondFactorData{CSRF: testToken, HasTOTP: true, RecoveryError: "Bad recovery code."}, "recovery-code", "Bad recovery code."},
		{PageSetPassword, SetPasswordData{CSRF: testToken, RequireCurrent: true, CurrentError: "Not your password."}, "current-password", "Not your password."},
		{PageSetPassword, SetPasswordData{CSRF: testToken, MinLength: 12, NewError: "Too short."}, "new-password", "Too short."},
		{PageSetPassword, SetPasswordData{CSRF: testToken, ConfirmError: "They differ."}, "confirm-password", "They differ."},
		{PageEnrollTOTP, EnrollTOTPData{CSRF: testToken, Error: "Bad code."}, "code", "Bad code."},
		{PageRecoveryCodes, RecoveryCodesData{CSRF: testToken, Error: "Tick the box."}, "saved", "Tick the box."},
		{PagePasskeys, PasskeysData{CSRF: testToken, Error: "Name taken.", ErrorPasskey: "b",
			Passkeys: []Passkey{{ID: "a", Name: "A"}, {ID: "b", Name: "B"}}}, "rename-1", "Name taken."},
	}
	for _, tt := range tests {
		t.Run(tt.page+"/"+tt.field, func(t *testing.T) {
			w := render(t, p, http.StatusOK, tt.page, tt.data)
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			f := byID(doc, tt.field)
			if f == nil {
				t.Fatalf("no field %q", tt.field)
			}
			if attr(f, "aria-invalid") != "true" {
				t.Errorf("field not aria-invalid")
			}
			var texts []string
			for _, id := range strings.Fields(attr(f, "aria-describedby")) {
				if el := byID(doc, id); el != nil {
					texts = append(texts, textOf(el))
				}
			}
			if !strings.Contains(strings.Join(texts, " "), tt.text) {
				t.Errorf("field is described by %q, want the error %q", texts, tt.text)
			}
			invalid := find(doc, func(n *html.Node) bool { return attr(n, "aria-invalid") == "true" })
			for _, n := range invalid {
				if n != f && tt.page != PageLogin {
					t.Errorf("field %q is marked invalid too", attr(n, "id"))
				}
			}
		})
	}
}

func TestSetPasswordShowsPolicy(t *testing.T) {
	p := testPages(t)
	w := render(t, p, http.StatusOK, PageSetPassword, SetPasswordData{CSRF: testToken, Username: "alice", MinLength: 15})
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	policy := byID(doc, "password-policy")
	if policy == nil {
		t.Fatal("no policy")
	}
	text := strings.Join(strings.Fields(textOf(policy)), " ")
	for _, want := range []string{"at least 15 characters", "no rules about digits", "data breaches"} {
		if !strings.Contains(text, want) {
			t.Errorf("policy %q does not say %q", text, want)
		}
	}
	np := byID(doc, "new-password")
	if np == nil || attr(np, "minlength") != "15" || !strings.Contains(attr(np, "aria-describedby"), "password-policy") {
		t.Errorf("new password field is not tied to the policy")
	}
	if u := byID(doc, "username"); u == nil || !hasAttr(u, "readonly") || attr(u, "value") != "alice" {
		t.Errorf("user name is not offered read-only to password managers")
	}
	if byID(doc, "current-password") != nil {
		t.Errorf("first password asks for a current one")
	}
}

func TestRecoveryCodesPage(t *testing.T) {
	p := testPages(t)
	codes := []string{"k3v9-2mq8-xp4t", "a7c2-9dfe-h3jw"}
	w := render(t, p, http.StatusOK, PageRecoveryCodes, RecoveryCodesData{CSRF: testToken, Codes: codes})
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	lists := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Ol && hasClass(n, "codes") })
	if len(lists) != 1 {
		t.Fatal("no code list")
	}
	items := find(lists[0], func(n *html.Node) bool { return n.DataAtom == atom.Li })
	if len(items) != len(codes) {
		t.Fatalf("%d codes listed, want %d", len(items), len(codes))
	}
	for i, it := range items {
		if strings.TrimSpace(textOf(it)) != codes[i] {
			t.Errorf("code %d is %q", i, textOf(it))
		}
	}
	f := formTo(doc, PathRecoveryCodes)
	if len(f) != 1 || !hasClass(f[0], "print-hide") {
		t.Errorf("confirmation form missing or printed")
	}
	if c := byID(doc, "saved"); c == nil || attr(c, "type") != "checkbox" || !hasAttr(c, "required") {
		t.Errorf("no required confirmation checkbox")
	}
}

func TestPasskeysPage(t *testing.T) {
	p := testPages(t)
	w := render(t, p, http.StatusOK, PagePasskeys, PasskeysData{CSRF: testToken, Passkeys: []Passkey{
		{ID: "pk1", Name: "Work laptop", Created: t0, LastUsed: t1},
		{ID: "pk2", Name: "Blue key", Created: t1},
	}})
	doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
	if n := len(formTo(doc, PathPasskeyRename)); n != 2 {
		t.Errorf("%d rename forms, want 2", n)
	}
	rm := formTo(doc, PathPasskeyRemove)
	if len(rm) != 2 {
		t.Fatalf("%d remove forms, want 2", len(rm))
	}
	ids := find(rm[1], func(n *html.Node) bool { return attr(n, "name") == FieldID })
	if len(ids) != 1 || attr(ids[0], "value") != "pk2" {
		t.Errorf("second remove form does not name pk2")
	}
	if !strings.Contains(textOf(rm[1]), "Remove Blue key") {
		t.Errorf("remove button %q does not say which passkey", textOf(rm[1]))
	}
	text := textOf(doc)
	for _, want := range []string{"Work laptop", "14 Mar 2025, 09:26 UTC", "1 Jun 2025, 18:05 UTC", "Never"} {
		if !strings.Contains(text, want) {
			t.Errorf("page does not show %q", want)
		}
	}
	times := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.Time })
	if len(times) == 0 || attr(times[0], "datetime") != "2025-03-14T09:26:53Z" {
		t.Errorf("times lack a machine-readable datetime")
	}
	add := formTo(doc, PathPasskeyRegisterBegin)
	if len(add) != 1 || !hasAttr(add[0], "hidden") || attr(add[0], "data-moat-passkey") != "create" || attr(add[0], "data-moat-finish") != PathPasskeyRegisterFinish {
		t.Errorf("add form is missing, visible without JavaScript or misconfigured")
	}
	if n := find(doc, func(n *html.Node) bool { return hasAttr(n, "data-moat-no-webauthn") }); len(n) != 1 || hasAttr(n[0], "hidden") {
		t.Errorf("no visible note for browsers without passkeys")
	}
}

func TestAccountPage(t *testing.T) {
	p := testPages(t)
	sessions := []Session{
		{Methods: "Password and passkey", Created: t0, LastSeen: t1, Current: true},
		{Methods: "Password", Pending: true, Created: t0, LastSeen: t0},
	}
	tests := []struct {
		name       string
		data       AccountData
		forms      []string // paths with exactly one form
		noForms    []string // paths with no form
		says       []string
		link       string // an address the page links to; "" for none checked
		noLinkText string // text no link carries
	}{
		{
			name:    "passkey user",
			data:    AccountData{CSRF: testToken, Username: "alice", HasPassword: true, PasskeysEnabled: true, Passkeys: 1, RecoveryCodesLeft: 1, Sessions: sessions},
			forms:   []string{PathLogout, PathLogoutEverywhere, PathRecoveryCodesNew},
			noForms: []string{PathTOTPRemove},
			says: []string{"Signed in as alice", "1 passkey.", "1 code left", "Set up an app", "This device",
				"Password and passkey", "Password (second step not finished)", "Since 14 Mar 2025, 09:26 UTC"},
			link: PathPasskeys,
		},
		{
			name:       "app user, passkeys off",
			data:       AccountData{CSRF: testToken, Username: "bob", HasPassword: true, TOTPEnabled: true, RecoveryCodesLeft: 10},
			forms:      []string{PathLogout, PathLogoutEverywhere, PathRecoveryCodesNew, PathTOTPRemove},
			says:       []string{"10 codes left", "does not offer passkeys", "Replace app"},
			noLinkText: "passkey",
		},
		{
			name:    "no second factor",
			data:    AccountData{CSRF: testToken, Username: "carol", HasPassword: true, PasskeysEnabled: true},
			forms:   []string{PathLogout, PathLogoutEverywhere},
			noForms: []string{PathRecoveryCodesNew, PathTOTPRemove},
			says:    []string{"None yet.", "You get recovery codes when you set up"},
			link:    PathPasskeys,
		},
		{
			name:  "error",
			data:  AccountData{CSRF: testToken, Username: "dave", TOTPEnabled: true, Error: msgLastFactor},
			forms: []string{PathTOTPRemove},
			says:  []string{msgLastFactor},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := render(t, p, http.StatusOK, PageAccount, tt.data)
			doc := checkPage(t, w.Body.Bytes(), checkOpts{csrf: testToken})
			for _, path := range tt.forms {
				if n := len(formTo(doc, path)); n != 1 {
					t.Errorf("%d forms to %s, want 1", n, path)
				}
			}
			for _, path := range tt.noForms {
				if n := len(formTo(doc, path)); n != 0 {
					t.Errorf("%d forms to %s, want none", n, path)
				}
			}
			text := strings.Join(strings.Fields(textOf(doc)), " ")
			for _, want := range tt.says {
				if !strings.Contains(text, want) {
					t.Errorf("page does not say %q:\n%s", want, text)
				}
			}
			links := find(doc, func(n *html.Node) bool { return n.DataAtom == atom.A })
			if tt.link != "" && !slices.ContainsFunc(links, func(n *html.Node) bool { return attr(n, "href") == tt.link }) {
				t.Errorf("no link to %s", tt.link)
			}
			for _, a := range links {
				if tt.noLinkText != "" && strings.Contains(strings.ToLower(textOf(a)), tt.noLinkText) {
					t.Errorf("link %q offered", textOf(a))
				}
			}
			if tt.data.Error != "" {
				e := find(doc, func(n *html.Node) bool { return hasClass(n, "error") })
				if len(e) != 1 || attr(e[0], "role") != "alert" || textOf(e[0]) != tt.data.Error {
					t.Errorf("error not announced as an alert")
				}
			}
		})
	}
}

func TestGroup4(t *testing.T) {
	tests := map[string]string{
		"":              "",
		"ABC":           "ABC",
		"ABCDEFGH":      "ABCD EFGH",
		"ABCDEFGHIJ":    "ABCD EFGH IJ",
		"ABCD EFGH IJ":  "ABCD EFGH IJ",
		" AB CDEF\tGH ": "ABCD EFGH",
	}
	for in, want := range tests {
		if got := group4(in); got != want {
			t.Errorf("group4(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkRenderLogin(b *testing.B) {
	p := testPages(b)
	r := httptest.NewRequest(http.MethodGet, "https://moat.example"+PathLogin, nil)
	data := LoginData{CSRF: testToken, ReturnTo: "/app", PasskeysEnabled: true, Providers: []Provider{{Name: "Example ID", URL: "/p"}}}
	for b.Loop() {
		w := httptest.NewRecorder()
		p.Render(w, r, http.StatusOK, PageLogin, data)
	}
}
