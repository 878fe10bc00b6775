package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Names the portal uses; the e2e tests see them only from outside.
const (
	sessionCookie = "__Host-moat_session"
	alicePassword = "lanterns over a quiet harbor 1729"
)

// runStdin runs moat with args and stdin, and returns its exit code,
// stdout and stderr.
func runStdin(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(moatBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// mustRun runs moat and fails the test unless it exits 0.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, stdout, stderr := runStdin(t, stdin, args...)
	if code != 0 {
		t.Fatalf("moat %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// headerEcho is an upstream that answers with the request headers it
// received, as JSON.
func headerEcho(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header})
	}))
	t.Cleanup(up.Close)
	return up
}

// accountsConfig protects /app with a login; the rest is public.
func accountsConfig(dataDir, httpsAddr, adminAddr, upstream string) string {
	return fmt.Sprintf(`data_dir: %[1]s
keys: {master_key: file:%[2]s}
listen:
  https: %[3]s
  admin: %[4]s
tls:
  dev: {}
routes:
  - name: app
    path: /app
    policy: authenticated
    upstreams: [%[5]s]
  - name: site
    path: /
    policy: public
    upstreams: [%[5]s]
`, dataDir, masterKeyFile(dataDir), httpsAddr, adminAddr, upstream)
}

// browser is a client with a cookie jar that trusts the gateway's
// development CA and does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	pool *x509.CertPool
	jar  *cookiejar.Jar
	c    *http.Client
}

func newBrowser(t *testing.T, dataDir, base string) *browser {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, base: base, pool: pool, jar: jar}
	b.c = &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	t.Cleanup(b.c.CloseIdleConnections)
	return b
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (a answer) String() string {
	return fmt.Sprintf("%d Location=%q\n%.500s", a.code, a.header.Get("Location"), a.body)
}

func (b *browser) do(req *http.Request) (answer, error) {
	resp, err := b.c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}, err
}

