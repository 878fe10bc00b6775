package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// discoveryRetry is how long a failed discovery is remembered: sign-ins in
// that time are answered "not answering" at once instead of each waiting
// on the provider, and the first one after it tries again. It is also the
// Retry-After of the "not answering" page.
const discoveryRetry = 5 * time.Second

// provider is a configured provider and what its discovery found.
type provider struct {
	cfg Provider

	cur  atomic.Pointer[endpoints] // nil until discovered, or after a failure to reach it
	lock chan struct{}             // one discovery at a time; holds the fields below
	// retryAt and lastErr remember the last failed discovery.
	retryAt time.Time
	lastErr error
}

// endpoints is what a provider's discovery document gave: immutable.
type endpoints struct {
	oauth    oauth2.Config
	verifier *gooidc.IDTokenVerifier // every check
	anyAud   *gooidc.IDTokenVerifier // every check but the audience, to name an audience mismatch
	provider *gooidc.Provider
	userinfo bool // the provider has a userinfo endpoint
	issParam bool // it sends iss with every authorization response (RFC 9207)
}

// errDown wraps every failure to reach a provider.
var errDown = errors.New("the provider is not answering")

// endpoints returns p's cached discovery, or discovers it. Concurrent
// callers wait for one discovery; a failure is remembered for
// discoveryRetry. The wait ends with ctx; the discovery itself does not,
// so a client that goes away does not spoil the result for the others.
func (rp *RP) endpoints(ctx context.Context, p *provider) (*endpoints, error) {
	if e := p.cur.Load(); e != nil {
		return e, nil
	}
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.lock }()
	if e := p.cur.Load(); e != nil {
		return e, nil
	}
	if rp.o.Now().Before(p.retryAt) {
		return nil, p.lastErr
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultTimeout)
	defer cancel()
	e, err := rp.discover(dctx, p)
	if err != nil {
		p.retryAt, p.lastErr = rp.o.Now().Add(discoveryRetry), err
		rp.log.Warn("discovering an OpenID provider", "provider", p.cfg.Name, "err", err)
		return nil, err
	}
	p.retryAt, p.lastErr = time.Time{}, nil
	p.cur.Store(e)
	return e, nil
}

// forget drops e as p's discovery, so the next sign-in discovers again.
func (p *provider) forget(e *endpoints) { p.cur.CompareAndSwap(e, nil) }

// discover fetches and checks p's discovery document.
func (rp *RP) discover(ctx context.Context, p *provider) (*endpoints, error) {
	ctx = gooidc.ClientContext(ctx, rp.client)
	prov, err := gooidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		// An issuer mismatch or a malformed document is a
		// configuration error, but to a user signing in it is a
		// provider that does not work: both are errDown.
		return nil, fmt.Errorf("%w: discovery: %w", errDown, err)
	}
	var meta struct {
		JWKS        string   `json:"jwks_uri"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		IssParam    bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := prov.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%w: discovery document: %v", errDown, err)
	}
	ep := prov.Endpoint()
	for what, u := range map[string]string{"authorization_endpoint": ep.AuthURL, "token_endpoint": ep.TokenURL,
		"jwks_uri": meta.JWKS, "userinfo_endpoint": prov.UserInfoEndpoint()} {
		if u == "" && what == "userinfo_endpoint" {
			continue
		}
		pu, err := url.Parse(u)
		if err == nil && pu.Host != "" {
			err = checkScheme(pu)
		} else {
			err = errors.New("not an absolute URL")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: discovery document: %s: %v", errDown, what, err)
		}
	}
	// Without a list the default is client_secret_basic (OpenID Connect
	// Discovery 1.0, section 3).
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, "client_secret_basic") &&
		slices.Contains(meta.AuthMethods, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &endpoints{
		oauth: oauth2.Config{
			ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
			Endpoint: ep, RedirectURL: rp.redirect, Scopes: p.cfg.Scopes,
		},
		verifier: prov.Verifier(&gooidc.Config{ClientID: p.cfg.ClientID, Now: rp.o.Now}),
		anyAud:   prov.Verifier(&gooidc.Config{SkipClientIDCheck: true, Now: rp.o.Now}),
		provider: prov,
		userinfo: prov.UserInfoEndpoint() != "",
		issParam: meta.IssParam,
	}, nil
}

// limitedClient returns a copy of c (nil: a client with defaultTimeout)
// whose responses are cut off with an error past maxResponseBytes.
func limitedClient(c *http.Client) *http.Client {
	var cc http.Client
	if c != nil {
		cc = *c
	} else {
		cc.Timeout = defaultTimeout
	}
	base := cc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = limitedTransport{base: base}
	return &cc
}

type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

var errTooLarge = fmt.Errorf("the provider's response is larger than %d bytes", maxResponseBytes)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
