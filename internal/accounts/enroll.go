package accounts

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/store"
)

// RecoveryCodeCount is how many recovery codes a user gets.
const RecoveryCodeCount = 10

// TOTPEnrollment is what the enrollment page shows: the QR code and the
// key for manual entry. The secret is kept, sealed, until confirmed.
type TOTPEnrollment struct {
	URI    string
	QRSVG  string
	Manual string // the key grouped in fours
}

// BeginTOTP makes a new TOTP secret for the user and keeps it pending
// until ConfirmTOTP sees a code made from it.
func (s *Service) BeginTOTP(ctx context.Context, p *Principal) (*TOTPEnrollment, error) {
	secret, err := mfa.NewTOTPSecret()
	if err != nil {
		return nil, err
	}
	if err := s.deleteKinds(ctx, p.UserID, KindTOTPPending); err != nil {
		return nil, err
	}
	if err := s.o.Store.Credentials().Create(ctx, &store.Credential{UserID: p.UserID, Kind: KindTOTPPending, Secret: secret, CreatedAt: s.o.Now()}); err != nil {
		return nil, err
	}
	uri := mfa.KeyURI(s.o.Issuer, p.Username, secret)
	svg, err := mfa.QRCodeSVG(uri)
	if err != nil {
		return nil, err
	}
	return &TOTPEnrollment{URI: uri, QRSVG: svg, Manual: mfa.FormatSecret(secret)}, nil
}

// ConfirmTOTP turns the pending secret into the user's TOTP factor when
// code was made from it. The first second factor also brings recovery
// codes, returned once. The session is replaced by a new one that counts
// the second factor (and is no longer pending).
func (s *Service) ConfirmTOTP(ctx context.Context, token string, p *Principal, name, code string, ip netip.Addr) (newToken string, recoveryCodes []string, err error) {
	creds, err := s.o.Store.Credentials().ListByUser(ctx, p.UserID)
	if err != nil {
		return "", nil, err
	}
	var pending *store.Credential
	for _, c := range creds {
		if c.Kind == KindTOTPPending {
			pending = c
		}
	}
	if pending == nil {
		return "", nil, errors.New("start the enrollment again: no authenticator key is waiting to be confirmed")
	}
	step, ok := mfa.Verify(pending.Secret, code, s.o.Now(), 0)
	if !ok {
		s.record(ctx, "mfa.enroll_failed", event.Failure, p.Username, ip, "totp", nil)
		return "", nil, ErrCodeRejected
	}
	if name == "" {
		name = "authenticator app"
	}
	totp := &store.Credential{UserID: p.UserID, Kind: KindTOTP, Name: name, Secret: pending.Secret, Counter: step, CreatedAt: s.o.Now()}
	if err := s.o.Store.Credentials().Create(ctx, totp); err != nil {
		return "", nil, err
	}
	if err := s.o.Store.Credentials().Delete(ctx, pending.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", nil, err
	}
	if !slices.ContainsFunc(creds, func(c *store.Credential) bool { return c.Kind == KindRecovery }) {
		if recoveryCodes, err = s.newRecoveryCodes(ctx, p.UserID); err != nil {
			return "", nil, err
		}
	}
	s.record(ctx, "mfa.enrolled", event.Success, p.Username, ip, "totp", map[string]string{"name": name})
	// A forced enrollment finishes the login begun with the password; a
	// signed-in user adding the factor keeps the methods they used and the
	// time they used them.
	methods, authTime := []string{MethodPassword, MethodTOTP}, s.o.Now()
	if p.Pending == "" {
		methods, authTime = append(slices.Clone(p.Methods), MethodTOTP), p.AuthTime
		if slices.Contains(p.Methods, MethodTOTP) {
			methods = p.Methods
		}
	}
	newToken, _, err = s.o.Sessions.Rotate(ctx, token, methods, authTime)
	return newToken, recoveryCodes, err
}

// RegenerateRecoveryCodes replaces the user's recovery codes.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p *Principal, ip netip.Addr) ([]string, error) {
	if err := s.deleteKinds(ctx, p.UserID, KindRecovery); err != nil {
		return nil, err
	}
	codes, err := s.newRecoveryCodes(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	s.record(ctx, "mfa.recovery_codes_regenerated", event.Success, p.Username, ip, "recovery", nil)
	return codes, nil
}

func (s *Service) newRecoveryCodes(ctx context.Context, userID string) ([]string, error) {
	codes, err := mfa.NewRecoveryCodes(RecoveryCodeCount)
	if err != nil {
		return nil, err
	}
	for _, code := range codes {
		h, err := mfa.HashRecoveryCode(s.pepper, code)
		if err != nil {
			return nil, err
		}
		if err := s.o.Store.Credentials().Create(ctx, &store.Credential{UserID: userID, Kind: KindRecovery, Hash: h, CreatedAt: s.o.Now()}); err != nil {
			return nil, err
		}
	}
	return codes, nil
}
