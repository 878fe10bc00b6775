package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/store"
)

// Session methods of a sign-in at an external OpenID provider.
const (
	MethodOIDC = "oidc" // signed in at the provider
	MethodMFA  = "mfa"  // the provider says it used several factors
)

// ExternalIdentity is what an OpenID provider asserts about a user who
// signed in there, after the caller checked the ID token and mapped its
// claims.
type ExternalIdentity struct {
	Provider    string   // the provider's name in Moat's config, for events
	Issuer      string   // the ID token's iss
	Subject     string   // its sub: with Issuer, the user's stable identity
	Username    string   // the name to give a new user (preferred_username, or the email)
	Email       string   // stored encrypted
	DisplayName string   //
	Roles       []string // mapped from the token's claims; they replace the user's roles at each sign-in
	MFA         bool     // the provider says it used several factors (amr)
}

// ExternalLogin signs in a user authenticated by an OpenID provider. The
// first sign-in creates the user, linked to (Issuer, Subject); a user is
// never linked to a local account by name or e-mail, which would let
// whoever controls a provider account take over the local one. The
// provider is the source of the user's roles: they are replaced with
// Roles at every sign-in, and the new session is a new id.
//
// When the user's roles require a second factor and the provider does not
// say it used one, the session waits for Moat's own second factor (or its
// enrollment), as after a password. A disabled user is ErrLoginFailed.
func (s *Service) ExternalLogin(ctx context.Context, id ExternalIdentity, ip netip.Addr) (Result, error) {
	if id.Issuer == "" || id.Subject == "" {
		return Result{}, errors.New("external login: issuer and subject are required")
	}
	u, created, err := s.externalUser(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if u.Status != StatusActive {
		s.record(ctx, "login.failed", event.Denied, u.Username, ip, MethodOIDC, map[string]string{"reason": "disabled", "provider": id.Provider})
		return Result{}, ErrLoginFailed
	}
	if !created && !slices.Equal(u.Roles, id.Roles) {
		before := joinRoles(u.Roles)
		u.Roles = slices.Clone(id.Roles)
		if err := s.o.Store.Users().Update(ctx, u); err != nil {
			return Result{}, err
		}
		s.users.forget(u.ID)
		s.record(ctx, "user.roles_changed", event.Success, u.Username, ip, MethodOIDC,
			map[string]string{"provider": id.Provider, "from": before, "to": joinRoles(u.Roles)})
	}
	methods := []string{MethodOIDC}
	if id.MFA {
		methods = append(methods, MethodMFA)
	}
	outcome := LoggedIn
	if s.MFARequired(u.Roles) && !id.MFA {
		creds, err := s.o.Store.Credentials().ListByUser(ctx, u.ID)
		if err != nil {
			return Result{}, err
		}
		if hasSecondFactor(creds) {
			methods, outcome = append(methods, PendingMFA), NeedSecondFactor
		} else {
			methods, outcome = append(methods, PendingEnrollMFA), MustEnroll
		}
	}
	tok, sess, err := s.o.Sessions.Create(ctx, u.ID, methods, s.o.Now())
	if err != nil {
		return Result{}, err
	}
	if outcome == LoggedIn {
		s.loggedIn(ctx, u, ip, methods)
	} else {
		s.record(ctx, "login.provider_verified", event.Success, u.Username, ip, MethodOIDC,
			map[string]string{"provider": id.Provider, "next": pendingOf(methods)})
	}
	return Result{Outcome: outcome, Token: tok, Session: sess, User: u}, nil
}

// externalUser finds the user linked to id, or creates one.
func (s *Service) externalUser(ctx context.Context, id ExternalIdentity) (*store.User, bool, error) {
	link, err := s.o.Store.Identities().Get(ctx, id.Issuer, id.Subject)
	if err == nil {
		u, err := s.o.Store.Users().Get(ctx, link.UserID)
		return u, false, err
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	base := externalUsername(id)
	var u *store.User
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", trimForSuffix(base), i+1)
		}
		if i >= 20 {
			return nil, false, fmt.Errorf("external login: no free user name like %q", base)
		}
		u = &store.User{Username: name, Email: id.Email, DisplayName: id.DisplayName, Roles: slices.Clone(id.Roles),
			Status: StatusActive, CreatedAt: s.o.Now()}
		err = s.o.Store.Users().Create(ctx, u)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, false, err
		}
	}
	if err := s.o.Store.Identities().Create(ctx, &store.Identity{UserID: u.ID, Issuer: id.Issuer, Subject: id.Subject, CreatedAt: s.o.Now()}); err != nil {
		// Another instance linked the same identity first: use its user.
		_ = s.o.Store.Users().Delete(ctx, u.ID)
		if errors.Is(err, store.ErrConflict) {
			return s.externalUser(ctx, id)
		}
		return nil, false, err
	}
	s.record(ctx, "user.created", event.Success, u.Username, noAddr, MethodOIDC,
		map[string]string{"provider": id.Provider, "roles": joinRoles(u.Roles)})
	return u, true, nil
}

// externalUsername turns what a provider offers into a valid user name:
// the preferred name, else the e-mail, else a name from the subject.
func externalUsername(id ExternalIdentity) string {
	for _, c := range []string{id.Username, id.Email} {
		if n, err := NormalizeUsername(sanitizeName(c)); err == nil {
			return n
		}
	}
	n, err := NormalizeUsername(sanitizeName(id.Provider + "-" + id.Subject))
	if err != nil {
		return "user"
	}
	return n
}

// sanitizeName keeps the characters a user name may hold, lower-cased.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '_', r == '@', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('.')
		}
		if b.Len() >= 60 {
			break
		}
	}
	return strings.TrimLeft(b.String(), "._@-")
}

func trimForSuffix(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}
