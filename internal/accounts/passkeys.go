package accounts

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// ErrPasskeysOff is returned by the passkey methods of a Service built
// without a passkey service.
var ErrPasskeysOff = errors.New("passkeys are not configured")

// ErrLastFactor refuses to remove the only second factor of a user whose
// role requires one.
var ErrLastFactor = errors.New("this is your only second factor and your role requires one: add another before removing it")

// BeginPasskeyLogin starts a passwordless login: the browser offers the
// discoverable passkeys it holds for this site, and the response names the
// user. A client address that is locked out may not begin one.
func (s *Service) BeginPasskeyLogin(ctx context.Context, ip netip.Addr) (options []byte, ceremony string, err error) {
	if s.o.Passkeys == nil {
		return nil, "", ErrPasskeysOff
	}
	if l, err := s.checkAddress(ctx, ip); err != nil {
		return nil, "", err
	} else if !l.Allowed() {
		return s.failBegin(ctx, ip, l.Locked)
	}
	return s.o.Passkeys.BeginLogin(ctx, nil)
}

func (s *Service) failBegin(ctx context.Context, ip netip.Addr, locked bool) ([]byte, string, error) {
	_, err := s.refusedEarly(ctx, "", ip, "address", locked)
	return nil, "", err
}

// FinishPasskeyLogin verifies a passwordless login. The passkey verified
// its user (PIN or biometric), so it stands for both factors: the session
// is a full login with method webauthn. Every refusal is ErrLoginFailed,
// counted against the client address; the reason goes to the event.
//
// An account locked by failed passwords or codes does not stop its owner
// from signing in with a passkey: guessing cannot produce a passkey's
// signature, and a lock that an attacker can set on purpose should not
// lock the owner out. A passkey login clears the account's failures, not
// the address's.
func (s *Service) FinishPasskeyLogin(ctx context.Context, ceremony string, response []byte, ip netip.Addr) (Result, error) {
	if s.o.Passkeys == nil {
		return Result{}, ErrPasskeysOff
	}
	if l, err := s.checkAddress(ctx, ip); err != nil {
		return Result{}, err
	} else if !l.Allowed() {
		return s.refusedEarly(ctx, "", ip, "address", l.Locked)
	}
	userID, _, verified, err := s.o.Passkeys.FinishLogin(ctx, ceremony, response)
	if err != nil && !errors.Is(err, passkey.ErrRefused) {
		return Result{}, err // the check could not be made: fail closed, count nothing
	}
	reason, who := passkey.Reason(err), ""
	if err == nil && !verified {
		reason, who = "user_not_verified", userID
	}
	if reason != "" {
		s.failAddress(ctx, "", ip, "passkey")
		s.record(ctx, "login.failed", event.Failure, who, ip, MethodWebAuthn, map[string]string{"reason": reason})
		return Result{}, ErrLoginFailed
	}
	u, err := s.o.Store.Users().Get(ctx, userID)
	if err != nil {
		return Result{}, err
	}
	s.forgive(ctx, u.Username)
	methods := []string{MethodWebAuthn}
	tok, sess, err := s.o.Sessions.Create(ctx, u.ID, methods, s.o.Now())
	if err != nil {
		return Result{}, err
	}
	s.loggedIn(ctx, u, ip, methods)
	return Result{Outcome: LoggedIn, Token: tok, Session: sess, User: u}, nil
}

// BeginPasskeyVerify starts a passkey check as the second factor of a
// login that waits for one (after the password).
func (s *Service) BeginPasskeyVerify(ctx context.Context, token string) (options []byte, ceremony string, err error) {
	if s.o.Passkeys == nil {
		return nil, "", ErrPasskeysOff
	}
	u, err := s.pendingUser(ctx, token, PendingMFA)
	if err != nil {
		return nil, "", err
	}
	return s.o.Passkeys.BeginLogin(ctx, u)
}

// FinishPasskeyVerify finishes the second factor begun by
// BeginPasskeyVerify. A refusal is ErrCodeRejected, counted against the
// account like a wrong TOTP code.
func (s *Service) FinishPasskeyVerify(ctx context.Context, token, ceremony string, response []byte, ip netip.Addr) (Result, error) {
	if s.o.Passkeys == nil {
		return Result{}, ErrPasskeysOff
	}
	var internal error
	res, err := s.secondFactor(ctx, token, ip, MethodWebAuthn, func(u *store.User, _ []*store.Credential) bool {
		userID, _, _, err := s.o.Passkeys.FinishLogin(ctx, ceremony, response)
		if err != nil && !errors.Is(err, passkey.ErrRefused) {
			internal = err
		}
		return err == nil && userID == u.ID
	})
	if internal != nil {
		return Result{}, internal
	}
	return res, err
}

// pendingUser returns the user of a session that waits for pending.
func (s *Service) pendingUser(ctx context.Context, token, pending string) (*store.User, error) {
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		return nil, err
	}
	if p.Pending != pending {
		return nil, session.ErrNoSession
	}
	return s.o.Store.Users().Get(ctx, p.UserID)
}