func (b *browser) get(path, accept string) answer {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	req.Header.Set("Accept", accept)
	a, err := b.do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	return a
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// post submits a portal form with the CSRF token of the page at from.
func (b *browser) post(from, path string, form url.Values) answer {
	b.t.Helper()
	page := b.get(from, "text/html")
	m := csrfRE.FindStringSubmatch(page.body)
	if m == nil {
		b.t.Fatalf("GET %s: no CSRF token: %s", from, page)
	}
	form.Set("csrf", m[1])
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	a, err := b.do(req)
	if err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	return a
}

// login submits the login form and returns the answer.
func (b *browser) login(user, pw string) answer {
	b.t.Helper()
	return b.post("/.moat/login", "/.moat/login", url.Values{"username": {user}, "password": {pw}, "return_to": {"/app"}})
}

// session returns the session cookie the browser holds, or "".
func (b *browser) session() string {
	u, _ := url.Parse(b.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// withCookie calls path as an API client carrying session token tok.
func (b *browser) withCookie(tok, path string) answer {
	b.t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", sessionCookie+"="+tok)
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

// eventually retries check for a few seconds: a change made by another
// process reaches the gateway after its session cache (2 s) and the login
// back-off (1 s after a failure) have passed.
func eventually(t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(6 * time.Second)
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// userSaw returns the X-Moat-User the upstream received for an /app answer.
func userSaw(t *testing.T, a answer) string {
	t.Helper()
	var v struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("upstream answer %s: %v", a, err)
	}
	if n := len(v.Headers.Values("X-Moat-User")); n > 1 {
		t.Errorf("upstream saw %d X-Moat-User headers", n)
	}
	return v.Headers.Get("X-Moat-User")
}

// TestAccounts manages a user with moat user while moat serve runs on the
// same SQLite store, and signs in through the gateway over HTTPS.
func TestAccounts(t *testing.T) {
	up := headerEcho(t)
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfg, accountsConfig(dir, addr, admin, up.URL))
	mustRun(t, "", "db", "migrate", "--config", cfg)

	out := mustRun(t, alicePassword+"\n", "user", "add", "alice", "--role", "user", "--password-stdin", "--config", cfg)
	if !strings.Contains(out, `created user "alice"`) || strings.Contains(out, alicePassword) {
		t.Errorf("user add printed: %s", out)
	}
	out = mustRun(t, "", "user", "list", "--config", cfg)
	if !regexp.MustCompile(`(?m)^alice\s+user\s+active\s+yes\s+no\s`).MatchString(out) {
		t.Errorf("user list does not show alice, active, with a password:\n%s", out)
	}

	t.Run("usage errors", func(t *testing.T) {
		for _, c := range []struct {
			name, stdin string
			args        []string
			stderr      string // regexp
		}{
			{"disable without a name", "", []string{"user", "disable", "--config", cfg}, `the name is required\nhint: moat user disable NAME`},
			{"revoke-sessions without a name", "", []string{"user", "revoke-sessions", "--config", cfg}, `the name is required\nhint: `},
			{"add without a name", "", []string{"user", "add", "--role", "user", "--config", cfg}, `the name is required\nhint: `},
			{"password as a flag", "", []string{"user", "add", "bob", "--role", "user", "--password", "hunter2 hunter2", "--config", cfg},
				`(?s)flag provided but not defined: -password\n.*-password-stdin`},
			{"password as an argument", "", []string{"user", "add", "bob", "--role", "user", "--config", cfg, "hunter2 hunter2"}, `unexpected extra argument \(not shown\)`},
			{"empty standard input", "", []string{"user", "add", "bob", "--role", "user", "--password-stdin", "--config", cfg}, `standard input holds no password`},
			{"unknown command", "", []string{"user", "frobnicate", "--config", cfg}, `(?s)unknown command "frobnicate".*Usage: moat user`},
		} {
			t.Run(c.name, func(t *testing.T) {
				code, stdout, stderr := runStdin(t, c.stdin, c.args...)
				if code != 2 || !regexp.MustCompile(c.stderr).MatchString(stderr) {
					t.Errorf("exit %d, want 2, stderr matching %q\nstdout: %s\nstderr: %s", code, c.stderr, stdout, stderr)
				}
			})
		}
		if out := mustRun(t, "", "user", "list", "--config", cfg); strings.Contains(out, "bob") {
			t.Errorf("a refused command created bob:\n%s", out)
		}
	})

	p := startServe(t, cfg, dir, addr)
	if strings.Contains(p.logs(), "First admin") {
		t.Error("serve made a first admin although a user exists")
	}
	base := "https://" + addr
	b := newBrowser(t, dir, base)

	if a := b.get("/app", "application/json"); a.code != http.StatusUnauthorized {
		t.Fatalf("/app without a session: %s", a)
	}
	if a := b.login("alice", alicePassword); a.code != http.StatusSeeOther || a.header.Get("Location") != "/app" {
		t.Fatalf("login: %s", a)
	}
	req, _ := http.NewRequest("GET", base+"/app", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Moat-User", "admin")
	a, err := b.do(req)
	if err != nil || a.code != http.StatusOK {
		t.Fatalf("/app after login: %s %v", a, err)
	}
	if u := userSaw(t, a); u != "alice" {
		t.Errorf("upstream saw X-Moat-User %q, want alice", u)
	}

	out = mustRun(t, "", "user", "sessions", "alice", "--config", cfg)
	if !strings.HasPrefix(out, "SESSION") || !regexp.MustCompile(`(?m)^[0-9a-f]{12}\s+active\s+pwd\s`).MatchString(out) {
		t.Errorf("user sessions:\n%s", out)
	}

	// Revoking from the command line reaches the running gateway.
	tok := b.session()
	out = mustRun(t, "", "user", "revoke-sessions", "alice", "--config", cfg)
	if !strings.Contains(out, `ended 1 session(s) of "alice"`) {
		t.Errorf("revoke-sessions: %s", out)
	}
	refused := func(what, tok string) {
		t.Helper()
		eventually(t, what, func() (bool, string) {
			a := b.withCookie(tok, "/app")
			return a.code == http.StatusUnauthorized && strings.Contains(a.header.Get("Set-Cookie"), sessionCookie+"=;"), a.String()
		})
	}
	refused("old cookie after revoke-sessions", tok)

	// Disabled: the session ends and the right password is refused.
	if a := b.login("alice", alicePassword); a.code != http.StatusSeeOther {
		t.Fatalf("login again: %s", a)
	}
	tok = b.session()
	if out := mustRun(t, "", "user", "disable", "alice", "--config", cfg); !strings.Contains(out, "disabled") {
		t.Errorf("disable: %s", out)
	}
	refused("cookie of a disabled user", tok)
	if a := b.login("alice", alicePassword); a.code != http.StatusUnauthorized {
		t.Errorf("login of a disabled user: %s", a)
	}
	mustRun(t, "", "user", "enable", "alice", "--config", cfg)
	eventually(t, "login after enable", func() (bool, string) {
		a := b.login("alice", alicePassword)
		return a.code == http.StatusSeeOther, a.String()
	})

	// A password reset ends the sessions and the old password at once, and
	// prints a link that sets a new one.
	tok = b.session()
	out = mustRun(t, "", "user", "reset-password", "alice", "--config", cfg)
	m := regexp.MustCompile(`https://\S+(/\.moat/password\?token=\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("reset-password printed no link:\n%s", out)
	}
	refused("cookie after reset-password", tok)
	if a := b.login("alice", alicePassword); a.code != http.StatusUnauthorized {
		t.Errorf("the old password after reset-password: %s", a)
	}
	if a := b.get(m[1], "text/html"); a.code != http.StatusSeeOther || a.header.Get("Location") != "/.moat/password" {
		t.Fatalf("opening the reset link: %s", a)
	}
	const newPassword = "seven silent herons at dawn 88"
	if a := b.post("/.moat/password", "/.moat/password", url.Values{"new_password": {newPassword}, "confirm_password": {newPassword}}); a.code != http.StatusSeeOther {
		t.Fatalf("setting the new password: %s", a)
	}
	eventually(t, "login with the new password", func() (bool, string) {
		a := b.login("alice", newPassword)
		return a.code == http.StatusSeeOther, a.String()
	})
	if a := b.get("/app", "text/html"); a.code != http.StatusOK || userSaw(t, a) != "alice" {
		t.Errorf("/app with the new password: %s", a)
	}
}

// TestServeFirstAdminLink starts moat serve on an empty store: it prints
// the first admin's one-time link on standard error, and the link opens
// the page where the password is set.
func TestServeFirstAdminLink(t *testing.T) {
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfg, accountsConfig(dir, addr, admin, "http://127.0.0.1:1"))
	p := startServe(t, cfg, dir, addr)
	waitLog(t, p, "First admin")
	m := regexp.MustCompile(`First admin: .*\n.*\n\s*\n\s+(https://\S+(/\.moat/password\?token=\S+))`).FindStringSubmatch(p.logs())
	if m == nil {
		t.Fatalf("no first-admin link on stderr:\n%s", p.logs())
	}
	out := mustRun(t, "", "user", "list", "--config", cfg)
	if !regexp.MustCompile(`(?m)^admin\s+admin, moat:admin\s+active\s+no\s`).MatchString(out) {
		t.Errorf("user list after the first start:\n%s", out)
	}
	b := newBrowser(t, dir, "https://"+addr)
	a := b.get(m[2], "text/html")
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/.moat/password" {
		t.Fatalf("opening %s: %s", m[1], a)
	}
	if a := b.get("/.moat/password", "text/html"); a.code != http.StatusOK || !strings.Contains(a.body, `name="new_password"`) {
		t.Errorf("set-password page: %s", a)
	}
}
