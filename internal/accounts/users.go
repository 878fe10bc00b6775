package accounts

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// CreateUser adds an active user with no password yet and returns a
// one-time enrollment token: whoever holds it sets the password. There is
// never a default password.
func (s *Service) CreateUser(ctx context.Context, username, email, displayName string, roles []string) (*store.User, string, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, "", err
	}
	u := &store.User{Username: name, Email: email, DisplayName: displayName, Roles: roles, Status: StatusActive, CreatedAt: s.o.Now()}
	if err := s.o.Store.Users().Create(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, "", fmt.Errorf("user %q already exists", name)
		}
		return nil, "", err
	}
	tok, err := s.issueEnrollment(ctx, u)
	if err != nil {
		return nil, "", err
	}
	s.record(ctx, "user.created", event.Success, name, noAddr, "", map[string]string{"roles": joinRoles(roles)})
	return u, tok, nil
}

// EnrollmentToken replaces any enrollment token of the user with a new one
// (for a password reset): it removes the password, so the old one stops
// working at once, and revokes the user's sessions.
func (s *Service) EnrollmentToken(ctx context.Context, username string) (string, error) {
	u, err := s.user(ctx, username)
	if err != nil {
		return "", err
	}
	tok, err := s.issueEnrollment(ctx, u)
	if err != nil {
		return "", err
	}
	if err := s.deleteKinds(ctx, u.ID, KindPassword); err != nil {
		return "", err
	}
	if _, err := s.o.Sessions.RevokeUser(ctx, u.ID); err != nil {
		return "", err
	}
	s.record(ctx, "user.password_reset", event.Success, u.Username, noAddr, "", nil)
	return tok, nil
}

func (s *Service) issueEnrollment(ctx context.Context, u *store.User) (string, error) {
	if err := s.deleteKinds(ctx, u.ID, KindEnroll); err != nil {
		return "", err
	}
	tok, err := newToken()
	if err != nil {
		return "", err
	}
	now := s.o.Now()
	c := &store.Credential{UserID: u.ID, Kind: KindEnroll, Hash: hashToken(tok), CreatedAt: now, ExpiresAt: now.Add(s.o.EnrollTTL)}
	if err := s.o.Store.Credentials().Create(ctx, c); err != nil {
		return "", err
	}
	// The token names its user so that redeeming it needs no table scan.
	return u.ID + "." + tok, nil
}

