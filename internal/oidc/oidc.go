// Package oidc signs users in to Moat through OpenID Connect providers:
// Moat is the relying party of any number of providers at once, each a
// button on the login page.
//
// The flow is the authorization code flow with PKCE (S256), a state and a
// nonce (OpenID Connect Core 1.0, section 3.1; RFC 7636). A sign-in starts
// at StartPrefix + name + "/start", which keeps the state, nonce, PKCE
// verifier, provider name and return address in one short-lived cookie,
// sealed with AES-GCM, and sends the browser to the provider. Every
// provider comes back to the one CallbackPath; the cookie says which
// provider the browser went to. The callback checks the state and, when
// the provider sends or promises one, the iss parameter (RFC 9207),
// redeems the code at that provider's token endpoint, verifies the ID token (signature
// against the provider's JWK Set, iss, aud, azp, exp, and the nonce),
// applies the provider's allow lists, maps its claims to roles, and hands
// the identity to accounts.Service.ExternalLogin, which creates or finds
// the user and makes the session.
//
// Only the sign-in is kept: refresh and access tokens are dropped once the
// callback is answered (the access token is used at most once, for the
// userinfo endpoint when the ID token lacks a claim Moat reads).
//
// One sign-in per browser is in flight at a time: the sealed cookie has a
// single name, so when a user starts sign-ins in two tabs, the last one
// started wins, and the other tab's callback is refused with a page
// asking to start again.
//
// Discovery is lazy: a provider that is down when Moat starts does not stop
// Moat. Its discovery document is fetched at the first sign-in and cached;
// after a failed fetch, sign-ins are told at once that the provider is not
// answering, and the first one five seconds later fetches again.
// When the provider stops answering later (its token endpoint times out),
// the cached document is dropped so the next sign-in discovers again.
package oidc

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/session"
)

// Paths this package serves.
const (
	// StartPrefix starts a sign-in: GET StartPrefix + name + "/start"
	// with an optional return_to query parameter.
	StartPrefix = "/.moat/oidc/"
	// CallbackPath is the redirect URI path of every provider:
	// the redirect URI to register at each is PublicURL + CallbackPath.
	CallbackPath = "/.moat/oidc/callback"
)

// Provider is one OpenID provider.
type Provider struct {
	Name          string   // 1 to 32 of [a-z0-9-], unique; appears in URLs and events
	DisplayName   string   // on the login button; default Name
	Issuer        string   // https (http only on loopback); discovery at Issuer/.well-known/openid-configuration
	ClientID      string   //
	ClientSecret  string   // the secret itself, already resolved from its reference
	Scopes        []string // default [openid, email, profile]; openid is always asked for
	UsernameClaim string   // names a new user; default preferred_username; the e-mail when absent
	// RolesClaim is the claim holding the user's groups or roles at the
	// provider: a top-level claim name, or a dotted path into nested
	// objects such as realm_access.roles. A claim whose name itself holds
	// dots (https://example.com/roles) is found too: the whole name is
	// tried first. Its value is a list of strings or one string. Empty:
	// none.
	RolesClaim string
	// RoleMap maps values of RolesClaim to Moat roles; values it does not
	// list give no role. Nil: the values are the roles (those that are
	// valid role names).
	RoleMap map[string][]string
	// DefaultRoles are given to every user of this provider.
	DefaultRoles []string
	// AllowedEmailDomains, when set, admits only users whose e-mail is
	// verified (email_verified true) and in one of these domains, exactly
	// (no subdomains).
	AllowedEmailDomains []string
	// AllowedGroups, when set, admits only users with one of these values
	// in RolesClaim (compared before RoleMap).
	AllowedGroups []string
}

// Options configure an RP.
type Options struct {
	// Cookies writes the session cookie; the zero value uses SameSite=Lax.
	Cookies   session.Cookies
	Providers []Provider
	PublicURL string            // https://host[:port]; the redirect URI is PublicURL + CallbackPath
	Accounts  *accounts.Service // signs the user in; required
	// Sessions is the session manager behind Accounts. It is optional: the
	// session a browser had before signing in is ended through
	// Accounts.Logout, which needs nothing more.
	Sessions *session.Manager
	// StateKey seals the state cookie: 32 random bytes, the same on every
	// instance behind one public URL (a sign-in may start on one and come
	// back to another). A key derived from it is used, never the key itself.
	StateKey []byte
	// Client makes the discovery, token, userinfo and JWK Set requests.
	// Nil: a client with a 10s timeout. Responses are capped at 1 MiB.
	Client *http.Client
	Now    func() time.Time // default time.Now; also the ID token verifier's clock
	Logger *slog.Logger
	Events event.Recorder
	// Pages renders the pages a browser sees when a sign-in cannot go on.
	// Nil: plain text pages.
	Pages ErrorPager
}

// ErrorPager renders an error page for a browser. The title and message
// are plain text, and may hold text the provider sent (an
// error_description): the implementation must escape them (html/template
// does).
type ErrorPager interface {
	Error(w http.ResponseWriter, r *http.Request, status int, title, message string)
}

