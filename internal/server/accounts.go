package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/oidc"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/ratelimit"
	"github.com/moatgw/moat/internal/session"
)

// Store secrets that instances share.
const (
	secretCSRFKey    = "portal.csrf-key"
	secretAppCSRFKey = "gateway.csrf-key"
	secretFlashKey   = "portal.flash-key"
	secretOIDCKey    = "oidc.state-key"
)

// Accounts is the accounts capability, opened: the service and the session
// manager and passkey service it runs on. The CLI opens it to manage users;
// moat serve also builds the login portal on it.
type Accounts struct {
	Service  *accounts.Service
	Sessions *session.Manager
	Passkeys *passkey.Service // nil when passkeys are off
	redis    *redis.Client
}

// Close stops the session manager and closes the Redis client.
func (a *Accounts) Close() error {
	err := a.Sessions.Close()
	if a.redis != nil {
		err = errors.Join(err, a.redis.Close())
	}
	return err
}

// OpenAccounts builds the accounts capability on an open state. now is the
// clock of sessions, lockouts and passkey ceremonies; nil means time.Now.
// failures counts failed sign-ins; nil means in this process's memory.
func OpenAccounts(ctx context.Context, cfg *config.Config, st *State, failures ratelimit.FailureStore, events event.Recorder, logger *slog.Logger, now func() time.Time) (*Accounts, error) {
	if now == nil {
		now = time.Now
	}
	ac := cfg.Accounts
	pw := ac.Password
	params := password.DefaultParams()
	params.Memory = uint32(pw.Memory / 1024)
	params.Time = uint32(pw.Iterations)
	params.Threads = uint8(pw.Parallelism)
	hasher, err := password.NewHasher(params, int64(pw.HashMemoryBudget), pw.HashWait.D())
	if err != nil {
		return nil, err
	}
	a := &Accounts{}
	var backend session.Backend = st.Store.Sessions()
	if ac.Sessions.RedisURL != "" {
		raw, err := resolveURL(ac.Sessions.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("accounts.sessions.redis_url: %w", err)
		}
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return nil, errors.New("accounts.sessions.redis_url: not a valid Redis URL")
		}
		a.redis = redis.NewClient(opts)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = a.redis.Ping(pctx).Err()
		cancel()
		if err != nil {
			_ = a.redis.Close()
			return nil, fmt.Errorf("accounts.sessions.redis_url: Redis does not answer: %w", err)
		}
		backend = session.NewRedis(a.redis, "moat:session:")
	}
	a.Sessions, err = session.New(backend, session.Options{
		IdleTimeout:     ac.Sessions.IdleTimeout.D(),
		AbsoluteTimeout: ac.Sessions.AbsoluteTimeout.D(),
		Now:             now,
		Logger:          logger.With("component", "sessions"),
	})
	if err != nil {
		_ = a.closeRedis()
		return nil, err
	}
	if !ac.Passkeys.Disabled {
		po := passkey.Options{
			RPID:          ac.Passkeys.RPID,
			RPOrigins:     ac.Passkeys.Origins,
			RPDisplayName: ac.Passkeys.DisplayName,
			Credentials:   st.Store.Credentials(),
			Users:         st.Store.Users(),
			Now:           now,
			Logger:        logger.With("component", "passkeys"),
		}
		if a.redis != nil {
			po.Ceremonies = redisCeremonies{c: a.redis, prefix: "moat:webauthn:"}
		}
		if a.Passkeys, err = passkey.New(po); err != nil {
			_ = a.Close()
			return nil, fmt.Errorf("passkeys: %w", err)
		}
	}
	lo := ac.Lockout
	acctPolicy := accounts.DefaultAccountPolicy()
	acctPolicy.MaxFailures, acctPolicy.Window, acctPolicy.LockFor, acctPolicy.BaseDelay = lo.MaxFailures, lo.Window.D(), lo.LockFor.D(), lo.BackOff.D()
	addrPolicy := accounts.DefaultAddressPolicy()
	addrPolicy.MaxFailures, addrPolicy.Window, addrPolicy.LockFor = lo.AddressMaxFailures, lo.Window.D(), lo.LockFor.D()
	a.Service, err = accounts.New(ctx, accounts.Options{
		Store:     st.Store,
		Hasher:    hasher,
		Policy:    password.Policy{MinLength: pw.MinLength, MaxLength: pw.MaxLength},
		Sessions:  a.Sessions,
		Passkeys:  a.Passkeys,
		MFARoles:  ac.MFARoles,
		EnrollTTL: ac.EnrollLinkTTL.D(),
		Events:    events,
		Logger:    logger.With("component", "accounts"),
		Now:       now,

		Failures:      failures,
		AccountPolicy: acctPolicy,
		AddressPolicy: addrPolicy,
	})
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Accounts) closeRedis() error {
	if a.redis == nil {
		return nil
	}
	return a.redis.Close()
}

// EnrollLink is the address of the page where the holder of an enrollment
// token sets their password.
func EnrollLink(cfg *config.Config, token string) string {
	return cfg.Accounts.PublicURL + portal.PathPassword + "?token=" + url.QueryEscape(token)
}

