package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/oidc/oidctest"
	"github.com/moatgw/moat/internal/testclock"
)

// freePort returns a loopback port nothing listens on right now, for a
// gateway whose public URL must be known before it starts.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestOIDCLoginThroughGateway signs in through a real OpenID provider
// (zitadel's certified library) by way of the gateway: a protected page
// sends the browser to the login page, the provider button to the
// provider, and the callback back to the page, with the user's mapped
// roles reaching the upstream.
func TestOIDCLoginThroughGateway(t *testing.T) {
	port := freePort(t)
	public := "https://localhost:" + port
	idp := oidctest.Start(t, public+"/.moat/oidc/callback")
	up := echoUpstream(t)
	dir := t.TempDir()
	secret := dir + "/oidc-secret"
	if err := os.WriteFile(secret, []byte(idp.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`accounts:
  public_url: %s
  mfa_roles: [root]
oidc:
  providers:
    - name: corp
      display_name: Corp SSO
      issuer: %s
      client_id: %s
      client_secret: file:%s
      roles_claim: groups
      role_map:
        - {from: moat-admins, roles: [ops]}
        - {from: staff, roles: [user]}
`, public, idp.Issuer, idp.ClientID, secret)
	routes := fmt.Sprintf(`  - {name: app, path: /app, policy: authenticated, upstreams: [%q]}
  - {name: ops, path: /ops, policy: authenticated, roles: [ops], upstreams: [%q]}
`, up.URL, up.URL)
	yml := strings.Replace(testConfig(dir, extra, routes), "https: 127.0.0.1:0", "https: 127.0.0.1:"+port, 1)
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	var logs bytes.Buffer
	clock := testclock.New(time.Now())
	srv, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HTTPClient: idp.HTTPClient(), Now: clock.Now, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})

	roots := x509.NewCertPool()
	ca, err := os.ReadFile(srv.DevCA())
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	roots.AddCert(idp.Certificate())
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(url string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	follow := func(resp *http.Response) string {
		t.Helper()
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: status %d, want a redirect\n%s", resp.Request.URL, resp.StatusCode, b)
		}
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		return loc.String()
	}

	// The provider is down when the first sign-in starts: a clear 503 page,
	// and a retry once it is back.
	idp.SetDown(true)
	resp := get(public + "/.moat/oidc/corp/start")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("provider down: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if b, _ := io.ReadAll(resp.Body); !bytes.Contains(b, []byte("not answering")) {
		t.Errorf("provider down page does not say so:\n%s", b)
	}
	idp.SetDown(false)
	clock.Advance(10 * time.Second)

	login := follow(get(public + "/app/report?x=1"))
	if login != public+"/.moat/login?return_to=%2Fapp%2Freport%3Fx%3D1" {
		t.Fatalf("protected page sent the browser to %q", login)
	}
	page := get(login)
	body, _ := io.ReadAll(page.Body)
	start := "/.moat/oidc/corp/start?return_to=%2Fapp%2Freport%3Fx%3D1"
	if !bytes.Contains(body, []byte("Sign in with Corp SSO")) || !bytes.Contains(body, []byte(strings.ReplaceAll(start, "&", "&amp;"))) {
		t.Fatalf("the login page offers no provider button to %s:\n%s", start, body)
	}
	authURL := follow(get(public + start))
	if !strings.HasPrefix(authURL, idp.Issuer) {
		t.Fatalf("the provider button led to %q, not the provider", authURL)
	}
	back := follow(get(idp.Login(t, c, authURL)))
	if back != "/app/report?x=1" && back != public+"/app/report?x=1" {
		t.Fatalf("after the provider the browser went to %q", back)
	}
	resp = get(public + "/app/report?x=1")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("protected page after sign-in: %d\n%s", resp.StatusCode, b)
	}
	saw := upstreamSaw(t, string(b))
	if saw.Get("X-Moat-User") == "" || !strings.Contains(saw.Get("X-Moat-Roles"), "ops") {
		t.Errorf("upstream saw user %q roles %q; want the provider's user with the ops role mapped from moat-admins",
			saw.Get("X-Moat-User"), saw.Get("X-Moat-Roles"))
	}
	if resp := get(public + "/ops/"); resp.StatusCode != http.StatusOK {
		t.Errorf("/ops for a user mapped to ops: %d", resp.StatusCode)
	}

}
