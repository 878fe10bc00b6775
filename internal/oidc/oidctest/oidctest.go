// Package oidctest runs a real OpenID provider in tests: the example server
// of zitadel's OpenID-certified library (github.com/zitadel/oidc/v3,
// example/server/exampleop) with that example's in-memory storage, users
// and login form, served over TLS on a loopback port.
//
// Nothing in the protocol is faked: discovery, the authorization endpoint
// with PKCE, the login form, the token endpoint with client
// authentication, signed ID tokens, the JWK Set and the userinfo endpoint
// are the library's own. This package adds only what a test needs around
// them: two confidential clients whose redirect URIs can be added after
// the provider started, a "groups" claim per user, a cancel button on the
// login step (an access_denied answer), and a switch that makes the
// provider stop answering.
//
// Like zitadel's default web client, the provider puts profile and e-mail
// claims in the userinfo response, not in the ID token; the groups claim
// is in both.
package oidctest

import (
	"context"
	"crypto/x509"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

// GroupsClaim is the claim holding a user's groups, in the ID token and in
// the userinfo response.
const GroupsClaim = "groups"

// Groups the users are in.
const (
	GroupAdmins = "moat-admins"
	GroupStaff  = "staff"
)

// User is one of the provider's users, as the example storage defines them.
type User struct {
	Username string // typed into the login form; the preferred_username claim
	Password string
	Subject  string // the sub claim
	Email    string // verified
	Name     string // the name claim
	Groups   []string
}

// tokenRedirect is the redirect URI registered for IDToken's flows.
const tokenRedirect = "https://rp.oidctest.invalid/callback"

// denyPath is the cancel button this package adds to the login step.
const denyPath = "/oidctest/deny"

// Provider is a running OpenID provider. Its methods are safe for
// concurrent use.
type Provider struct {
	// Issuer is the provider's issuer URL, https://127.0.0.1:port, without
	// a trailing slash. Discovery is at Issuer + /.well-known/openid-configuration.
	Issuer string
	// ClientID and ClientSecret are a confidential web client
	// (client_secret_basic or client_secret_post, PKCE S256).
	ClientID, ClientSecret string
	// OtherClientID and OtherClientSecret are a second client of the same
	// provider, for tests of tokens meant for someone else.
	OtherClientID, OtherClientSecret string
	// User is the user Login signs in as: an admin and staff member.
	User User
	// User2 is in the staff group only.
	User2 User

	srv     *httptest.Server
	store   *storageWithClaims
	down    atomic.Bool
	mu      sync.Mutex
	allowed []string // redirect URIs
	stop    sync.Once
}

// Start runs a provider until the test ends. The clients accept the given
// redirect URIs; AllowRedirectURI adds more later.
func Start(t testing.TB, redirectURIs ...string) *Provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String()
	users := storage.NewUserStore(issuer)
	p := &Provider{
		Issuer:            issuer,
		ClientID:          "moat",
		ClientSecret:      "moat-client-secret",
		OtherClientID:     "other-app",
		OtherClientSecret: "other-app-secret",
		srv:               srv,
		allowed:           append([]string{tokenRedirect}, redirectURIs...),
	}
	p.User = exampleUser(users.GetUserByID("id1"), GroupAdmins, GroupStaff)
	p.User2 = exampleUser(users.GetUserByID("id2"), GroupStaff)
	groups := map[string][]string{p.User.Subject: p.User.Groups, p.User2.Subject: p.User2.Groups}

	// The example's storage.WebClient is its confidential client type:
	// client_secret_basic, the authorization code grant, and http
	// redirect URIs allowed. The redirect URIs given here are replaced by
	// the provider's list (see client below).
	clients := map[string]*storage.Client{
		p.ClientID:      storage.WebClient(p.ClientID, p.ClientSecret, tokenRedirect),
		p.OtherClientID: storage.WebClient(p.OtherClientID, p.OtherClientSecret, tokenRedirect),
	}
	p.store = &storageWithClaims{Storage: storage.NewStorageWithClients(users, clients), p: p, groups: groups}
	router := exampleop.SetupServer(issuer, p.store, nil, false)

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+denyPath, p.deny)
	mux.Handle("/", router)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			// Close the connection without an answer.
			panic(http.ErrAbortHandler)
		}
		mux.ServeHTTP(w, r)
	})
	srv.StartTLS()
	t.Cleanup(p.Stop)
	return p
}

