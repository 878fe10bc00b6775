package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/moatgw/moat/internal/admin"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/assertion"
	"github.com/moatgw/moat/internal/clientcert"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/jwtauth"
)

// secretAPIKeyPepper keys the HMAC that API keys are stored as.
const secretAPIKeyPepper = "apikey.pepper"

// OpenAPIKeys returns the API key service on an open state, for the CLI.
func OpenAPIKeys(ctx context.Context, st *State) (*apikey.Service, error) {
	pepper, err := st.Store.Secrets().GetOrCreate(ctx, secretAPIKeyPepper, 32)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return apikey.New(apikey.Options{Keys: st.Store.APIKeys(), Pepper: pepper})
}

// openIdentity builds the machine-identity capabilities on the open store:
// API keys, bearer tokens from external issuers, and the signer of the
// identity assertion for upstreams.
func (s *Server) openIdentity(cfg *config.Config) error {
	pepper, err := s.state.Store.Secrets().GetOrCreate(s.ctx, secretAPIKeyPepper, 32)
	if err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	if s.apikeys, err = apikey.New(apikey.Options{Keys: s.state.Store.APIKeys(), Pepper: pepper, Now: s.now}); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	if len(cfg.JWT.Issuers) > 0 {
		var issuers []jwtauth.Issuer
		for _, is := range cfg.JWT.Issuers {
			issuers = append(issuers, jwtauth.Issuer{
				Issuer: is.Issuer, JWKSURL: is.JWKSURL, Audiences: is.Audiences, Algorithms: is.Algorithms,
				ClockSkew: is.ClockSkew.D(), RolesClaim: is.RolesClaim, RoleMap: roleMap(is.RoleMap), ScopesClaim: is.ScopesClaim, Claims: is.Claims,
			})
		}
		s.jwt, err = jwtauth.New(jwtauth.Options{
			Issuers: issuers, Client: s.oidcClient, Now: s.now, MaxTokenBytes: int(cfg.JWT.MaxTokenBytes),
			Logger: s.baseLogger.With("component", "jwt"),
		})
		if err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
	}
	s.assertions, err = assertion.New(s.ctx, assertion.Options{
		Keys:     s.state.Store.SigningKeys(),
		Issuer:   cfg.Accounts.PublicURL,
		Lifetime: cfg.Assertion.Lifetime.D(),
		Rotation: cfg.Assertion.Rotation.D(),
		Now:      s.now,
		Logger:   s.baseLogger.With("component", "assertion"),
	})
	if err != nil {
		return fmt.Errorf("identity assertion: %w", err)
	}
	s.adminAPI, err = admin.New(admin.Options{
		Accounts: s.accounts.Service, APIKeys: s.apikeys, Events: s.events, Now: s.now,
		Logger: s.baseLogger, PublicURL: cfg.Accounts.PublicURL,
	})
	if err != nil {
		return fmt.Errorf("administration API: %w", err)
	}
	return nil
}

// startIdentity starts the background work of the identity capabilities.
func (s *Server) startIdentity() {
	if s.jwt != nil {
		s.jwt.Start(s.ctx)
	}
	s.wg.Go(func() { s.assertions.Run(s.ctx) })
}

// clientCerts are what the HTTPS listener needs when some route accepts
// client certificates: the CAs to name in its certificate request.
type clientCerts struct {
	pool *x509.CertPool // every route's client CAs

	mu      sync.Mutex
	base    *tls.Config // the certificate manager's config this was derived from
	derived *tls.Config
}

// compileClientCerts builds the route's verifier and adds its CAs to the
// snapshot's listener-wide set.
func compileClientCerts(snap *snapshot, rc *config.Route, cr *compiledRoute, now func() time.Time) error {
	if rc.ClientCerts == nil {
		return nil
	}
	v, err := clientcert.New(rc.ClientCerts.CAs, rc.ClientCerts.Roles, now)
	if err != nil {
		return err
	}
	cr.mtls = v
	_, cas, err := clientcert.LoadCAs(rc.ClientCerts.CAs)
	if err != nil {
		return err
	}
	if snap.clientCerts == nil {
		snap.clientCerts = &clientCerts{pool: x509.NewCertPool()}
	}
	for _, c := range cas {
		snap.clientCerts.pool.AddCert(c)
	}
	return nil
}

// tlsConfig returns the listener's TLS config for a handshake: base as it
// is, or, when some route accepts client certificates, base asking for one
// (without requiring it: routes decide).
func (snap *snapshot) tlsConfig(base *tls.Config) *tls.Config {
	cc := snap.clientCerts
	if cc == nil {
		return base
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.base != base {
		d := base.Clone()
		d.ClientAuth = tls.RequestClientCert
		d.ClientCAs = cc.pool
		cc.base, cc.derived = base, d
	}
	return cc.derived
}

// roleMap turns configured role mappings into the map the identity
// packages take; mappings with the same value add up. Nil when empty.
func roleMap(ms []config.RoleMapping) map[string][]string {
	var m map[string][]string
	for _, rm := range ms {
		if m == nil {
			m = map[string][]string{}
		}
		m[rm.From] = append(m[rm.From], rm.Roles...)
	}
	return m
}
