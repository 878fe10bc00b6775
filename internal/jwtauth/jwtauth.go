// Package jwtauth verifies the JWT bearer tokens (RFC 7519) that API
// clients present, issued by configured issuers, following the JWT best
// current practices of RFC 8725, and turns a verified token into an
// authn.Principal. Signatures are checked by go-jose against the issuer's
// published JWK Set; failures carry the error codes of RFC 6750 for the
// WWW-Authenticate challenge.
//
// See https://www.rfc-editor.org/rfc/rfc7519, https://www.rfc-editor.org/rfc/rfc8725
// and https://www.rfc-editor.org/rfc/rfc6750.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults and limits of Options and Issuer.
const (
	DefaultClockSkew           = 30 * time.Second
	MaxClockSkew               = 5 * time.Minute
	DefaultMaxTokenBytes       = 8 << 10
	DefaultJWKSRefreshInterval = time.Minute
	DefaultCacheEntries        = 10000
	DefaultSubjectClaim        = "sub"
	DefaultNameClaim           = "preferred_username"
	DefaultScopesClaim         = "scope"

	// defaultJWKSMaxAge is how long a fetched JWK Set is used before it is
	// refetched in the background, unless its Cache-Control max-age says
	// otherwise (within [JWKSRefreshInterval, maxJWKSMaxAge]).
	defaultJWKSMaxAge = time.Hour
	maxJWKSMaxAge     = 24 * time.Hour
	// maxDocumentBytes caps a JWK Set or discovery document.
	maxDocumentBytes = 1 << 20
	// maxKeys caps the keys kept from one JWK Set.
	maxKeys = 100
	// fetchTimeout bounds one refresh of an issuer's keys (discovery and
	// JWK Set together).
	fetchTimeout = 10 * time.Second
	// minRSABits is the smallest RSA modulus accepted in a JWK Set.
	minRSABits = 2048
)

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer is the exact "iss" of its tokens.
	Issuer string
	// JWKSURL is the URL of its JWK Set: https, or http on loopback only.
	// Empty: the jwks_uri of the discovery document at Issuer +
	// "/.well-known/openid-configuration", whose "issuer" must equal Issuer
	// (Issuer must then be an https URL, or http on loopback).
	JWKSURL string
	// Audiences: a token's "aud" must contain one of these. Required.
	Audiences []string
	// Algorithms accepted: any of RS256, RS384, RS512, PS256, PS384, PS512,
	// ES256, ES384, EdDSA. none and HMAC algorithms never are. Empty:
	// RS256, ES256 and EdDSA.
	Algorithms []string
	// ClockSkew is the leeway for exp, nbf and iat. Zero: 30s; at most 5m.
	ClockSkew time.Duration
	// RolesClaim is the claim holding roles, a string or an array of
	// strings: a top-level claim name, or a dotted path into nested objects
	// such as "realm_access.roles". Empty: no roles.
	RolesClaim string
	// RoleMap maps a RolesClaim value to Moat roles; values it does not
	// list grant nothing. Nil: the values are the roles.
	RoleMap map[string][]string
	// ScopesClaim holds scopes, a space-separated string or an array of
	// strings. Empty: "scope". When the claim is absent, "scp" is read.
	ScopesClaim string
	// Claims are copied into Principal.Claims (names or dotted paths, as
	// for RolesClaim), when present.
	Claims []string
	// SubjectClaim holds the subject, a non-empty string that every token
	// must carry. Empty: "sub".
	SubjectClaim string
	// NameClaim holds the display name. Empty: "preferred_username". When
	// the claim is absent the subject is the name.
	NameClaim string
}

