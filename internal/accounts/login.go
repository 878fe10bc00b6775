package accounts

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// Outcome is where a login step leaves the user.
type Outcome int

// Outcomes.
const (
	// LoggedIn: the session is a full login.
	LoggedIn Outcome = iota + 1
	// NeedSecondFactor: the password was right; the session waits for a
	// second factor before it counts as a login.
	NeedSecondFactor
	// MustEnroll: the password was right, the user's role requires a
	// second factor and there is none yet: the session may only enroll one.
	MustEnroll
)

// Result is the outcome of a login step, with the session token to set.
type Result struct {
	Outcome Outcome
	Token   string
	Session *store.Session
	User    *store.User
}

// Principal is who a session authenticates.
type Principal struct {
	UserID   string
	Username string
	Roles    []string
	Methods  []string // how the user authenticated: pwd, otp, recovery, webauthn
	AuthTime time.Time
	Pending  string // PendingMFA or PendingEnrollMFA while the login is unfinished
	// SessionID names the session in logs and events without revealing
	// it: the start of the hash of its token.
	SessionID string
}

// PasswordLogin checks a user name and password. Every failure, whatever
// its reason, is ErrLoginFailed after the same work (a full password hash,
// against a dummy for unknown users); the reason goes to the security event.
// Failures are counted per account and per client address; a key in
// back-off or locked is refused without looking at the password. When the
// counts cannot be reached the answer is ErrUnavailable: an attempt that
// cannot be counted is not made.
func (s *Service) PasswordLogin(ctx context.Context, username, pw string, ip netip.Addr) (Result, error) {
	name, nameErr := NormalizeUsername(username)
	who := name
	if nameErr != nil {
		who = ""
	}
	if l, err := s.checkAddress(ctx, ip); err != nil {
		return Result{}, err
	} else if !l.Allowed() {
		_ = s.o.Hasher.VerifyUnknownUser(ctx, pw)
		return s.refusedEarly(ctx, who, ip, "address", l.Locked)
	}
	l, lockedNow, err := s.attempt(ctx, name)
	if err != nil {
		return Result{}, err
	}
	if !l.Allowed() {
		_ = s.o.Hasher.VerifyUnknownUser(ctx, pw)
		return s.refusedEarly(ctx, who, ip, "account", l.Locked)
	}
	fail := func(reason string) (Result, error) {
		if lockedNow {
			s.record(ctx, "account.locked", event.Denied, who, ip, "lockout.account", map[string]string{"reason": reason})
		}
		s.failAddress(ctx, who, ip, reason)
		s.record(ctx, "login.failed", event.Failure, who, ip, "password", map[string]string{"reason": reason})
		return Result{}, ErrLoginFailed
	}
	var u *store.User
	var pwCred *store.Credential
	var creds []*store.Credential
	if nameErr == nil {
		var err error
		u, err = s.o.Store.Users().GetByUsername(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Result{}, err
		}
		if u != nil {
			if creds, err = s.o.Store.Credentials().ListByUser(ctx, u.ID); err != nil {
				return Result{}, err
			}
			for _, c := range creds {
				if c.Kind == KindPassword {
					pwCred = c
				}
			}
		}
	}
	if u == nil || pwCred == nil {
		if err := s.o.Hasher.VerifyUnknownUser(ctx, pw); errors.Is(err, ErrBusy) {
			return Result{}, ErrBusy
		}
		if u == nil {
			return fail("unknown_user")
		}
		return fail("no_password")
	}
	ok, rehash, err := s.o.Hasher.Verify(ctx, pwCred.Hash, pw)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return fail("wrong_password")
	}
	if u.Status != StatusActive {
		return fail("disabled")
	}
	s.forgive(ctx, name)
	if rehash {
		if err := s.setPassword(ctx, u, pw); err != nil {
			s.o.Logger.Warn("rehashing a password with the current parameters", "user", u.Username, "err", err)
		}
	}
	methods := []string{MethodPassword}
	outcome := LoggedIn
	switch {
	case hasSecondFactor(creds):
		methods, outcome = append(methods, PendingMFA), NeedSecondFactor
	case s.MFARequired(u.Roles):
		methods, outcome = append(methods, PendingEnrollMFA), MustEnroll
	}
	tok, sess, err := s.o.Sessions.Create(ctx, u.ID, methods, s.o.Now())
	if err != nil {
		return Result{}, err
	}
	if outcome == LoggedIn {
		s.loggedIn(ctx, u, ip, methods)
	} else {
		s.record(ctx, "login.password_verified", event.Success, u.Username, ip, "password", map[string]string{"next": pendingOf(methods)})
	}
	return Result{Outcome: outcome, Token: tok, Session: sess, User: u}, nil
}

func (s *Service) refusedEarly(ctx context.Context, name string, ip netip.Addr, what string, locked bool) (Result, error) {
	reason := what + "_backoff"
	if locked {
		reason = what + "_locked"
	}
	s.record(ctx, "login.failed", event.Denied, name, ip, "lockout."+what, map[string]string{"reason": reason})
	return Result{}, ErrLoginFailed
}

func (s *Service) loggedIn(ctx context.Context, u *store.User, ip netip.Addr, methods []string) {
	u.LastLoginAt = s.o.Now()
	if err := s.o.Store.Users().Update(ctx, u); err != nil {
		s.o.Logger.Warn("recording the last login", "user", u.Username, "err", err)
	}
	s.record(ctx, "login.succeeded", event.Success, u.Username, ip, "", map[string]string{"methods": strings.Join(methods, ",")})
}

