package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/testclock"
)

// testPassword is the password the login tests give their users: long,
// and on no breached-password list.
const testPassword = "lanterns over a quiet harbor 1729"

// loginRoutes are the routes of the login tests: /app for any signed-in
// user, /ops for admins, everything else public.
func loginRoutes(upstream string) string {
	return fmt.Sprintf(`  - name: app
    path: /app
    policy: authenticated
    upstreams: [%[1]s]
  - name: ops
    path: /ops
    policy: authenticated
    roles: [admin]
    upstreams: [%[1]s]
  - name: site
    path: /
    policy: public
    upstreams: [%[1]s]
`, upstream)
}

// loginAccounts is the accounts section of the login tests: a small
// lockout threshold, a per-address limit high enough that one test's
// failures do not lock out the next, and a short idle timeout.
const loginAccounts = `accounts:
  lockout: {max_failures: 4, address_max_failures: 1000, window: 15m, lock_for: 10m, back_off: 1s}
  sessions: {idle_timeout: 10m, absolute_timeout: 12h}
`

// loginGateway is a running Server with accounts, in front of an upstream
// that echoes the headers it receives, on a clock the test moves.
type loginGateway struct {
	srv    *Server
	cfg    *config.Config
	clock  *testclock.Clock
	base   string // https://127.0.0.1:port
	pool   *x509.CertPool
	events *recorder
	stop   func() // shuts the server down; later calls do nothing
}

// startLoginGateway starts a gateway with loginRoutes on data directory
// dir (a new one when ""), with accounts as its accounts section.
func startLoginGateway(t *testing.T, dir, accounts string) *loginGateway {
	t.Helper()
	return startLoginGatewayWith(t, dir, accounts, loginRoutes)
}

// startLoginGatewayWith is startLoginGateway with the routes routes
// returns for the upstream's URL.
func startLoginGatewayWith(t *testing.T, dir, accounts string, routes func(upstream string) string) *loginGateway {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	up := echoUpstream(t)
	yml := testConfig(dir, accounts, routes(up.URL))
	cfg, err := config.Parse("login.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	g := &loginGateway{cfg: cfg, clock: testclock.New(time.Now()), events: &recorder{}}
	var logMu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g.srv, err = New(Options{Config: cfg, Logger: logger, Events: g.events, Version: "test", Now: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			logMu.Lock()
			t.Logf("gateway log (tail):\n%s", tailLines(logs.String(), 60))
			logMu.Unlock()
		}
	})
	pem, err := os.ReadFile(g.srv.DevCA())
	if err != nil {
		t.Fatal(err)
	}
	g.pool = x509.NewCertPool()
	g.pool.AppendCertsFromPEM(pem)
	g.base = "https://" + g.srv.Addr("https").String()
	return g
}

// stopGateway shuts g down before the test ends, to start another
// gateway on its data directory.
func stopGateway(t *testing.T, g *loginGateway) {
	t.Helper()
	g.stop()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// addUser creates a user with roles and testPassword, as an administrator
// would with moat user add --password-stdin.
func (g *loginGateway) addUser(t *testing.T, name string, roles ...string) {
	t.Helper()
	ctx := context.Background()
	svc := g.srv.Accounts().Service
	_, tok, err := svc.CreateUser(ctx, name, "", "", roles)
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if _, err := svc.SetPasswordWithToken(ctx, tok, testPassword); err != nil {
		t.Fatalf("setting the password of %s: %v", name, err)
	}
}

// browser is what one web browser keeps: a cookie jar, and a client that does not follow
// redirects, so that each Location can be checked.
type browser struct {
	t    *testing.T
	g    *loginGateway
	jar  *cookiejar.Jar
	c    *http.Client
	csrf string // the CSRF token of the jar's CSRF cookie, once read from a page
}

func (g *loginGateway) newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	t.Cleanup(c.CloseIdleConnections)
	return &browser{t: t, g: g, jar: jar, c: c}
}

// reply is a response, read whole.
type reply struct {
	status int
	header http.Header
	body   string
}

func (r *reply) location() string { return r.header.Get("Location") }