// Options configure a Verifier.
type Options struct {
	// Issuers are the trusted issuers; at least one.
	Issuers []Issuer
	// Client fetches JWK Sets and discovery documents. Nil: a client with a
	// 10s timeout that follows redirects only to https (or loopback) URLs.
	Client *http.Client
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// MaxTokenBytes: a longer token is refused before any parsing. Zero:
	// 8192.
	MaxTokenBytes int
	// JWKSRefreshInterval is the least time between two fetches of one
	// issuer's JWK Set prompted by requests (an unknown kid, a first use,
	// stale keys). Zero: 1m.
	JWKSRefreshInterval time.Duration
	// CacheEntries bounds the cache of verified tokens, kept by the SHA-256
	// of the token until the token's exp. Zero: 10000; negative: no cache.
	CacheEntries int
	// Logger receives fetch failures and skipped keys; never tokens. Nil:
	// discarded.
	Logger *slog.Logger
}

// Verifier verifies bearer tokens. It is safe for concurrent use. It is
// built once from its Options and never changes its configuration; the
// issuers' keys it holds are refreshed as described on Verify.
type Verifier struct {
	issuers         map[string]*issuer
	order           []*issuer
	client          *http.Client
	now             func() time.Time
	maxTokenBytes   int
	refreshInterval time.Duration
	cache           *tokenCache
	log             *slog.Logger
	bg              sync.WaitGroup // fetches and refresh loops in the background
}

// issuer is an Issuer compiled for verification, with the state of its keys.
type issuer struct {
	cfg        Issuer
	algs       []jose.SignatureAlgorithm
	audiences  []string
	rolesPath  []string
	namePath   []string
	subPath    []string
	scopesPath []string
	claimPaths [][]string
	keys       keyState
}