func exampleUser(u *storage.User, groups ...string) User {
	return User{
		Username: u.Username,
		Password: u.Password,
		Subject:  u.ID,
		Email:    u.Email,
		Name:     u.FirstName + " " + u.LastName,
		Groups:   groups,
	}
}

// AllowRedirectURI registers one more redirect URI for both clients.
func (p *Provider) AllowRedirectURI(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.allowed, uri) {
		p.allowed = append(p.allowed, uri)
	}
}

func (p *Provider) redirectURIs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.allowed)
}

// HTTPClient returns a client that trusts the provider's certificate, and
// that of any other httptest TLS server, which shares it.
func (p *Provider) HTTPClient() *http.Client {
	return p.srv.Client()
}

// Certificate is the provider's TLS certificate, to trust it elsewhere.
func (p *Provider) Certificate() *x509.Certificate {
	return p.srv.Certificate()
}

// SetDown makes the provider stop answering (true): every connection is
// closed without a response, as when it crashed behind a proxy. False
// brings it back.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// Stop shuts the provider down for good: its port refuses connections.
// Tests need not call it; it runs when the test ends.
func (p *Provider) Stop() {
	p.stop.Do(p.srv.Close)
}

// Login signs in at the provider as p.User: it follows authURL (an
// authorization request a relying party built) to the login form, fills
// it in and submits it, and returns the URL the provider then redirects
// to, on the relying party's redirect URI, with the code and state. That
// URL is not fetched. client must trust the provider (HTTPClient does);
// its redirect policy is not used.
func (p *Provider) Login(t testing.TB, client *http.Client, authURL string) (callbackURL string) {
	t.Helper()
	return p.LoginAs(t, client, authURL, p.User)
}

// LoginAs is Login as another user.
func (p *Provider) LoginAs(t testing.TB, client *http.Client, authURL string, u User) (callbackURL string) {
	t.Helper()
	c := noRedirects(client)
	formURL := p.toLoginForm(t, c, authURL)
	page := get(t, c, formURL.String())
	if page.StatusCode != http.StatusOK {
		t.Fatalf("oidctest: login form: %s", page.Status)
	}
	body := readBody(t, page)
	action, fields := parseLoginForm(t, body)
	fields.Set("username", u.Username)
	fields.Set("password", u.Password)
	resp, err := c.PostForm(formURL.ResolveReference(action).String(), fields)
	if err != nil {
		t.Fatalf("oidctest: submitting the login form: %v", err)
	}
	if resp.StatusCode != http.StatusFound {
		b := readBody(t, resp)
		t.Fatalf("oidctest: the login form answered %s, not a redirect: %.300s", resp.Status, b)
	}
	resp.Body.Close()
	return p.followToClient(t, c, location(t, resp))
}

// Deny goes to the login form as Login does, then presses cancel: the
// provider sends the browser back with error=access_denied, the given
// error_description and the request's state. It returns that URL.
func (p *Provider) Deny(t testing.TB, client *http.Client, authURL, description string) (callbackURL string) {
	t.Helper()
	c := noRedirects(client)
	formURL := p.toLoginForm(t, c, authURL)
	id := formURL.Query().Get("authRequestID")
	q := url.Values{"id": {id}, "description": {description}}
	resp := get(t, c, p.Issuer+denyPath+"?"+q.Encode())
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("oidctest: cancel: %s", resp.Status)
	}
	return location(t, resp).String()
}