// cookie returns the Set-Cookie of the response for name, or nil.
func (r *reply) cookie(name string) *http.Cookie {
	for _, line := range r.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == name {
			return c
		}
	}
	return nil
}

// clearsSession reports whether the response tells the browser to drop
// the session cookie.
func (r *reply) clearsSession() bool {
	c := r.cookie(session.CookieName)
	return c != nil && c.MaxAge < 0 && c.Value == ""
}

func (r *reply) String() string {
	return fmt.Sprintf("%d Location=%q Set-Cookie=%q\n%.600s", r.status, r.location(), r.header.Values("Set-Cookie"), r.body)
}

// do sends a request with the given headers and body.
func (a *browser) do(method, path string, hdr map[string]string, body io.Reader) *reply {
	a.t.Helper()
	req, err := http.NewRequest(method, a.g.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// page loads a page as a browser does.
func (a *browser) page(path string) *reply {
	a.t.Helper()
	return a.do("GET", path, map[string]string{"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "Sec-Fetch-Site": "none"}, nil)
}

// api calls path as a script or API client does.
func (a *browser) api(path string) *reply {
	a.t.Helper()
	return a.do("GET", path, map[string]string{"Accept": "application/json"}, nil)
}

// token returns the CSRF token for this browser, loading the login page
// once to get its cookie and token.
func (a *browser) token() string {
	a.t.Helper()
	if a.csrf == "" {
		r := a.page(portal.PathLogin)
		if r.status != http.StatusOK {
			a.t.Fatalf("login page: %s", r)
		}
		a.csrf = formValue(a.t, r.body, portal.FieldCSRF)
		if a.csrf == "" {
			a.t.Fatalf("login page has no csrf field:\n%s", r.body)
		}
	}
	return a.csrf
}

// post submits a portal form from one of the portal's own pages: with the
// CSRF token, and the headers a browser adds to a same-origin form post.
func (a *browser) post(path string, form url.Values) *reply {
	a.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has(portal.FieldCSRF) {
		form.Set(portal.FieldCSRF, a.token())
	}
	return a.postRaw(path, form, map[string]string{"Origin": a.g.base, "Sec-Fetch-Site": "same-origin"})
}

// postRaw submits form as it is, with hdr.
func (a *browser) postRaw(path string, form url.Values, hdr map[string]string) *reply {
	a.t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
	for k, v := range hdr {
		h[k] = v
	}
	return a.do("POST", path, h, strings.NewReader(form.Encode()))
}

// postJSON calls a passkey endpoint as webauthn.js does.
func (a *browser) postJSON(path string, v any) *reply {
	a.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.do("POST", path, map[string]string{
		"Content-Type":    "application/json",
		"Accept":          "application/json",
		portal.CSRFHeader: a.token(),
		"Origin":          a.g.base,
		"Sec-Fetch-Site":  "same-origin",
	}, bytes.NewReader(b))
}

// login submits the login form.
func (a *browser) login(user, pw, returnTo string) *reply {
	a.t.Helper()
	f := url.Values{portal.FieldUsername: {user}, portal.FieldPassword: {pw}}
	if returnTo != "" {
		f.Set(portal.FieldReturnTo, returnTo)
	}
	return a.post(portal.PathLogin, f)
}

// mustLogin logs in with a password to a full session (no second factor)
// and returns the session token.
func (a *browser) mustLogin(user string) string {
	a.t.Helper()
	r := a.login(user, testPassword, "/app")
	if r.status != http.StatusSeeOther || r.location() != "/app" {
		a.t.Fatalf("login of %s: %s", user, r)
	}
	tok := a.session()
	if tok == "" {
		a.t.Fatalf("login of %s set no session cookie: %s", user, r)
	}
	return tok
}

// session returns the session cookie the browser holds, or "".
func (a *browser) session() string {
	u, _ := url.Parse(a.g.base)
	for _, c := range a.jar.Cookies(u) {
		if c.Name == session.CookieName {
			return c.Value
		}
	}
	return ""
}

// setSession puts a session cookie into the browser, as a planted cookie
// or a stolen one would be.
func (a *browser) setSession(tok string) {
	u, _ := url.Parse(a.g.base)
	a.jar.SetCookies(u, []*http.Cookie{{Name: session.CookieName, Value: tok, Path: "/", Secure: true, HttpOnly: true}})
}

// withCookie requests path carrying exactly the session token tok, as a
// replayed cookie does, whatever the jar holds.
func (g *loginGateway) withCookie(t *testing.T, tok, path string, accept string) *reply {
	t.Helper()
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", g.base+path, nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("Cookie", session.CookieName+"="+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// reachesUpstream checks that the browser gets path from the upstream as
// user, with roles, and returns the headers the upstream saw.
func (a *browser) reachesUpstream(path, user, roles string) http.Header {
	a.t.Helper()
	r := a.page(path)
	if r.status != http.StatusOK {
		a.t.Fatalf("GET %s as %s: %s", path, user, r)
	}
	saw := upstreamSaw(a.t, r.body)
	if got := saw.Get(headerUser); got != user {
		a.t.Errorf("GET %s: upstream saw %s %q, want %q", path, headerUser, got, user)
	}
	if got := saw.Get(headerRoles); got != roles {
		a.t.Errorf("GET %s: upstream saw %s %q, want %q", path, headerRoles, got, roles)
	}
	return saw
}

// sentToLogin checks that a page load of path is answered with a redirect
// to the login page (or wantPath) that brings the user back to path.
func (a *browser) sentToLogin(path, wantPath string) *reply {
	a.t.Helper()
	r := a.page(path)
	want := wantPath + "?" + portal.FieldReturnTo + "=" + url.QueryEscape(path)
	if r.status != http.StatusSeeOther || r.location() != want {
		a.t.Errorf("GET %s: %s\nwant 303 to %s", path, r, want)
	}
	return r
}

// ---- reading portal pages ----

func parseHTML(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing a page: %v", err)
	}
	return doc
}

// findNodes returns the elements under n for which match is true.
func findNodes(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attrOf(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func textOfNode(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// formValue returns the value of the first input named name on the page.
func formValue(t *testing.T, body, name string) string {
	t.Helper()
	for _, in := range findNodes(parseHTML(t, body), func(n *html.Node) bool {
		return n.Data == "input" && attrOf(n, "name") == name
	}) {
		return attrOf(in, "value")
	}
	return ""
}

// totpSecret reads the key the TOTP enrollment page shows for typing by hand.
func totpSecret(t *testing.T, body string) []byte {
	t.Helper()
	keys := findNodes(parseHTML(t, body), func(n *html.Node) bool { return attrOf(n, "id") == "totp-key" })
	if len(keys) != 1 {
		t.Fatalf("enrollment page shows no key:\n%.2000s", body)
	}
	k := strings.ToUpper(strings.Join(strings.Fields(textOfNode(keys[0])), ""))
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(k)
	if err != nil {
		t.Fatalf("the key %q on the enrollment page is not base32: %v", k, err)
	}
	return secret
}

// recoveryCodes reads the codes the recovery codes page lists.
func recoveryCodes(t *testing.T, body string) []string {
	t.Helper()
	var codes []string
	for _, ol := range findNodes(parseHTML(t, body), func(n *html.Node) bool { return n.Data == "ol" && strings.Contains(attrOf(n, "class"), "codes") }) {
		for _, c := range findNodes(ol, func(n *html.Node) bool { return n.Data == "code" }) {
			codes = append(codes, strings.TrimSpace(textOfNode(c)))
		}
	}
	return codes
}

var (
	requestIDRE = regexp.MustCompile(`Request id <code>[^<]*</code>`)
	csrfFieldRE = regexp.MustCompile(`name="csrf" value="[^"]*"`)
)

// normalize removes what differs between any two responses of a page (the
// request id, the CSRF token) and the given user name, so that what is
// left can be compared.
func normalize(body, username string) string {
	body = requestIDRE.ReplaceAllString(body, "Request id <code>ID</code>")
	body = csrfFieldRE.ReplaceAllString(body, `name="csrf" value="TOKEN"`)
	if username != "" {
		body = strings.ReplaceAll(body, username, "USERNAME")
	}
	return body
}