// VerifyTOTP finishes a login that waits for a second factor with a TOTP
// code. Each code is accepted once, across every instance sharing the store.
func (s *Service) VerifyTOTP(ctx context.Context, token, code string, ip netip.Addr) (Result, error) {
	return s.secondFactor(ctx, token, ip, MethodTOTP, func(u *store.User, creds []*store.Credential) bool {
		now := s.o.Now()
		for _, c := range creds {
			if c.Kind != KindTOTP {
				continue
			}
			step, ok := mfa.Verify(c.Secret, code, now, c.Counter)
			if !ok {
				continue
			}
			// AdvanceCounter is the replay guard: a concurrent login that
			// used the same code first makes it fail.
			return s.o.Store.Credentials().AdvanceCounter(ctx, c.ID, step, now) == nil
		}
		return false
	})
}

// VerifyRecoveryCode finishes a login that waits for a second factor with
// a recovery code, which is then used up.
func (s *Service) VerifyRecoveryCode(ctx context.Context, token, code string, ip netip.Addr) (Result, error) {
	return s.secondFactor(ctx, token, ip, MethodRecovery, func(u *store.User, creds []*store.Credential) bool {
		for _, c := range creds {
			if c.Kind == KindRecovery && mfa.VerifyRecoveryCode(s.pepper, code, c.Hash) {
				return s.o.Store.Credentials().Delete(ctx, c.ID) == nil
			}
		}
		return false
	})
}

func (s *Service) secondFactor(ctx context.Context, token string, ip netip.Addr, method string, check func(*store.User, []*store.Credential) bool) (Result, error) {
	sess, err := s.o.Sessions.Lookup(ctx, token)
	if err != nil {
		return Result{}, err
	}
	if !slices.Contains(sess.Methods, PendingMFA) {
		return Result{}, session.ErrNoSession
	}
	u, err := s.o.Store.Users().Get(ctx, sess.UserID)
	if err != nil {
		return Result{}, err
	}
	l, lockedNow, err := s.attempt(ctx, u.Username)
	if err != nil {
		return Result{}, err
	}
	if !l.Allowed() {
		return s.refusedEarly(ctx, u.Username, ip, "account", l.Locked)
	}
	creds, err := s.o.Store.Credentials().ListByUser(ctx, u.ID)
	if err != nil {
		return Result{}, err
	}
	if u.Status != StatusActive || !check(u, creds) {
		if lockedNow {
			s.record(ctx, "account.locked", event.Denied, u.Username, ip, "lockout.account", map[string]string{"reason": "second_factor"})
		}
		s.record(ctx, "login.failed", event.Failure, u.Username, ip, method, map[string]string{"reason": "wrong_code"})
		return Result{}, ErrCodeRejected
	}
	s.forgive(ctx, u.Username)
	// The first factor stays as the session recorded it (a password, or
	// a sign-in at an external provider); the second joins it.
	var methods []string
	for _, m := range sess.Methods {
		if !strings.HasPrefix(m, "pending:") {
			methods = append(methods, m)
		}
	}
	methods = append(methods, method)
	tok, ns, err := s.o.Sessions.Rotate(ctx, token, methods, s.o.Now())
	if err != nil {
		return Result{}, err
	}
	s.loggedIn(ctx, u, ip, methods)
	return Result{Outcome: LoggedIn, Token: tok, Session: ns, User: u}, nil
}

// Authenticate returns who a session token authenticates. A disabled user,
// like an unknown, expired or revoked session, is session.ErrNoSession.
// A login that waits for a second factor or an enrollment returns a
// Principal with Pending set: the caller lets it reach only those pages.
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	sess, err := s.o.Sessions.Lookup(ctx, token)
	if err != nil {
		return nil, err
	}
	u, err := s.cachedUser(ctx, sess.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, session.ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	if u.Status != StatusActive {
		_ = s.o.Sessions.Revoke(ctx, token)
		return nil, session.ErrNoSession
	}
	p := &Principal{UserID: u.ID, Username: u.Username, Roles: u.Roles, AuthTime: sess.AuthTime,
		SessionID: hex.EncodeToString(sess.IDHash[:min(8, len(sess.IDHash))])}
	for _, m := range sess.Methods {
		if strings.HasPrefix(m, "pending:") {
			p.Pending = m
			continue
		}
		p.Methods = append(p.Methods, m)
	}
	return p, nil
}

// Logout revokes the session.
func (s *Service) Logout(ctx context.Context, token string, ip netip.Addr) error {
	sess, err := s.o.Sessions.Lookup(ctx, token)
	if err != nil {
		return nil // nothing to end
	}
	if err := s.o.Sessions.Revoke(ctx, token); err != nil {
		return err
	}
	s.record(ctx, "session.revoked", event.Success, sess.UserID, ip, "logout", nil)
	return nil
}

func hasSecondFactor(creds []*store.Credential) bool {
	for _, c := range creds {
		if c.Kind == KindTOTP || c.Kind == KindWebAuthn {
			return true
		}
	}
	return false
}

func pendingOf(methods []string) string {
	for _, m := range methods {
		if strings.HasPrefix(m, "pending:") {
			return m
		}
	}
	return ""
}

// addrKey groups IPv6 clients by /64, since one host usually has a whole
// /64 to rotate through.
func addrKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return "none"
	}
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.Unmap().String()
}