// IDToken signs p.User in through an authorization code flow of the given
// client (with a nonce and PKCE) and returns the raw ID token the token
// endpoint issued, for tests that hand a relying party a token that was
// not meant for it.
func (p *Provider) IDToken(t testing.TB, clientID, clientSecret, nonce string) string {
	t.Helper()
	ctx := gooidc.ClientContext(context.Background(), p.HTTPClient())
	prov, err := gooidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		t.Fatalf("oidctest: discovery: %v", err)
	}
	cfg := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: prov.Endpoint(),
		RedirectURL: tokenRedirect, Scopes: []string{gooidc.ScopeOpenID}}
	verifier := oauth2.GenerateVerifier()
	cb, err := url.Parse(p.Login(t, p.HTTPClient(), cfg.AuthCodeURL("oidctest-state", gooidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("oidctest: token request: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("oidctest: the token response has no id_token")
	}
	return raw
}

// toLoginForm follows the authorization request to the login form's URL.
func (p *Provider) toLoginForm(t testing.TB, c *http.Client, authURL string) *url.URL {
	t.Helper()
	next, err := url.Parse(authURL)
	if err != nil {
		t.Fatalf("oidctest: authorization URL: %v", err)
	}
	for range 5 {
		if !p.own(next) {
			t.Fatalf("oidctest: the provider sent the browser to %s before the login form", next.Redacted())
		}
		if next.Path == "/login/username" {
			return next
		}
		resp := get(t, c, next.String())
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			b := readBody(t, resp)
			t.Fatalf("oidctest: %s answered %s: %.300s", next.Path, resp.Status, b)
		}
		resp.Body.Close()
		next = location(t, resp)
	}
	t.Fatal("oidctest: too many redirects before the login form")
	return nil
}

// followToClient follows the provider's redirects until one leaves it.
func (p *Provider) followToClient(t testing.TB, c *http.Client, next *url.URL) string {
	t.Helper()
	for range 5 {
		if !p.own(next) {
			return next.String()
		}
		resp := get(t, c, next.String())
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("oidctest: %s answered %s", next.Path, resp.Status)
		}
		next = location(t, resp)
	}
	t.Fatal("oidctest: too many redirects after the login form")
	return ""
}

func (p *Provider) own(u *url.URL) bool {
	return u.Scheme+"://"+u.Host == p.Issuer
}

// deny is the cancel button: it answers the pending authorization request
// with access_denied, as a provider does when the user declines.
func (p *Provider) deny(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	req, err := p.store.AuthRequestByID(r.Context(), id)
	if err != nil {
		http.Error(w, "no such authorization request", http.StatusBadRequest)
		return
	}
	_ = p.store.DeleteAuthRequest(r.Context(), id)
	q := url.Values{"error": {string(zoidc.AccessDenied)}, "state": {req.GetState()}}
	if d := r.URL.Query().Get("description"); d != "" {
		q.Set("error_description", d)
	}
	to := req.GetRedirectURI()
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+q.Encode(), http.StatusFound)
}

// storageWithClaims is the example storage with the client list's redirect
// URIs taken from the Provider and a groups claim added to each user's ID
// token and userinfo.
type storageWithClaims struct {
	*storage.Storage
	p      *Provider
	groups map[string][]string // by subject; read-only
}

func (s *storageWithClaims) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return client{Client: c, p: s.p}, nil
}

func (s *storageWithClaims) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	s.addGroups(ui, req.GetSubject())
	return nil
}

func (s *storageWithClaims) SetUserinfoFromToken(ctx context.Context, ui *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(ui, subject)
	return nil
}

func (s *storageWithClaims) addGroups(ui *zoidc.UserInfo, subject string) {
	if g, ok := s.groups[subject]; ok {
		ui.AppendClaims(GroupsClaim, slices.Clone(g))
	}
}

// client is a registered client whose redirect URIs are the Provider's.
type client struct {
	op.Client
	p *Provider
}

func (c client) RedirectURIs() []string { return c.p.redirectURIs() }

func noRedirects(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

func get(t testing.TB, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("oidctest: GET %s: %v", u, err)
	}
	return resp
}

func location(t testing.TB, resp *http.Response) *url.URL {
	t.Helper()
	l, err := resp.Location()
	if err != nil {
		t.Fatalf("oidctest: %s without a usable Location: %v", resp.Status, err)
	}
	return l
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("oidctest: reading a response: %v", err)
	}
	return string(b)
}

var (
	formActionRE = regexp.MustCompile(`<form[^>]*\baction="([^"]*)"`)
	hiddenRE     = regexp.MustCompile(`<input[^>]*\btype="hidden"[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"`)
)

// parseLoginForm reads the login page's form: where it posts and its
// hidden fields.
func parseLoginForm(t testing.TB, page string) (*url.URL, url.Values) {
	t.Helper()
	m := formActionRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("oidctest: no form on the login page: %.300s", page)
	}
	action, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatalf("oidctest: form action %q: %v", m[1], err)
	}
	fields := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(page, -1) {
		fields.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	if fields.Get("id") == "" {
		t.Fatal("oidctest: the login form carries no authorization request id")
	}
	return action, fields
}