// ProviderLink is a provider's button on the login page.
type ProviderLink struct {
	Name        string
	DisplayName string
	StartURL    string // a path; add ?return_to= to come back to a page
}

// RP is the relying party of every configured provider. It is safe for
// concurrent use.
type RP struct {
	o         Options
	providers []*provider // in configuration order
	byName    map[string]*provider
	seal      *sealer
	client    *http.Client
	redirect  string
	log       *slog.Logger
}

const (
	defaultTimeout   = 10 * time.Second
	maxResponseBytes = 1 << 20
	maxNameLen       = 32
)

// New checks the options and builds an RP. It makes no request:
// providers are discovered at their first sign-in.
func New(o Options) (*RP, error) {
	var errs []error
	if len(o.Providers) == 0 {
		errs = append(errs, errors.New("no providers"))
	}
	redirect, err := redirectURI(o.PublicURL)
	if err != nil {
		errs = append(errs, err)
	}
	if o.Accounts == nil {
		errs = append(errs, errors.New("accounts are required"))
	}
	seal, err := newSealer(o.StateKey)
	if err != nil {
		errs = append(errs, err)
	}
	rp := &RP{byName: map[string]*provider{}, seal: seal, redirect: redirect}
	for i, pc := range o.Providers {
		p, err := newProvider(pc)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %d (%q): %w", i, clip(pc.Name), err))
			continue
		}
		if rp.byName[p.cfg.Name] != nil {
			errs = append(errs, fmt.Errorf("provider %d: the name %q is used twice", i, p.cfg.Name))
			continue
		}
		rp.byName[p.cfg.Name] = p
		rp.providers = append(rp.providers, p)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidc: %w", errors.Join(errs...))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = event.Discard{}
	}
	if o.Pages == nil {
		o.Pages = plainPages{}
	}
	rp.o = o
	rp.log = o.Logger.With("component", "oidc")
	rp.client = limitedClient(o.Client)
	return rp, nil
}

// Providers lists the providers' buttons, in configuration order.
func (rp *RP) Providers() []ProviderLink {
	links := make([]ProviderLink, 0, len(rp.providers))
	for _, p := range rp.providers {
		links = append(links, ProviderLink{Name: p.cfg.Name, DisplayName: p.cfg.DisplayName, StartURL: StartPrefix + p.cfg.Name + "/start"})
	}
	return links
}

// newProvider checks one provider's configuration and fills its defaults.
func newProvider(c Provider) (*provider, error) {
	var errs []error
	if !validName(c.Name) {
		errs = append(errs, errors.New("the name must be 1 to 32 lower-case letters, digits or -, starting with a letter or digit"))
	}
	if err := checkIssuer(c.Issuer); err != nil {
		errs = append(errs, err)
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("the client id is required"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("the client secret is required"))
	}
	if (len(c.AllowedGroups) > 0 || c.RoleMap != nil) && c.RolesClaim == "" {
		errs = append(errs, errors.New("allowed groups and a role map need the roles claim"))
	}
	for _, r := range c.DefaultRoles {
		if !validRole(r) {
			errs = append(errs, fmt.Errorf("default role %q is not a valid role name", clip(r)))
		}
	}
	for from, roles := range c.RoleMap {
		for _, r := range roles {
			if !validRole(r) {
				errs = append(errs, fmt.Errorf("role map %q: %q is not a valid role name", clip(from), clip(r)))
			}
		}
	}
	for _, d := range c.AllowedEmailDomains {
		if d == "" || strings.ContainsAny(d, "@ ") {
			errs = append(errs, fmt.Errorf("allowed e-mail domain %q is not a domain", clip(d)))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.DisplayName == "" {
		c.DisplayName = c.Name
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(c.Scopes, "openid") {
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	c.Scopes = slices.Clone(c.Scopes)
	if c.UsernameClaim == "" {
		c.UsernameClaim = "preferred_username"
	}
	return &provider{cfg: c, lock: make(chan struct{}, 1)}, nil
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validRole is Moat's role name syntax: 1 to 64 of [a-z0-9._:-].
func validRole(r string) bool {
	if r == "" || len(r) > 64 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// checkIssuer accepts an https URL, or an http one on a loopback host.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer %q is not an absolute URL without query", clip(s))
	}
	return checkScheme(u)
}

// checkScheme accepts https, and http on a loopback host (a provider on
// the same machine).
func checkScheme(u *url.URL) error {
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: https is required (http only on a loopback address)", clip(u.Redacted()))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// redirectURI checks the public URL (an https origin) and builds the
// redirect URI from it.
func redirectURI(public string) (string, error) {
	u, err := url.Parse(public)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("public URL %q: want an https origin, https://host[:port]", clip(public))
	}
	return "https://" + u.Host + CallbackPath, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// plainPages is the ErrorPager when none is given: plain text.
type plainPages struct{}

func (plainPages) Error(w http.ResponseWriter, _ *http.Request, status int, title, message string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s\n\n%s\n", title, message)
}
