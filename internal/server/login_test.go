package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/session"
)

// TestLogin drives the accounts capability through the real gateway as a
// user and an attacker would: over TLS, with a cookie jar, through the
// portal's forms, with the session cookie reaching protected routes.
func TestLogin(t *testing.T) {
	g := startLoginGateway(t, "", loginAccounts)
	ctx := context.Background()
	svc := g.srv.Accounts().Service

	t.Run("enrollment link then password login", func(t *testing.T) {
		_, tok, err := svc.CreateUser(ctx, "erin", "", "Erin", []string{"user"})
		if err != nil {
			t.Fatal(err)
		}
		link := EnrollLink(g.cfg, tok)
		if !strings.HasPrefix(link, g.cfg.Accounts.PublicURL+portal.PathPassword+"?token=") {
			t.Fatalf("enrollment link %q", link)
		}
		lu, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		b := g.newBrowser(t)

		// Opening the link moves the token into a cookie and out of the URL.
		r := b.page(lu.RequestURI())
		if r.status != http.StatusSeeOther || r.location() != portal.PathPassword {
			t.Fatalf("opening the link: %s", r)
		}
		ck := r.cookie(portal.EnrollCookie)
		if ck == nil || ck.Value != tok || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.Domain != "" {
			t.Fatalf("enrollment cookie %+v, want the token, Secure, HttpOnly, Path=/, host-only", ck)
		}
		r = b.page(portal.PathPassword)
		if r.status != http.StatusOK || formValue(t, r.body, portal.FieldCSRF) == "" || !strings.Contains(r.body, `name="new_password"`) {
			t.Fatalf("set-password page: %s", r)
		}
		if strings.Contains(r.body, tok) {
			t.Error("the set-password page shows the token")
		}

		// Two different passwords: refused, nothing stored.
		r = b.post(portal.PathPassword, url.Values{portal.FieldNewPassword: {testPassword}, portal.FieldConfirmPassword: {testPassword + "x"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "The two passwords are not the same.") {
			t.Errorf("mismatched passwords: %s", r)
		}
		r = b.post(portal.PathPassword, url.Values{portal.FieldNewPassword: {testPassword}, portal.FieldConfirmPassword: {testPassword}})
		if r.status != http.StatusSeeOther || r.location() != portal.PathLogin+"?notice=password_set" {
			t.Fatalf("setting the password: %s", r)
		}
		if c := r.cookie(portal.EnrollCookie); c == nil || c.MaxAge >= 0 {
			t.Errorf("the enrollment cookie is not cleared: %+v", c)
		}
		if r = b.page(r.location()); !strings.Contains(r.body, "Your password is set.") {
			t.Errorf("login page after enrollment: %s", r)
		}

		// The link works once.
		again := g.newBrowser(t)
		again.page(lu.RequestURI())
		r = again.post(portal.PathPassword, url.Values{portal.FieldNewPassword: {"another long password 4242"}, portal.FieldConfirmPassword: {"another long password 4242"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "This link does not work") {
			t.Errorf("the link a second time: %s", r)
		}

		// Before signing in, /app sends a browser to the login page and
		// answers an API client 401.
		b.sentToLogin("/app", portal.PathLogin)
		r = b.api("/app")
		if r.status != http.StatusUnauthorized || r.header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(r.header.Get("WWW-Authenticate"), portal.PathLogin) {
			t.Errorf("API call without a session: %s", r)
		}

		r = b.login("erin", testPassword, "/app")
		if r.status != http.StatusSeeOther || r.location() != "/app" {
			t.Fatalf("login: %s", r)
		}
		sc := r.cookie(session.CookieName)
		if sc == nil || !sc.Secure || !sc.HttpOnly || sc.Path != "/" || sc.Domain != "" || sc.SameSite != http.SameSiteLaxMode || sc.MaxAge <= 0 {
			t.Errorf("session cookie %+v, want Secure, HttpOnly, Path=/, host-only, SameSite=Lax, a lifetime", sc)
		}

		// The upstream sees who signed in, not who the client claims to be.
		r = b.do("GET", "/app/profile", map[string]string{"Accept": "text/html", "X-Moat-User": "admin", "X-Moat-Roles": "admin"}, nil)
		if r.status != http.StatusOK {
			t.Fatalf("/app after login: %s", r)
		}
		saw := upstreamSaw(t, r.body)
		if got := saw.Values(headerUser); !slices.Equal(got, []string{"erin"}) {
			t.Errorf("upstream saw %s %q, want exactly [erin]", headerUser, got)
		}
		if got := saw.Values(headerRoles); !slices.Equal(got, []string{"user"}) {
			t.Errorf("upstream saw %s %q, want exactly [user]", headerRoles, got)
		}
	})

	t.Run("admin must enroll a second factor first", func(t *testing.T) {
		g.addUser(t, "olga", "admin")
		b := g.newBrowser(t)
		r := b.login("olga", testPassword, "/ops")
		if r.status != http.StatusSeeOther || r.location() != portal.PathTOTP {
			t.Fatalf("password login of an admin without a second factor: %s", r)
		}
		pending := b.session()

		// The unfinished login reaches only the enrollment.
		b.sentToLogin("/app", portal.PathTOTP)
		b.sentToLogin("/ops", portal.PathTOTP)
		if r := b.api("/app"); r.status != http.StatusUnauthorized {
			t.Errorf("API call with an unfinished login: %s", r)
		}
		if r := b.page(portal.PathAccount); r.status != http.StatusSeeOther || r.location() != portal.PathTOTP {
			t.Errorf("account page with an unfinished login: %s", r)
		}

		r = b.page(portal.PathTOTP)
		if r.status != http.StatusOK {
			t.Fatalf("enrollment page: %s", r)
		}
		first := totpSecret(t, r.body)
		// A wrong code: refused, and a new key is shown.
		wrong := fmt.Sprintf("%06d", (atoi(t, mfa.Code(first, g.clock.Now()))+500000)%1000000)
		r = b.post(portal.PathTOTP, url.Values{portal.FieldCode: {wrong}})
		if r.status != http.StatusBadRequest {
			t.Fatalf("enrolling with a wrong code: %s", r)
		}
		secret := totpSecret(t, r.body)
		if string(secret) == string(first) {
			t.Error("after a wrong code the same key is shown again")
		}
		r = b.post(portal.PathTOTP, url.Values{portal.FieldCode: {mfa.Code(secret, g.clock.Now())}})
		if r.status != http.StatusOK {
			t.Fatalf("enrolling with the right code: %s", r)
		}
		if codes := recoveryCodes(t, r.body); len(codes) != accounts.RecoveryCodeCount {
			t.Errorf("recovery codes shown: %q, want %d", codes, accounts.RecoveryCodeCount)
		}
		if tok := b.session(); tok == "" || tok == pending {
			t.Errorf("the session was not replaced after the second factor")
		}
		b.reachesUpstream("/ops", "olga", "admin")
		b.reachesUpstream("/app", "olga", "admin")
		if r := g.withCookie(t, pending, "/app", "application/json"); r.status != http.StatusUnauthorized {
			t.Errorf("the unfinished session still counts after enrollment: %s", r)
		}

		g.addUser(t, "nora", "user")
		n := g.newBrowser(t)
		n.mustLogin("nora")
		r = n.api("/ops")
		if r.status != http.StatusForbidden || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("a user without the admin role on /ops: %s", r)
		}
		if strings.Contains(r.body, "admin") {
			t.Errorf("the 403 names the role it wants: %s", r.body)
		}
		if r := n.page("/ops"); r.status != http.StatusForbidden {
			t.Errorf("a user without the admin role loading /ops: %s", r)
		}
		n.reachesUpstream("/app", "nora", "user")
	})

	t.Run("password and TOTP, each code once", func(t *testing.T) {
		g.addUser(t, "tara", "user")
		b := g.newBrowser(t)
		b.mustLogin("tara")
		r := b.page(portal.PathTOTP)
		if r.status != http.StatusOK {
			t.Fatalf("enrollment page: %s", r)
		}
		secret := totpSecret(t, r.body)
		r = b.post(portal.PathTOTP, url.Values{portal.FieldCode: {mfa.Code(secret, g.clock.Now())}})
		codes := recoveryCodes(t, r.body)
		if r.status != http.StatusOK || len(codes) != accounts.RecoveryCodeCount {
			t.Fatalf("enrolling: %s", r)
		}
		g.clock.Advance(mfa.Period) // the enrollment used this step's code

		passwordStep := func() *browser {
			t.Helper()
			a := g.newBrowser(t)
			r := a.login("tara", testPassword, "/app")
			if want := portal.PathLoginTOTP + "?return_to=%2Fapp"; r.status != http.StatusSeeOther || r.location() != want {
				t.Fatalf("password step: %s\nwant 303 to %s", r, want)
			}
			return a
		}
		a := passwordStep()
		a.sentToLogin("/app", portal.PathLoginTOTP)
		if r := a.api("/app"); r.status != http.StatusUnauthorized {
			t.Errorf("API call waiting for the second factor: %s", r)
		}
		if r := a.page(portal.PathLoginTOTP + "?return_to=%2Fapp"); r.status != http.StatusOK || !strings.Contains(r.body, `name="code"`) {
			t.Errorf("second factor page: %s", r)
		}
		code := mfa.Code(secret, g.clock.Now())
		r = a.post(portal.PathLoginTOTP, url.Values{portal.FieldCode: {code}, portal.FieldReturnTo: {"/app"}})
		if r.status != http.StatusSeeOther || r.location() != "/app" {
			t.Fatalf("TOTP step: %s", r)
		}
		a.reachesUpstream("/app", "tara", "user")

		// The same code, in the same 30 s step, from another browser.
		replay := passwordStep()
		r = replay.post(portal.PathLoginTOTP, url.Values{portal.FieldCode: {code}, portal.FieldReturnTo: {"/app"}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "The code is not correct.") {
			t.Errorf("a TOTP code used twice: %s", r)
		}
		replay.sentToLogin("/app", portal.PathLoginTOTP)

		// A recovery code works once.
		g.clock.Advance(2 * g.cfg.Accounts.Lockout.BackOff.D()) // the refused code's back-off
		r = replay.post(portal.PathLoginRecovery, url.Values{portal.FieldRecoveryCode: {codes[0]}, portal.FieldReturnTo: {"/app"}})
		if r.status != http.StatusSeeOther || r.location() != "/app" {
			t.Fatalf("recovery code: %s", r)
		}
		replay.reachesUpstream("/app", "tara", "user")
		c := passwordStep()
		r = c.post(portal.PathLoginRecovery, url.Values{portal.FieldRecoveryCode: {codes[0]}, portal.FieldReturnTo: {"/app"}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "The code is not correct.") {
			t.Errorf("a recovery code used twice: %s", r)
		}
		c.sentToLogin("/app", portal.PathLoginTOTP)
		g.clock.Advance(2 * g.cfg.Accounts.Lockout.BackOff.D())
		r = c.post(portal.PathLoginRecovery, url.Values{portal.FieldRecoveryCode: {codes[1]}, portal.FieldReturnTo: {"/app"}})
		if r.status != http.StatusSeeOther {
			t.Errorf("another recovery code: %s", r)
		}
	})

	t.Run("passkeys", func(t *testing.T) {
		g.addUser(t, "pia", "user")
		pk := passkeytest.New(t, g.cfg.Accounts.Passkeys.RPID, g.cfg.Accounts.Passkeys.Origins[0])
		b := g.newBrowser(t)
		b.mustLogin("pia")

		r := b.do("POST", portal.PathPasskeyRegisterBegin, map[string]string{"Content-Type": "application/json"}, strings.NewReader("{}"))
		if r.status != http.StatusForbidden {
			t.Errorf("passkey registration without the CSRF header: %s", r)
		}
		begin := passkeyBegin(t, b, portal.PathPasskeyRegisterBegin, map[string]string{portal.FieldName: "Laptop"})
		r = b.postJSON(portal.PathPasskeyRegisterFinish, portal.PasskeyFinish{Ceremony: begin.Ceremony, Credential: pk.Create(begin.Options), Name: "Laptop"})
		if rep := passkeyReply(t, r); r.status != http.StatusOK || !strings.HasPrefix(rep.Redirect, "/.moat/") {
			t.Fatalf("finishing the registration: %s", r)
		}
		if r := b.page(portal.PathPasskeys); r.status != http.StatusOK || !strings.Contains(r.body, "Laptop") {
			t.Errorf("passkeys page does not list the new passkey: %s", r)
		}

		r = b.post(portal.PathLogout, nil)
		if r.status != http.StatusOK || !r.clearsSession() {
			t.Fatalf("logout: %s", r)
		}
		b.sentToLogin("/app", portal.PathLogin)

		// Passwordless: no user name, the passkey names its user.
		begin = passkeyBegin(t, b, portal.PathPasskeyLoginBegin, map[string]string{portal.FieldReturnTo: "/app"})
		r = b.postJSON(portal.PathPasskeyLoginFinish, portal.PasskeyFinish{Ceremony: begin.Ceremony, Credential: pk.Get(begin.Options), ReturnTo: "/app"})
		if rep := passkeyReply(t, r); r.status != http.StatusOK || rep.Redirect != "/app" {
			t.Fatalf("passwordless login: %s", r)
		}
		b.reachesUpstream("/app", "pia", "user")

		// A replayed answer to a finished ceremony does not log in.
		other := g.newBrowser(t)
		r = other.postJSON(portal.PathPasskeyLoginFinish, portal.PasskeyFinish{Ceremony: begin.Ceremony, Credential: pk.Get(begin.Options), ReturnTo: "/app"})
		if r.status == http.StatusOK || other.session() != "" {
			t.Errorf("a used ceremony logged in again: %s", r)
		}

		// The passkey as the second factor after the password.
		c := g.newBrowser(t)
		r = c.login("pia", testPassword, "/app")
		if want := portal.PathLoginTOTP + "?return_to=%2Fapp"; r.status != http.StatusSeeOther || r.location() != want {
			t.Fatalf("password step with a passkey: %s", r)
		}
		c.sentToLogin("/app", portal.PathLoginTOTP)
		begin = passkeyBegin(t, c, portal.PathPasskeyVerifyBegin, map[string]string{portal.FieldReturnTo: "/app"})
		r = c.postJSON(portal.PathPasskeyVerifyFinish, portal.PasskeyFinish{Ceremony: begin.Ceremony, Credential: pk.Get(begin.Options), ReturnTo: "/app"})
		if rep := passkeyReply(t, r); r.status != http.StatusOK || rep.Redirect != "/app" {
			t.Fatalf("passkey as the second factor: %s", r)
		}
		c.reachesUpstream("/app", "pia", "user")
	})

	t.Run("lockout and back-off", func(t *testing.T) {
		g.addUser(t, "lou", "user")
		lo := g.cfg.Accounts.Lockout
		b := g.newBrowser(t)
		wrong := b.login("lou", "not the password at all", "/app")
		if wrong.status != http.StatusUnauthorized || !strings.Contains(wrong.body, "The user name or password is not correct.") {
			t.Fatalf("wrong password: %s", wrong)
		}
		generic := normalize(wrong.body, "")

		// Retrying at once is refused without looking at the password.
		r := b.login("lou", testPassword, "/app")
		if r.status != wrong.status || normalize(r.body, "") != generic || b.session() != "" {
			t.Errorf("the right password during the back-off: %s", r)
		}
		if !g.events.hasReason("login.failed", "lou", "account_backoff") {
			t.Error("no login.failed event with reason account_backoff")
		}
		g.clock.Advance(lo.BackOff.D())
		b.mustLogin("lou")
		b.post(portal.PathLogout, nil)

		// max_failures wrong passwords, each after its back-off, lock the account.
		for i := range lo.MaxFailures {
			r := b.login("lou", fmt.Sprintf("wrong password number %d", i), "/app")
			if r.status != wrong.status || normalize(r.body, "") != generic {
				t.Fatalf("wrong password %d: %s", i+1, r)
			}
			g.clock.Advance(lo.BackOff.D() << i)
		}
		if !g.events.hasReason("account.locked", "lou", "wrong_password") {
			t.Error("no account.locked event")
		}
		g.clock.Advance(lo.LockFor.D() / 2)
		r = b.login("lou", testPassword, "/app")
		if r.status != wrong.status || normalize(r.body, "") != generic || b.session() != "" {
			t.Errorf("the right password while locked: %s\nwant the same page as a wrong one", r)
		}
		if !g.events.hasReason("login.failed", "lou", "account_locked") {
			t.Error("no login.failed event with reason account_locked")
		}
		g.clock.Advance(lo.LockFor.D() / 2)
		b.mustLogin("lou")
		b.reachesUpstream("/app", "lou", "user")
	})

	t.Run("no user enumeration", func(t *testing.T) {
		const known, unknown = "enum-known", "enum-ghost" // same length
		g.addUser(t, known, "user")
		b := g.newBrowser(t)
		b.token()
		attempt := func(user string) (*reply, time.Duration) {
			// Past the window: no back-off or lock from the previous attempt.
			g.clock.Advance(g.cfg.Accounts.Lockout.Window.D() + time.Second)
			start := time.Now()
			r := b.login(user, "definitely wrong password", "/app")
			return r, time.Since(start)
		}
		rk, _ := attempt(known)
		ru, _ := attempt(unknown)
		if rk.status != ru.status || rk.status != http.StatusUnauthorized {
			t.Errorf("status: known user %d, unknown user %d", rk.status, ru.status)
		}
		if kb, ub := normalize(rk.body, known), normalize(ru.body, unknown); kb != ub {
			t.Errorf("bodies differ:\nknown:   %s\nunknown: %s", kb, ub)
		}
		for _, h := range []http.Header{rk.header, ru.header} {
			h.Del("Date")
			h.Del("X-Request-Id")
		}
		if kh, uh := fmt.Sprint(rk.header), fmt.Sprint(ru.header); kh != uh {
			t.Errorf("headers differ:\nknown:   %s\nunknown: %s", kh, uh)
		}

		// Both answers cost a full password hash: an unknown user is not
		// answered faster.
		const rounds = 5
		var tk, tu []time.Duration
		for range rounds {
			_, d := attempt(known)
			tk = append(tk, d)
			_, d = attempt(unknown)
			tu = append(tu, d)
		}
		mk, mu := median(tk), median(tu)
		lo, hi := min(mk, mu), max(mk, mu)
		t.Logf("median time: known user %v, unknown user %v", mk, mu)
		if hi-lo > 50*time.Millisecond && hi > 3*lo {
			t.Errorf("median time: known user %v, unknown user %v: the difference tells whether a user exists", mk, mu)
		}
	})

	t.Run("session fixation", func(t *testing.T) {
		g.addUser(t, "fay", "user")
		g.addUser(t, "mal", "user")

		// A made-up token planted before login.
		v := g.newBrowser(t)
		planted := newFakeToken(t)
		v.setSession(planted)
		if tok := v.mustLogin("fay"); tok == planted {
			t.Error("login adopted a planted session token")
		}
		v.reachesUpstream("/app", "fay", "user")

		// The valid session of another user, planted in the victim's browser.
		m := g.newBrowser(t)
		mtok := m.mustLogin("mal")
		w := g.newBrowser(t)
		w.setSession(mtok)
		if tok := w.mustLogin("fay"); tok == mtok {
			t.Error("login kept the planted session")
		}
		w.reachesUpstream("/app", "fay", "user")
		r := m.page("/app")
		if r.status != http.StatusSeeOther || !r.clearsSession() {
			t.Errorf("the planted session still works after the victim's login: %s", r)
		}
	})

	t.Run("revocation, logout and disabled users", func(t *testing.T) {
		g.addUser(t, "rex", "user")
		b := g.newBrowser(t)
		tok := b.mustLogin("rex")
		b.reachesUpstream("/app", "rex", "user")
		n, err := svc.RevokeSessions(ctx, "rex")
		if err != nil || n != 1 {
			t.Fatalf("RevokeSessions: %d, %v", n, err)
		}
		refused := func(what, tok string) {
			t.Helper()
			r := g.withCookie(t, tok, "/app", "text/html")
			if r.status != http.StatusSeeOther || r.location() != portal.PathLogin+"?return_to=%2Fapp" || !r.clearsSession() {
				t.Errorf("%s: page load %s\nwant 303 to the login page, clearing the cookie", what, r)
			}
			r = g.withCookie(t, tok, "/app", "application/json")
			if r.status != http.StatusUnauthorized || !r.clearsSession() {
				t.Errorf("%s: API call %s\nwant 401, clearing the cookie", what, r)
			}
		}
		refused("after revoke-sessions", tok)
		b.sentToLogin("/app", portal.PathLogin)
		if b.session() != "" {
			t.Error("the browser kept the revoked cookie")
		}

		tok = b.mustLogin("rex")
		r := b.post(portal.PathLogout, nil)
		if r.status != http.StatusOK || !r.clearsSession() || b.session() != "" {
			t.Errorf("logout: %s", r)
		}
		refused("after logout", tok)

		tok = b.mustLogin("rex")
		if err := svc.SetStatus(ctx, "rex", accounts.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		refused("user disabled", tok)
		r = b.login("rex", testPassword, "/app")
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "The user name or password is not correct.") {
			t.Errorf("login of a disabled user: %s", r)
		}
		if err := svc.SetStatus(ctx, "rex", accounts.StatusActive); err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(g.cfg.Accounts.Lockout.BackOff.D())
		b.mustLogin("rex")
		b.reachesUpstream("/app", "rex", "user")
	})

	t.Run("no open redirect", func(t *testing.T) {
		g.addUser(t, "otto", "user")
		b := g.newBrowser(t)
		for _, c := range []struct {
			name, returnTo, want string
		}{
			{"absolute URL", "https://evil.example/", "/"},
			{"scheme-relative", "//evil.example", "/"},
			{"backslash", `/\evil.example`, "/"},
			{"javascript", "javascript:alert(1)", "/"},
			{"encoded slashes", "/%2F%2Fevil.example", "/"},
			{"CR LF", "/app\r\nLocation: https://evil.example/", "/"},
			{"tab", "/\t/evil.example", "/"},
			{"logout", portal.PathLogout, "/"},
			{"same-site path with a query", "/app/reports?year=2025&q=a%20b", "/app/reports?year=2025&q=a%20b"},
		} {
			t.Run(c.name, func(t *testing.T) {
				page := b.page(portal.PathLogin + "?" + portal.FieldReturnTo + "=" + url.QueryEscape(c.returnTo))
				hidden := formValue(t, page.body, portal.FieldReturnTo)
				wantHidden := c.want
				if wantHidden == "/" {
					wantHidden = "" // the default is left out of the form
				}
				if hidden != wantHidden {
					t.Errorf("login page carries return_to %q, want %q", hidden, wantHidden)
				}
				r := b.login("otto", testPassword, c.returnTo)
				loc := r.location()
				if r.status != http.StatusSeeOther || offSite(loc) || loc != c.want {
					t.Errorf("after login: %s\nwant 303 to %q", r, c.want)
				}
			})
		}
		b.reachesUpstream("/app/reports?year=2025&q=a%20b", "otto", "user")
	})

	t.Run("cross-site and tokenless form posts", func(t *testing.T) {
		g.addUser(t, "cara", "user")
		b := g.newBrowser(t)
		creds := func(csrf string) url.Values {
			f := url.Values{portal.FieldUsername: {"cara"}, portal.FieldPassword: {testPassword}}
			if csrf != "" {
				f.Set(portal.FieldCSRF, csrf)
			}
			return f
		}
		sameOrigin := map[string]string{"Origin": g.base, "Sec-Fetch-Site": "same-origin"}
		foreign := g.newBrowser(t).token() // valid, but for another browser's cookie
		for _, c := range []struct {
			name string
			form url.Values
			hdr  map[string]string
		}{
			{"Origin of another site", creds(b.token()), map[string]string{"Origin": "https://evil.example"}},
			{"Sec-Fetch-Site cross-site", creds(b.token()), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
			{"Sec-Fetch-Site cross-site without Origin", creds(b.token()), map[string]string{"Sec-Fetch-Site": "cross-site"}},
			{"sibling subdomain", creds(b.token()), map[string]string{"Sec-Fetch-Site": "same-site"}},
			{"Origin null", creds(b.token()), map[string]string{"Origin": "null"}},
			{"no token", creds(""), sameOrigin},
			{"another browser's token", creds(foreign), sameOrigin},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := b.postRaw(portal.PathLogin, c.form, c.hdr)
				if r.status != http.StatusForbidden || !strings.Contains(r.body, "sent from another site") {
					t.Errorf("login form: %s\nwant 403", r)
				}
				if r.cookie(session.CookieName) != nil || b.session() != "" {
					t.Errorf("a refused form post signed the browser in")
				}
			})
		}

		// The other forms, once signed in: a forged logout does not end the
		// session, and nothing else is accepted either.
		b.mustLogin("cara")
		for _, path := range []string{portal.PathLogout, portal.PathLogoutEverywhere, portal.PathPassword, portal.PathTOTP,
			portal.PathLoginTOTP, portal.PathLoginRecovery, portal.PathRecoveryCodesNew} {
			t.Run(path, func(t *testing.T) {
				for name, c := range map[string]struct {
					form url.Values
					hdr  map[string]string
				}{
					"cross-site": {url.Values{portal.FieldCSRF: {b.token()}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
					"no token":   {url.Values{}, sameOrigin},
				} {
					if r := b.postRaw(path, c.form, c.hdr); r.status != http.StatusForbidden {
						t.Errorf("%s: %s\nwant 403", name, r)
					}
				}
			})
		}
		r := b.do("POST", portal.PathPasskeyLoginBegin, map[string]string{"Content-Type": "application/json",
			portal.CSRFHeader: b.token(), "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, strings.NewReader("{}"))
		if r.status != http.StatusForbidden {
			t.Errorf("cross-site passkey begin: %s", r)
		}
		b.reachesUpstream("/app", "cara", "user")
	})

	t.Run("idle timeout", func(t *testing.T) {
		g.addUser(t, "ida", "user")
		b := g.newBrowser(t)
		b.mustLogin("ida")
		idle := g.cfg.Accounts.Sessions.IdleTimeout.D()
		// Use keeps the session alive, each time for another idle_timeout.
		for range 2 {
			g.clock.Advance(idle - time.Minute)
			b.reachesUpstream("/app", "ida", "user")
		}
		g.clock.Advance(idle + time.Second)
		r := b.page("/app")
		if r.status != http.StatusSeeOther || r.location() != portal.PathLogin+"?return_to=%2Fapp" || !r.clearsSession() {
			t.Errorf("after idle_timeout without use: %s\nwant 303 to the login page, clearing the cookie", r)
		}
	})
}

// TestFirstAdminBootstrap starts gateways on one data directory: the first
// start on an empty store makes the admin and a one-time link, a second
// start before enrollment replaces the link, and once the admin has
// enrolled no start makes another admin or link.
func TestFirstAdminBootstrap(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	g1 := startLoginGateway(t, dir, "")
	link1 := g1.srv.BootstrapLink()
	if !strings.HasPrefix(link1, g1.cfg.Accounts.PublicURL+portal.PathPassword+"?token=") {
		t.Fatalf("BootstrapLink on an empty store: %q", link1)
	}
	users, err := g1.srv.Accounts().Service.Users(ctx)
	if err != nil || len(users) != 1 || users[0].Username != "admin" || !slices.Equal(users[0].Roles, []string{"admin", "moat:admin"}) {
		t.Fatalf("users after the first start: %v %v", users, err)
	}
	stopGateway(t, g1)

	g2 := startLoginGateway(t, dir, "")
	link2 := g2.srv.BootstrapLink()
	if link2 == "" || link2 == link1 {
		t.Fatalf("second start before enrollment: link %q, want a new one", link2)
	}
	enroll := func(link string) *reply {
		t.Helper()
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		a := g2.newBrowser(t)
		if r := a.page(u.RequestURI()); r.status != http.StatusSeeOther {
			t.Fatalf("opening %s: %s", link, r)
		}
		return a.post(portal.PathPassword, url.Values{portal.FieldNewPassword: {testPassword}, portal.FieldConfirmPassword: {testPassword}})
	}
	if r := enroll(link1); r.status != http.StatusBadRequest {
		t.Errorf("the replaced link: %s", r)
	}
	if r := enroll(link2); r.status != http.StatusSeeOther {
		t.Fatalf("the new link: %s", r)
	}
	if r := enroll(link2); r.status != http.StatusBadRequest {
		t.Errorf("the link a second time: %s", r)
	}
	a := g2.newBrowser(t)
	if r := a.login("admin", testPassword, "/ops"); r.status != http.StatusSeeOther || r.location() != portal.PathTOTP {
		t.Errorf("the admin's first login: %s\nwant 303 to the second factor enrollment", r)
	}
	stopGateway(t, g2)

	g3 := startLoginGateway(t, dir, "")
	if l := g3.srv.BootstrapLink(); l != "" {
		t.Errorf("start after enrollment made a link: %q", l)
	}
	users, err = g3.srv.Accounts().Service.Users(ctx)
	if err != nil || len(users) != 1 {
		t.Errorf("users after the third start: %v %v", users, err)
	}
}

// passkeyBegin starts a passkey ceremony at path and returns its options.
func passkeyBegin(t *testing.T, a *browser, path string, fields map[string]string) portal.PasskeyBegin {
	t.Helper()
	r := a.postJSON(path, fields)
	var b portal.PasskeyBegin
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &b) != nil || len(b.Options) == 0 {
		t.Fatalf("POST %s: %s", path, r)
	}
	return b
}

func passkeyReply(t *testing.T, r *reply) portal.PasskeyReply {
	t.Helper()
	var rep portal.PasskeyReply
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Errorf("passkey reply %q is not JSON: %v", r.body, err)
	}
	return rep
}

// offSite reports whether a Location could take the browser to another
// site, or be read differently by one.
func offSite(loc string) bool {
	u, err := url.Parse(loc)
	return err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(loc, "/") ||
		strings.HasPrefix(loc, "//") || strings.ContainsAny(loc, "\\\r\n\t")
}

// newFakeToken returns a well-formed session token that names no session.
func newFakeToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not a number", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// hasReason reports whether an event of kind about principal was
// recorded with the given reason.
func (r *recorder) hasReason(kind, principal, reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && e.Principal == principal && e.Details["reason"] == reason {
			return true
		}
	}
	return false
}