// New checks o and returns a Verifier. It reports every problem of o at
// once. It fetches nothing: keys are fetched on first use, or ahead of it
// by Start.
func New(o Options) (*Verifier, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(o.Issuers) == 0 {
		add("no issuers")
	}
	switch {
	case o.MaxTokenBytes < 0:
		add("max token bytes %d is negative", o.MaxTokenBytes)
	case o.MaxTokenBytes == 0:
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	switch {
	case o.JWKSRefreshInterval < 0:
		add("jwks refresh interval %v is negative", o.JWKSRefreshInterval)
	case o.JWKSRefreshInterval == 0:
		o.JWKSRefreshInterval = DefaultJWKSRefreshInterval
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = DefaultCacheEntries
	}

	v := &Verifier{
		issuers:         make(map[string]*issuer, len(o.Issuers)),
		client:          o.Client,
		now:             o.Now,
		maxTokenBytes:   o.MaxTokenBytes,
		refreshInterval: o.JWKSRefreshInterval,
		cache:           newTokenCache(o.CacheEntries),
		log:             o.Logger,
	}
	for i, c := range o.Issuers {
		is, ierrs := compileIssuer(c)
		for _, err := range ierrs {
			add("issuer %d (%q): %w", i, clip(c.Issuer), err)
		}
		if is == nil {
			continue
		}
		if _, dup := v.issuers[c.Issuer]; dup {
			add("issuer %d (%q): listed twice", i, clip(c.Issuer))
			continue
		}
		v.issuers[c.Issuer] = is
		v.order = append(v.order, is)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("jwt verifier: %w", errors.Join(errs...))
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: checkRedirect}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	v.log = v.log.With("component", "jwtauth")
	return v, nil
}

// compileIssuer checks c, fills in its defaults and compiles it. It returns
// a nil issuer when c cannot be used.
func compileIssuer(c Issuer) (*issuer, []error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Issuer == "" {
		add("issuer is empty")
	}
	if c.JWKSURL != "" {
		if err := checkFetchURL(c.JWKSURL); err != nil {
			add("jwks url: %w", err)
		}
	} else if c.Issuer != "" {
		if err := checkFetchURL(c.Issuer); err != nil {
			add("issuer (read for discovery, as no jwks url is set): %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		add("no audiences: tokens meant for another audience must not be accepted")
	}
	if slices.Contains(c.Audiences, "") {
		add("an audience is empty")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range c.Algorithms {
		if !supportedAlgorithm(a) {
			add("algorithm %q is not accepted: want RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA", clip(a))
			continue
		}
		if !slices.Contains(algs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, jose.SignatureAlgorithm(a))
		}
	}
	switch {
	case c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew:
		add("clock skew %v is not between 0 and %v", c.ClockSkew, MaxClockSkew)
	case c.ClockSkew == 0:
		c.ClockSkew = DefaultClockSkew
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = DefaultSubjectClaim
	}
	if c.NameClaim == "" {
		c.NameClaim = DefaultNameClaim
	}
	if c.ScopesClaim == "" {
		c.ScopesClaim = DefaultScopesClaim
	}
	path := func(what, name string) []string {
		if name == "" {
			return nil
		}
		p := strings.Split(name, ".")
		if slices.Contains(p, "") {
			add("%s %q: a dotted claim path has an empty part", what, clip(name))
		}
		return p
	}
	is := &issuer{
		audiences:  slices.Clone(c.Audiences),
		algs:       algs,
		rolesPath:  path("roles claim", c.RolesClaim),
		subPath:    path("subject claim", c.SubjectClaim),
		namePath:   path("name claim", c.NameClaim),
		scopesPath: path("scopes claim", c.ScopesClaim),
	}
	for _, name := range c.Claims {
		if name == "" {
			add("a copied claim name is empty")
			continue
		}
		is.claimPaths = append(is.claimPaths, path("claim", name))
	}
	for from, roles := range c.RoleMap {
		if from == "" || slices.Contains(roles, "") {
			add("role map entry %q: empty claim value or role", clip(from))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c.Audiences = is.audiences
	c.Claims = slices.Clone(c.Claims)
	if c.RoleMap != nil {
		m := make(map[string][]string, len(c.RoleMap))
		for k, r := range c.RoleMap {
			m[k] = slices.Clone(r)
		}
		c.RoleMap = m
	}
	is.cfg = c
	return is, nil
}

// supportedAlgorithm reports whether a is an asymmetric signature algorithm
// that this package accepts.
func supportedAlgorithm(a string) bool {
	switch jose.SignatureAlgorithm(a) {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.EdDSA:
		return true
	}
	return false
}

// checkFetchURL accepts https URLs, and http URLs to loopback hosts, with
// neither credentials nor a fragment.
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", clip(s))
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: scheme must be https", clip(s))
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL", clip(s))
	case u.User != nil:
		return fmt.Errorf("%q holds credentials", clip(s))
	case u.Fragment != "" || u.RawFragment != "":
		return fmt.Errorf("%q has a fragment", clip(s))
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: http is accepted only for a loopback host; use https", clip(s))
}

// isLoopbackHost reports whether host is "localhost" or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkRedirect lets the default client follow at most 5 redirects, and
// only to URLs that checkFetchURL accepts.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return checkFetchURL(req.URL.String())
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Start fetches every issuer's keys in the background now, then again
// whenever they reach their max age (1h by default), retrying failures
// after 1s, 2s, 4s and so on up to JWKSRefreshInterval. It returns at once;
// the background work stops when ctx is done. Calling it is optional:
// without it, keys are fetched on first use and refreshed as Verify finds
// them stale. Call it at most once.
func (v *Verifier) Start(ctx context.Context) {
	for _, is := range v.order {
		v.bg.Add(1)
		go func() {
			defer v.bg.Done()
			v.refreshLoop(ctx, is)
		}()
	}
}

// refreshLoop keeps is's keys fresh until ctx is done.
func (v *Verifier) refreshLoop(ctx context.Context, is *issuer) {
	backoff := time.Second
	for {
		wait := backoff
		ks, err := v.refresh(ctx, is, true, false)
		switch {
		case err != nil:
			backoff = min(2*backoff, v.refreshInterval)
		case ks != nil:
			backoff = time.Second
			wait = max(ks.staleAt.Sub(v.now()), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
