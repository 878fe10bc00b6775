package accounts

import (
	"context"
	"errors"
	"net/netip"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// Sessions lists the sessions of a user that still count.
func (s *Service) Sessions(ctx context.Context, username string) ([]*store.Session, error) {
	u, err := s.user(ctx, username)
	if err != nil {
		return nil, err
	}
	return s.o.Sessions.List(ctx, u.ID)
}

// RevokeSessions ends every session of a user, on every instance, and
// returns how many were live.
func (s *Service) RevokeSessions(ctx context.Context, username string) (int, error) {
	u, err := s.user(ctx, username)
	if err != nil {
		return 0, err
	}
	n, err := s.o.Sessions.RevokeUser(ctx, u.ID)
	if err != nil {
		return 0, err
	}
	s.record(ctx, "session.revoked", event.Success, u.Username, noAddr, "admin", map[string]string{"sessions": itoa(n)})
	return n, nil
}

// LogoutEverywhere ends every session of p's user, this one included.
func (s *Service) LogoutEverywhere(ctx context.Context, p *Principal, ip netip.Addr) error {
	n, err := s.o.Sessions.RevokeUser(ctx, p.UserID)
	if err != nil {
		return err
	}
	s.record(ctx, "session.revoked", event.Success, p.Username, ip, "logout_everywhere", map[string]string{"sessions": itoa(n)})
	return nil
}

// ErrNoSecondFactor refuses a step-up for a user who has no second factor
// to confirm.
var ErrNoSecondFactor = errors.New("no second factor to confirm: add an authenticator app or a passkey first")

// StepUp starts confirming the second factor again, for a page whose rule
// wants a recent one: the session is replaced by one that waits for the
// second factor (as after a password), keeping how the user first signed
// in. Finishing it (VerifyTOTP, VerifyRecoveryCode, FinishPasskeyVerify)
// gives a session whose auth time is now. The new token is returned.
func (s *Service) StepUp(ctx context.Context, token string, p *Principal, ip netip.Addr) (string, error) {
	if p.Pending != "" {
		return "", session.ErrNoSession
	}
	creds, err := s.o.Store.Credentials().ListByUser(ctx, p.UserID)
	if err != nil {
		return "", err
	}
	if !hasSecondFactor(creds) {
		return "", ErrNoSecondFactor
	}
	var methods []string
	for _, m := range p.Methods {
		if m != MethodTOTP && m != MethodRecovery && m != MethodWebAuthn && m != MethodMFA {
			methods = append(methods, m)
		}
	}
	if len(methods) == 0 {
		// A passwordless sign-in: the passkey it used is confirmed again.
		methods = []string{MethodWebAuthn}
	}
	tok, _, err := s.o.Sessions.Rotate(ctx, token, append(methods, PendingMFA), p.AuthTime)
	if err != nil {
		return "", err
	}
	s.record(ctx, "login.step_up", event.Success, p.Username, ip, "step_up", nil)
	return tok, nil
}
