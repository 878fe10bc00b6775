package oidc

import (
	"context"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/oidc/oidctest"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

// The public URL of the RP in tests that call its handler directly.
const publicURL = "https://moat.test"

type events struct {
	mu sync.Mutex
	es []event.Event
}

func (e *events) Record(_ context.Context, ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.es = append(e.es, ev)
}

func (e *events) last(kind string) *event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.es) - 1; i >= 0; i-- {
		if e.es[i].Kind == kind {
			ev := e.es[i]
			return &ev
		}
	}
	return nil
}

// pages renders error pages with html/template, as the portal does.
type pages struct{}

var pageTmpl = template.Must(template.New("p").Parse(`<h1>{{.Title}}</h1><p>{{.Message}}</p>`))

func (pages) Error(w http.ResponseWriter, _ *http.Request, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Title, Message string }{title, message})
}

type fixture struct {
	p     *oidctest.Provider
	rp    *RP
	acct  *accounts.Service
	ev    *events
	clock *testclock.Clock // the RP's; accounts run on the real time
}

// newAccounts builds an accounts.Service over a real SQLite store with an
// encrypting key ring, as the accounts package's own tests do.
func newAccounts(t *testing.T, ev event.Recorder) *accounts.Service {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	sessions, err := session.New(st.Sessions(), session.Options{CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sessions.Close() })
	hasher, err := password.NewHasher(password.DefaultParams(), 64<<20, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.New(ctx, accounts.Options{
		Store: st, Hasher: hasher, Policy: password.DefaultPolicy(), Sessions: sessions,
		Events: ev,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// testProvider is the provider configuration the tests start from: the
// provider's groups mapped to roles that need no second factor.
func testProvider(p *oidctest.Provider) Provider {
	return Provider{
		Name: "example", DisplayName: "Example ID", Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
		RolesClaim: oidctest.GroupsClaim,
		RoleMap: map[string][]string{
			oidctest.GroupAdmins: {"ops"},
			oidctest.GroupStaff:  {"viewer"},
		},
		DefaultRoles: []string{"user"},
	}
}

func newFixture(t *testing.T, change ...func(*Options)) *fixture {
	t.Helper()
	p := oidctest.Start(t, publicURL+CallbackPath)
	ev := &events{}
	f := &fixture{p: p, ev: ev, acct: newAccounts(t, ev), clock: testclock.New(time.Now())}
	o := Options{
		Providers: []Provider{testProvider(p)},
		PublicURL: publicURL,
		Accounts:  f.acct,
		StateKey:  testKey(9),
		Client:    p.HTTPClient(),
		Now:       f.clock.Now,
		Events:    ev,
		Pages:     pages{},
	}
	for _, c := range change {
		c(&o)
	}
	rp, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.rp = rp
	return f
}

// serve runs one request through the RP's handler.
func (f *fixture) serve(t *testing.T, target string, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.rp.Handler().ServeHTTP(rec, r)
	return rec.Result()
}

// start begins a sign-in at the provider "example" and returns the
// authorization URL and the state cookie.
func (f *fixture) start(t *testing.T, returnTo string) (string, *http.Cookie) {
	t.Helper()
	resp := f.serve(t, publicURL+StartPrefix+"example/start?return_to="+url.QueryEscape(returnTo))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %s: %s", resp.Status, body(t, resp))
	}
	c := cookieNamed(resp, stateCookie)
	if c == nil {
		t.Fatal("start set no state cookie")
	}
	return resp.Header.Get("Location"), c
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantFailed checks the last login.failed event's reason and client IP.
func (f *fixture) wantFailed(t *testing.T, reason string) *event.Event {
	t.Helper()
	e := f.ev.last("login.failed")
	if e == nil {
		t.Fatalf("no login.failed event; want reason %q", reason)
	}
	if e.Details["reason"] != reason {
		t.Errorf("login.failed reason %q (details %v), want %q", e.Details["reason"], e.Details, reason)
	}
	if e.ClientIP != "192.0.2.1" {
		t.Errorf("login.failed client IP %q, want the request's", e.ClientIP)
	}
	return e
}

func (f *fixture) users(t *testing.T) []*store.User {
	t.Helper()
	us, err := f.acct.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// TestFullLogin signs in through a real browser-like client with a cookie
// jar, against the RP served over TLS, twice.
func TestFullLogin(t *testing.T) {
	p := oidctest.Start(t)
	ev := &events{}
	acct := newAccounts(t, ev)
	var rp *RP
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rp.Handler().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	p.AllowRedirectURI(srv.URL + CallbackPath)
	var err error
	rp, err = New(Options{Providers: []Provider{testProvider(p)}, PublicURL: srv.URL, Accounts: acct,
		StateKey: testKey(3), Client: p.HTTPClient(), Events: ev, Pages: pages{}})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	browser := p.HTTPClient() // trusts both servers: httptest shares its certificate
	browser.Jar = jar
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	rpURL, _ := url.Parse(srv.URL)

	login := func(t *testing.T) (*http.Response, *http.Cookie) {
		t.Helper()
		resp, err := browser.Get(srv.URL + StartPrefix + "example/start?return_to=" + url.QueryEscape("/app?tab=2"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start: %s", resp.Status)
		}
		sc := cookieNamed(resp, stateCookie)
		if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.MaxAge != 600 {
			t.Errorf("state cookie %v: want Secure, HttpOnly, SameSite=Lax, Path=/, Max-Age=600", sc)
		}
		auth, _ := url.Parse(resp.Header.Get("Location"))
		q := auth.Query()
		for k, want := range map[string]string{"client_id": p.ClientID, "redirect_uri": srv.URL + CallbackPath,
			"response_type": "code", "code_challenge_method": "S256"} {
			if q.Get(k) != want {
				t.Errorf("authorization request %s=%q, want %q", k, q.Get(k), want)
			}
		}
		if q.Get("state") == "" || q.Get("nonce") == "" || q.Get("code_challenge") == "" || !strings.Contains(q.Get("scope"), "openid") {
			t.Errorf("authorization request %q lacks a state, nonce, PKCE challenge or the openid scope", auth.RawQuery)
		}
		cb := p.Login(t, browser, auth.String())
		resp, err = browser.Get(cb)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app?tab=2" {
			t.Fatalf("callback: %s to %q: %s", resp.Status, resp.Header.Get("Location"), body(t, resp))
		}
		resp.Body.Close()
		if c := cookieNamed(resp, stateCookie); c == nil || c.MaxAge >= 0 {
			t.Errorf("the callback did not clear the state cookie: %v", c)
		}
		sess := cookieNamed(resp, session.CookieName)
		if sess == nil || !sess.Secure || !sess.HttpOnly {
			t.Fatalf("the callback set no proper session cookie: %v", sess)
		}
		return resp, sess
	}

	_, first := login(t)
	pr, err := acct.Authenticate(context.Background(), first.Value)
	if err != nil {
		t.Fatalf("the new session does not authenticate: %v", err)
	}
	if pr.Username != p.User.Username || pr.Pending != "" || !slices.Contains(pr.Methods, accounts.MethodOIDC) {
		t.Errorf("principal %+v: want user %q, fully signed in with oidc", pr, p.User.Username)
	}
	if want := []string{"ops", "user", "viewer"}; !slices.Equal(pr.Roles, want) {
		t.Errorf("roles %q, want %q (mapped from the groups %q, plus the default)", pr.Roles, want, p.User.Groups)
	}
	if e := ev.last("user.created"); e == nil || e.Details["provider"] != "example" {
		t.Errorf("user.created event: %+v", e)
	}
	users, _ := acct.Users(context.Background())
	if len(users) != 1 || users[0].Email != p.User.Email || users[0].DisplayName != p.User.Name {
		t.Fatalf("users after the first login: %+v; want one, with the e-mail and name from userinfo", users)
	}

	t.Run("a second login links to the same user and ends the old session", func(t *testing.T) {
		if got := jar.Cookies(rpURL); len(got) == 0 {
			t.Fatal("the jar holds no session cookie to send")
		}
		_, second := login(t)
		pr2, err := acct.Authenticate(context.Background(), second.Value)
		if err != nil {
			t.Fatal(err)
		}
		if pr2.UserID != pr.UserID {
			t.Errorf("second login as user %q, first as %q", pr2.UserID, pr.UserID)
		}
		if users, _ := acct.Users(context.Background()); len(users) != 1 {
			t.Errorf("%d users after two logins of the same person", len(users))
		}
		if _, err := acct.Authenticate(context.Background(), first.Value); err == nil {
			t.Error("the session the browser had before signing in again still works")
		}
	})
}

func TestSecondFactorOutcomes(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Providers[0].RoleMap = map[string][]string{oidctest.GroupAdmins: {"admin"}}
	})
	auth, c := f.start(t, "/admin")
	resp := f.serve(t, f.p.Login(t, f.p.HTTPClient(), auth), c)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != portal.PathTOTP {
		t.Fatalf("admin without MFA at the provider: %s to %q; want %s", resp.Status, resp.Header.Get("Location"), portal.PathTOTP)
	}
	sess := cookieNamed(resp, session.CookieName)
	if sess == nil {
		t.Fatal("no session cookie for the enrollment")
	}
	pr, err := f.acct.Authenticate(context.Background(), sess.Value)
	if err != nil || pr.Pending != accounts.PendingEnrollMFA {
		t.Errorf("principal %+v, %v: want a session pending enrollment", pr, err)
	}
}

func TestDisabledUserIsRefused(t *testing.T) {
	f := newFixture(t)
	auth, c := f.start(t, "/")
	if resp := f.serve(t, f.p.Login(t, f.p.HTTPClient(), auth), c); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first login: %s", resp.Status)
	}
	if err := f.acct.SetStatus(context.Background(), f.p.User.Username, accounts.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	auth, c = f.start(t, "/")
	resp := f.serve(t, f.p.Login(t, f.p.HTTPClient(), auth), c)
	if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, session.CookieName) != nil {
		t.Errorf("disabled user: %s, session cookie %v", resp.Status, cookieNamed(resp, session.CookieName))
	}
	if e := f.ev.last("login.failed"); e == nil || e.Details["reason"] != "disabled" {
		t.Errorf("login.failed %+v: want accounts' reason disabled", e)
	}
}

// TestCallbackRefusals tampers with one part of a real sign-in each.
func TestCallbackRefusals(t *testing.T) {
	f := newFixture(t)
	type flow struct {
		callback string
		cookie   *http.Cookie
	}
	// signedIn is a sign-in up to the callback, not yet delivered.
	signedIn := func(t *testing.T) flow {
		auth, c := f.start(t, "/")
		return flow{f.p.Login(t, f.p.HTTPClient(), auth), c}
	}
	reseal := func(t *testing.T, c *http.Cookie, change func(*loginState)) *http.Cookie {
		st, err := f.rp.seal.open(c.Value, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		change(st)
		v, err := f.rp.seal.seal(st)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Cookie{Name: stateCookie, Value: v}
	}
	withQuery := func(t *testing.T, u, k, v string) string {
		pu, _ := url.Parse(u)
		q := pu.Query()
		q.Set(k, v)
		pu.RawQuery = q.Encode()
		return pu.String()
	}
	tests := []struct {
		name       string
		run        func(t *testing.T) *http.Response
		wantStatus int
		wantReason string
		wantCheck  string
	}{
		{"no state cookie", func(t *testing.T) *http.Response {
			return f.serve(t, signedIn(t).callback)
		}, 400, reasonState, "no_cookie"},
		{"a wrong state", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, withQuery(t, fl.callback, "state", "not-the-state"), fl.cookie)
		}, 400, reasonState, "mismatch"},
		{"the cookie of another sign-in", func(t *testing.T) *http.Response {
			a := signedIn(t)
			_, other := f.start(t, "/")
			return f.serve(t, a.callback, other)
		}, 400, reasonState, "mismatch"},
		{"an expired state cookie", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			f.clock.Advance(stateTTL + time.Second)
			return f.serve(t, fl.callback, fl.cookie)
		}, 400, reasonState, "expired"},
		{"a forged state cookie", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			forged, _ := newTestSealer(t, testKey(1)).seal(&loginState{Provider: "example",
				State: url.Values(mustQuery(t, fl.callback)).Get("state"), Expires: f.clock.Now().Add(time.Minute)})
			return f.serve(t, fl.callback, &http.Cookie{Name: stateCookie, Value: forged})
		}, 400, reasonState, "invalid"},
		{"two state cookies", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, fl.callback, fl.cookie, fl.cookie)
		}, 400, reasonState, "several_cookies"},
		{"another nonce", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, fl.callback, reseal(t, fl.cookie, func(st *loginState) { st.Nonce = randomString() }))
		}, 400, reasonNonce, ""},
		{"another PKCE verifier", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, fl.callback, reseal(t, fl.cookie, func(st *loginState) { st.Verifier = randomString() }))
		}, 400, reasonToken, "exchange"},
		{"a replayed callback", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			if resp := f.serve(t, fl.callback, fl.cookie); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("first delivery: %s", resp.Status)
			}
			return f.serve(t, fl.callback, fl.cookie)
		}, 400, reasonToken, "exchange"},
		{"an iss parameter of another issuer", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, withQuery(t, fl.callback, "iss", "https://evil.test"), fl.cookie)
		}, 400, reasonIssuer, ""},
		{"no code", func(t *testing.T) *http.Response {
			fl := signedIn(t)
			return f.serve(t, withQuery(t, fl.callback, "code", ""), fl.cookie)
		}, 400, reasonToken, "no_code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(time.Now())
			resp := tt.run(t)
			b := body(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s, want %d: %s", resp.Status, tt.wantStatus, b)
			}
			if cookieNamed(resp, session.CookieName) != nil {
				t.Error("a refused callback set a session cookie")
			}
			if c := cookieNamed(resp, stateCookie); c == nil || c.MaxAge >= 0 {
				t.Error("a refused callback left the state cookie")
			}
			e := f.wantFailed(t, tt.wantReason)
			if tt.wantCheck != "" && e.Details["check"] != tt.wantCheck {
				t.Errorf("check %q, want %q", e.Details["check"], tt.wantCheck)
			}
			if !strings.Contains(b, "Start again") {
				t.Errorf("the page does not tell the user what to do: %s", b)
			}
		})
	}
}