// BeginPasskeyRegistration starts adding a passkey to the account of p, a
// full login or one that must enroll a second factor first.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, p *Principal) (options []byte, ceremony string, err error) {
	if s.o.Passkeys == nil {
		return nil, "", ErrPasskeysOff
	}
	if p.Pending != "" && p.Pending != PendingEnrollMFA {
		return nil, "", session.ErrNoSession
	}
	u, err := s.o.Store.Users().Get(ctx, p.UserID)
	if err != nil {
		return nil, "", err
	}
	return s.o.Passkeys.BeginRegistration(ctx, u)
}

// FinishPasskeyRegistration stores the passkey named name. Like
// ConfirmTOTP, the first second factor brings recovery codes (returned
// once); a session that had to enroll is replaced by a full login, whose
// token is returned (otherwise newToken is "" and the session stays).
func (s *Service) FinishPasskeyRegistration(ctx context.Context, token string, p *Principal, ceremony, name string, response []byte, ip netip.Addr) (newToken string, recoveryCodes []string, err error) {
	if s.o.Passkeys == nil {
		return "", nil, ErrPasskeysOff
	}
	if p.Pending != "" && p.Pending != PendingEnrollMFA {
		return "", nil, session.ErrNoSession
	}
	u, err := s.o.Store.Users().Get(ctx, p.UserID)
	if err != nil {
		return "", nil, err
	}
	c, err := s.o.Passkeys.FinishRegistration(ctx, ceremony, u, name, response)
	if err != nil {
		if errors.Is(err, passkey.ErrRefused) {
			s.record(ctx, "mfa.enroll_failed", event.Failure, p.Username, ip, MethodWebAuthn, map[string]string{"reason": passkey.Reason(err)})
		}
		return "", nil, err
	}
	creds, err := s.o.Store.Credentials().ListByUser(ctx, p.UserID)
	if err != nil {
		return "", nil, err
	}
	if !slices.ContainsFunc(creds, func(c *store.Credential) bool { return c.Kind == KindRecovery }) {
		if recoveryCodes, err = s.newRecoveryCodes(ctx, p.UserID); err != nil {
			return "", nil, err
		}
	}
	s.record(ctx, "mfa.enrolled", event.Success, p.Username, ip, MethodWebAuthn, map[string]string{"name": c.Name})
	if p.Pending == PendingEnrollMFA {
		newToken, _, err = s.o.Sessions.Rotate(ctx, token, []string{MethodPassword, MethodWebAuthn}, s.o.Now())
	}
	return newToken, recoveryCodes, err
}

// Passkeys lists the passkeys of a user, oldest first.
func (s *Service) Passkeys(ctx context.Context, userID string) ([]passkey.Passkey, error) {
	if s.o.Passkeys == nil {
		return nil, nil
	}
	return s.o.Passkeys.List(ctx, userID)
}

// PasskeysEnabled reports whether the Service was built with passkeys.
func (s *Service) PasskeysEnabled() bool { return s.o.Passkeys != nil }

// RenamePasskey renames one of p's passkeys.
func (s *Service) RenamePasskey(ctx context.Context, p *Principal, id, name string) error {
	if s.o.Passkeys == nil {
		return ErrPasskeysOff
	}
	return s.o.Passkeys.Rename(ctx, p.UserID, id, name)
}

// RemovePasskey removes one of p's passkeys, unless it is the last second
// factor of a user whose role requires one (ErrLastFactor).
func (s *Service) RemovePasskey(ctx context.Context, p *Principal, id string, ip netip.Addr) error {
	if s.o.Passkeys == nil {
		return ErrPasskeysOff
	}
	defer s.lockUser(p.UserID)()
	if err := s.keepsSecondFactor(ctx, p, KindWebAuthn); err != nil {
		return err
	}
	if err := s.o.Passkeys.Remove(ctx, p.UserID, id); err != nil {
		return err
	}
	s.record(ctx, "mfa.removed", event.Success, p.Username, ip, MethodWebAuthn, map[string]string{"id": id})
	return nil
}

// RemoveTOTP removes p's authenticator app, unless it is the last second
// factor of a user whose role requires one (ErrLastFactor).
func (s *Service) RemoveTOTP(ctx context.Context, p *Principal, ip netip.Addr) error {
	defer s.lockUser(p.UserID)()
	if err := s.keepsSecondFactor(ctx, p, KindTOTP); err != nil {
		return err
	}
	f, err := s.Factors(ctx, p.UserID)
	if err != nil || f[KindTOTP] == 0 {
		return err
	}
	if err := s.deleteKinds(ctx, p.UserID, KindTOTP); err != nil {
		return err
	}
	s.record(ctx, "mfa.removed", event.Success, p.Username, ip, MethodTOTP, nil)
	return nil
}

// keepsSecondFactor refuses removing one factor of kind when the user's
// role requires a second factor and no other one would remain.
func (s *Service) keepsSecondFactor(ctx context.Context, p *Principal, kind string) error {
	if !s.MFARequired(p.Roles) {
		return nil
	}
	f, err := s.Factors(ctx, p.UserID)
	if err != nil {
		return err
	}
	if f[KindTOTP]+f[KindWebAuthn]-1 < 1 && f[kind] > 0 {
		return ErrLastFactor
	}
	return nil
}