// Bootstrap makes sure a fresh installation can be taken over without a
// default password: with no user at all it creates "admin" (roles admin
// and moat:admin, Moat's own administrator)
// and returns a one-time enrollment link for it. While that admin has not
// set a password yet, each start replaces the link with a new one. Once
// anyone has enrolled it returns "".
func (a *Accounts) Bootstrap(ctx context.Context, cfg *config.Config) (string, error) {
	users, err := a.Service.Users(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case len(users) == 0:
		_, tok, err := a.Service.CreateUser(ctx, "admin", "", "Administrator", []string{"admin", "moat:admin"})
		if err != nil {
			return "", fmt.Errorf("creating the first admin: %w", err)
		}
		return EnrollLink(cfg, tok), nil
	case len(users) == 1 && users[0].Username == "admin":
		f, err := a.Service.Factors(ctx, users[0].ID)
		if err != nil || f[accounts.KindPassword] > 0 || f[accounts.KindWebAuthn] > 0 {
			return "", err
		}
		tok, err := a.Service.EnrollmentToken(ctx, "admin")
		if err != nil {
			return "", err
		}
		return EnrollLink(cfg, tok), nil
	}
	return "", nil
}

// portalHandler builds the login portal: its pages and forms, and its
// static files.
func (s *Server) portalHandler(ctx context.Context, cfg *config.Config) (http.Handler, error) {
	secrets := s.state.Store.Secrets()
	csrfKey, err := secrets.GetOrCreate(ctx, secretCSRFKey, 32)
	if err != nil {
		return nil, err
	}
	flashKey, err := secrets.GetOrCreate(ctx, secretFlashKey, 32)
	if err != nil {
		return nil, err
	}
	csrf, err := portal.NewCSRF(csrfKey)
	if err != nil {
		return nil, err
	}
	pages, err := portal.NewPages(s.baseLogger)
	if err != nil {
		return nil, err
	}
	rp, providers, err := s.oidcRP(ctx, cfg, pages)
	if err != nil {
		return nil, err
	}
	h, err := portal.NewHandler(portal.HandlerOptions{
		Cookies:           cfg.Accounts.Sessions.SessionCookies(),
		Providers:         providers,
		Accounts:          s.accounts.Service,
		Sessions:          s.accounts.Sessions,
		Pages:             pages,
		CSRF:              csrf,
		FlashKey:          flashKey,
		PasswordPolicyMin: cfg.Accounts.Password.MinLength,
		PasswordPolicyMax: cfg.Accounts.Password.MaxLength,
		Now:               s.now,
		Logger:            s.baseLogger,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(portal.StaticPrefix, portal.StaticHandler())
	if rp != nil {
		mux.Handle(oidc.StartPrefix, rp.Handler())
	}
	mux.Handle(portal.Prefix, h)
	return mux, nil
}

// oidcRP builds the OpenID Connect sign-in for the configured providers,
// or returns nil when there are none.
func (s *Server) oidcRP(ctx context.Context, cfg *config.Config, pages *portal.Pages) (*oidc.RP, []portal.Provider, error) {
	if len(cfg.OIDC.Providers) == 0 {
		return nil, nil, nil
	}
	key, err := s.state.Store.Secrets().GetOrCreate(ctx, secretOIDCKey, 32)
	if err != nil {
		return nil, nil, err
	}
	var ps []oidc.Provider
	for _, p := range cfg.OIDC.Providers {
		secret, err := p.ClientSecret.Resolve()
		if err != nil {
			return nil, nil, fmt.Errorf("oidc provider %s: client_secret: %w", p.Name, err)
		}
		ps = append(ps, oidc.Provider{
			Name: p.Name, DisplayName: p.DisplayName, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secret,
			Scopes: p.Scopes, UsernameClaim: p.UsernameClaim, RolesClaim: p.RolesClaim, RoleMap: roleMap(p.RoleMap),
			DefaultRoles: p.DefaultRoles, AllowedEmailDomains: p.AllowedEmailDomains, AllowedGroups: p.AllowedGroups,
		})
	}
	rp, err := oidc.New(oidc.Options{
		Cookies:   cfg.Accounts.Sessions.SessionCookies(),
		Providers: ps,
		PublicURL: cfg.Accounts.PublicURL,
		Accounts:  s.accounts.Service,
		Sessions:  s.accounts.Sessions,
		StateKey:  key,
		Client:    s.oidcClient,
		Now:       s.now,
		Logger:    s.baseLogger.With("component", "oidc"),
		Events:    s.events,
		Pages:     noticePager{pages},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("oidc: %w", err)
	}
	var links []portal.Provider
	for _, l := range rp.Providers() {
		links = append(links, portal.Provider{Name: l.DisplayName, URL: l.StartURL})
	}
	return rp, links, nil
}

// noticePager shows the OIDC sign-in's error pages as portal notices.
type noticePager struct{ pages *portal.Pages }

func (n noticePager) Error(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	n.pages.Render(w, r, status, portal.PageNotice, &portal.NoticeData{
		Title: title, Message: message, Error: true, Link: portal.PathLogin, LinkText: "Back to the sign-in page",
	})
}

// redisCeremonies keeps WebAuthn ceremonies in Redis, so that a ceremony
// begun on one instance finishes on any other.
type redisCeremonies struct {
	c      *redis.Client
	prefix string
}

func (r redisCeremonies) Put(ctx context.Context, id string, data []byte, expires time.Time) error {
	return r.c.SetArgs(ctx, r.prefix+id, data, redis.SetArgs{Mode: "NX", ExpireAt: expires}).Err()
}

func (r redisCeremonies) Take(ctx context.Context, id string) ([]byte, error) {
	b, err := r.c.GetDel(ctx, r.prefix+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, passkey.ErrNoCeremony
	}
	return b, err
}