func mustQuery(t *testing.T, u string) url.Values {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Query()
}

func TestExpiredIDToken(t *testing.T) {
	f := newFixture(t)
	// The provider issues tokens valid for an hour. Moat's clock runs two
	// hours ahead: the state cookie, sealed by that clock, is fresh; the
	// ID token, by that clock, expired.
	f.clock.Set(time.Now().Add(2 * time.Hour))
	auth, c := f.start(t, "/")
	resp := f.serve(t, f.p.Login(t, f.p.HTTPClient(), auth), c)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("%s, want 400", resp.Status)
	}
	if e := f.wantFailed(t, reasonToken); e.Details["check"] != "expired" {
		t.Errorf("check %q, want expired", e.Details["check"])
	}
}

func TestWrongAudience(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e, err := f.rp.endpoints(ctx, f.rp.byName["example"])
	if err != nil {
		t.Fatal(err)
	}
	// A real token of the same provider, issued to another client.
	raw := f.p.IDToken(t, f.p.OtherClientID, f.p.OtherClientSecret, "n")
	_, verr := e.verifier.Verify(ctx, raw)
	if verr == nil {
		t.Fatal("an ID token for another client was accepted")
	}
	if reason, _ := f.rp.verifyFailure(ctx, e, raw, verr); reason != reasonAudience {
		t.Errorf("reason %q, want %q", reason, reasonAudience)
	}
	// The same for this client is accepted: the refusal is the audience.
	if _, err := e.verifier.Verify(ctx, f.p.IDToken(t, f.p.ClientID, f.p.ClientSecret, "n")); err != nil {
		t.Errorf("this client's own token: %v", err)
	}
	t.Run("an RP with another client id refuses this client's token", func(t *testing.T) {
		g := newFixture(t, func(o *Options) { o.Providers[0].ClientID = "someone-else" })
		e, err := g.rp.endpoints(ctx, g.rp.byName["example"])
		if err != nil {
			t.Fatal(err)
		}
		raw := g.p.IDToken(t, g.p.ClientID, g.p.ClientSecret, "n")
		_, verr := e.verifier.Verify(ctx, raw)
		if verr == nil {
			t.Fatal("accepted")
		}
		if reason, _ := g.rp.verifyFailure(ctx, e, raw, verr); reason != reasonAudience {
			t.Errorf("reason %q", reason)
		}
	})
}