// SetPasswordWithToken redeems an enrollment token: it checks the new
// password against the policy, stores its hash and uses the token up.
func (s *Service) SetPasswordWithToken(ctx context.Context, token, newPassword string) (*store.User, error) {
	userID, tok, ok := cutToken(token)
	if !ok {
		return nil, ErrInvalidToken
	}
	u, err := s.o.Store.Users().Get(ctx, userID)
	if err != nil {
		return nil, ErrInvalidToken
	}
	creds, err := s.o.Store.Credentials().ListByUser(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	var enroll *store.Credential
	want := hashToken(tok)
	for _, c := range creds {
		if c.Kind == KindEnroll && subtle.ConstantTimeCompare([]byte(c.Hash), []byte(want)) == 1 {
			enroll = c
		}
	}
	if enroll == nil || !s.o.Now().Before(enroll.ExpiresAt) || u.Status != StatusActive {
		return nil, ErrInvalidToken
	}
	if err := s.o.Policy.Check(newPassword, u.Username); err != nil {
		return nil, err
	}
	if err := s.setPassword(ctx, u, newPassword); err != nil {
		return nil, err
	}
	if err := s.o.Store.Credentials().Delete(ctx, enroll.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	s.record(ctx, "password.set", event.Success, u.Username, noAddr, "enrollment", nil)
	return u, nil
}

func (s *Service) setPassword(ctx context.Context, u *store.User, pw string) error {
	phc, err := s.o.Hasher.Hash(ctx, pw)
	if err != nil {
		return err
	}
	if err := s.deleteKinds(ctx, u.ID, KindPassword); err != nil {
		return err
	}
	return s.o.Store.Credentials().Create(ctx, &store.Credential{UserID: u.ID, Kind: KindPassword, Hash: phc, CreatedAt: s.o.Now()})
}

// SetStatus disables or enables a user. Disabling revokes every session.
func (s *Service) SetStatus(ctx context.Context, username, status string) error {
	if status != StatusActive && status != StatusDisabled {
		return fmt.Errorf("unknown status %q", status)
	}
	u, err := s.user(ctx, username)
	if err != nil {
		return err
	}
	u.Status = status
	if err := s.o.Store.Users().Update(ctx, u); err != nil {
		return err
	}
	s.users.forget(u.ID)
	s.users.forget("name:" + u.Username)
	if status == StatusDisabled {
		if _, err := s.o.Sessions.RevokeUser(ctx, u.ID); err != nil {
			return err
		}
	}
	s.record(ctx, "user."+status, event.Success, u.Username, noAddr, "", nil)
	return nil
}

// ResetMFA removes every second factor of a user (TOTP, passkeys, recovery
// codes) and revokes the user's sessions; a user whose role requires a
// second factor must enroll again at the next login.
func (s *Service) ResetMFA(ctx context.Context, username string) error {
	u, err := s.user(ctx, username)
	if err != nil {
		return err
	}
	if err := s.deleteKinds(ctx, u.ID, KindTOTP, KindTOTPPending, KindWebAuthn, KindRecovery); err != nil {
		return err
	}
	if _, err := s.o.Sessions.RevokeUser(ctx, u.ID); err != nil {
		return err
	}
	s.record(ctx, "mfa.removed", event.Success, u.Username, noAddr, "reset", nil)
	return nil
}

// Users lists every user.
func (s *Service) Users(ctx context.Context) ([]*store.User, error) {
	return s.o.Store.Users().List(ctx)
}

// Factors lists the second factors a user has, by kind.
func (s *Service) Factors(ctx context.Context, userID string) (map[string]int, error) {
	creds, err := s.o.Store.Credentials().ListByUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, c := range creds {
		switch c.Kind {
		case KindTOTP, KindWebAuthn, KindRecovery, KindPassword:
			out[c.Kind]++
		}
	}
	return out, nil
}

func (s *Service) user(ctx context.Context, username string) (*store.User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, err
	}
	u, err := s.o.Store.Users().GetByUsername(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no user %q", name)
	}
	return u, err
}

func (s *Service) deleteKinds(ctx context.Context, userID string, kinds ...string) error {
	creds, err := s.o.Store.Credentials().ListByUser(ctx, userID)
	if err != nil {
		return err
	}
	for _, c := range creds {
		for _, k := range kinds {
			if c.Kind == k {
				if err := s.o.Store.Credentials().Delete(ctx, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
		}
	}
	return nil
}

func cutToken(token string) (userID, tok string, ok bool) {
	for i := 0; i < len(token); i++ {
		if token[i] == '.' {
			userID, tok = token[:i], token[i+1:]
			return userID, tok, userID != "" && len(tok) == 43 && len(userID) <= 64
		}
	}
	return "", "", false
}

func joinRoles(roles []string) string {
	out := ""
	for i, r := range roles {
		if i > 0 {
			out += ","
		}
		out += r
	}
	return out
}

// noAddr is for events that come from an operator, not a client.
var noAddr netip.Addr

// ChangePassword replaces the password of p, a signed-in user, after
// checking the current one (a user without a password sets one with
// current ""). A wrong current password counts against the account like a
// failed sign-in and is ErrLoginFailed; a new password the policy refuses
// is a *password.PolicyError. Every other session of the user ends, and
// this one is replaced by a new one, whose token is returned.
func (s *Service) ChangePassword(ctx context.Context, token string, p *Principal, current, newPassword string, ip netip.Addr) (string, error) {
	if p.Pending != "" {
		return "", session.ErrNoSession
	}
	u, err := s.o.Store.Users().Get(ctx, p.UserID)
	if err != nil {
		return "", err
	}
	l, lockedNow, err := s.attempt(ctx, u.Username)
	if err != nil {
		return "", err
	}
	if !l.Allowed() {
		_, err := s.refusedEarly(ctx, u.Username, ip, "account", l.Locked)
		return "", err
	}
	creds, err := s.o.Store.Credentials().ListByUser(ctx, u.ID)
	if err != nil {
		return "", err
	}
	for _, c := range creds {
		if c.Kind != KindPassword {
			continue
		}
		ok, _, err := s.o.Hasher.Verify(ctx, c.Hash, current)
		if err != nil {
			return "", err
		}
		if !ok {
			if lockedNow {
				s.record(ctx, "account.locked", event.Denied, u.Username, ip, "lockout.account", map[string]string{"reason": "password_change"})
			}
			s.record(ctx, "login.failed", event.Failure, u.Username, ip, "password_change", map[string]string{"reason": "wrong_password"})
			return "", ErrLoginFailed
		}
	}
	s.forgive(ctx, u.Username)
	if err := s.o.Policy.Check(newPassword, u.Username); err != nil {
		return "", err
	}
	if err := s.setPassword(ctx, u, newPassword); err != nil {
		return "", err
	}
	if _, err := s.o.Sessions.RevokeUser(ctx, u.ID); err != nil {
		return "", err
	}
	tok, _, err := s.o.Sessions.Create(ctx, u.ID, p.Methods, p.AuthTime)
	if err != nil {
		return "", err
	}
	s.record(ctx, "password.changed", event.Success, u.Username, ip, "account", nil)
	return tok, nil
}