func TestProviderDown(t *testing.T) {
	wantDown := func(t *testing.T, f *fixture, resp *http.Response) {
		t.Helper()
		b := body(t, resp)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
		}
		if !strings.Contains(b, "The sign-in provider Example ID is not answering") {
			t.Errorf("page: %s", b)
		}
		f.wantFailed(t, reasonProviderDown)
	}
	t.Run("at the start, then back", func(t *testing.T) {
		f := newFixture(t)
		f.p.SetDown(true)
		wantDown(t, f, f.serve(t, publicURL+StartPrefix+"example/start"))
		f.p.SetDown(false)
		// The failure is remembered for a moment, then discovery is retried.
		wantDown(t, f, f.serve(t, publicURL+StartPrefix+"example/start"))
		f.clock.Advance(discoveryRetry)
		if resp := f.serve(t, publicURL+StartPrefix+"example/start"); resp.StatusCode != http.StatusFound {
			t.Errorf("after the provider came back: %s", resp.Status)
		}
	})
	t.Run("at the token endpoint", func(t *testing.T) {
		f := newFixture(t)
		auth, c := f.start(t, "/")
		cb := f.p.Login(t, f.p.HTTPClient(), auth)
		f.p.SetDown(true)
		wantDown(t, f, f.serve(t, cb, c))
		if f.rp.byName["example"].cur.Load() != nil {
			t.Error("the discovery was kept after the provider stopped answering")
		}
	})
	t.Run("stopped", func(t *testing.T) {
		f := newFixture(t)
		f.p.Stop()
		wantDown(t, f, f.serve(t, publicURL+StartPrefix+"example/start"))
	})
}

func TestProviderError(t *testing.T) {
	f := newFixture(t)
	auth, c := f.start(t, "/")
	cb := f.p.Deny(t, f.p.HTTPClient(), auth, `<script>alert("x")</script> declined`)
	resp := f.serve(t, cb, c)
	b := body(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("%s, want 403: %s", resp.Status, b)
	}
	if strings.Contains(b, "<script>") || !strings.Contains(b, "&lt;script&gt;") || !strings.Contains(b, "access_denied") {
		t.Errorf("page %s: want the error code and the description escaped", b)
	}
	if e := f.wantFailed(t, reasonProviderError); e.Details["error"] != "access_denied" {
		t.Errorf("error detail %q", e.Details["error"])
	}
	if cookieNamed(resp, session.CookieName) != nil {
		t.Error("a session cookie after access_denied")
	}
	t.Run("without the state cookie it is a state failure", func(t *testing.T) {
		auth, _ := f.start(t, "/")
		resp := f.serve(t, f.p.Deny(t, f.p.HTTPClient(), auth, "no"))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s", resp.Status)
		}
		f.wantFailed(t, reasonState)
	})
}

func TestAllowLists(t *testing.T) {
	tests := []struct {
		name       string
		change     func(*Provider)
		user       func(*oidctest.Provider) oidctest.User
		wantStatus int
		wantReason string
	}{
		{"a domain that is not allowed", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com"} },
			nil, http.StatusForbidden, reasonEmailDomain},
		{"the user's domain", func(p *Provider) { p.AllowedEmailDomains = []string{"example.com", "zitadel.ch"} },
			nil, http.StatusSeeOther, ""},
		{"a user without the allowed group", func(p *Provider) { p.AllowedGroups = []string{oidctest.GroupAdmins} },
			func(p *oidctest.Provider) oidctest.User { return p.User2 }, http.StatusForbidden, reasonGroup},
		{"a user with the allowed group", func(p *Provider) { p.AllowedGroups = []string{oidctest.GroupAdmins} },
			nil, http.StatusSeeOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { tt.change(&o.Providers[0]) })
			u := f.p.User
			if tt.user != nil {
				u = tt.user(f.p)
			}
			auth, c := f.start(t, "/")
			resp := f.serve(t, f.p.LoginAs(t, f.p.HTTPClient(), auth, u), c)
			b := body(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s, want %d: %s", resp.Status, tt.wantStatus, b)
			}
			if tt.wantReason == "" {
				return
			}
			e := f.wantFailed(t, tt.wantReason)
			if e.Outcome != event.Denied || e.Details["subject"] != u.Subject {
				t.Errorf("event %+v: want denied, with the subject", e)
			}
			if n := len(f.users(t)); n != 0 {
				t.Errorf("%d users created by a refused sign-in", n)
			}
			if strings.Contains(b, tt.wantReason) {
				t.Errorf("the page tells which check refused: %s", b)
			}
		})
	}
}

func TestReturnTo(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		returnTo, want string
	}{
		{"/app/page?x=1", "/app/page?x=1"},
		{"", "/"},
		{"https://evil.test/", "/"},
		{"//evil.test/", "/"},
		{"/\\evil.test", "/"},
		{"javascript:alert(1)", "/"},
		{"/.moat/logout", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.returnTo, func(t *testing.T) {
			_, c := f.start(t, tt.returnTo)
			st, err := f.rp.seal.open(c.Value, f.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if st.ReturnTo != tt.want {
				t.Errorf("return address %q kept as %q, want %q", tt.returnTo, st.ReturnTo, tt.want)
			}
		})
	}
	t.Run("a full sign-in with an outside return address lands on /", func(t *testing.T) {
		auth, c := f.start(t, "https://evil.test/steal")
		resp := f.serve(t, f.p.Login(t, f.p.HTTPClient(), auth), c)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("%s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
		}
	})
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", StartPrefix + "nope/start", http.StatusNotFound},
		{"GET", StartPrefix + "example/other", http.StatusNotFound},
		{"GET", StartPrefix + "example/start/x", http.StatusNotFound},
		{"POST", StartPrefix + "example/start", http.StatusMethodNotAllowed},
		{"POST", CallbackPath, http.StatusMethodNotAllowed},
		{"GET", "/elsewhere", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.rp.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, publicURL+tt.path, nil))
			if rec.Code != tt.want {
				t.Errorf("%d, want %d", rec.Code, tt.want)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Error("not marked no-store")
			}
		})
	}
}
