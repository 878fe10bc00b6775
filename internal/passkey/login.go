package passkey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moatgw/moat/internal/store"
)

// BeginLogin starts a login. It returns the options for
// navigator.credentials.get, as JSON {"publicKey":
// PublicKeyCredentialRequestOptionsJSON}, and the ceremony id to give
// FinishLogin.
//
// With a user, the login is a second factor for a user already identified
// (by a password): the options list the user's passkeys and prefer user
// verification. It refuses (ErrNoPasskeys) a user without one.
//
// With a nil user, the login is passwordless: the options list no
// credentials, the authenticator offers its discoverable credentials for
// this site, and the response names the user through its user handle. User
// verification is required, so the passkey stands for two factors (the
// device, and the PIN or biometric that unlocked it).
//
// Anyone can begin a passwordless login, so the caller should rate-limit
// this per client address: each one holds a ceremony for up to CeremonyTTL,
// and when the store is full it returns ErrTooManyCeremonies.
func (s *Service) BeginLogin(ctx context.Context, user *store.User) (options []byte, ceremonyID string, err error) {
	var (
		assertion *protocol.CredentialAssertion
		session   *webauthn.SessionData
		c         = &ceremony{Purpose: purposeLogin}
	)
	if user == nil {
		assertion, session, err = s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	} else {
		if err := checkUser(user); err != nil {
			return nil, "", err
		}
		var recs []record
		if recs, err = s.load(ctx, user.ID); err != nil {
			return nil, "", err
		}
		if len(recs) == 0 {
			return nil, "", refuse(ErrNoPasskeys, nil)
		}
		c.UserID = user.ID
		assertion, session, err = s.wa.BeginLogin(&waUser{u: user, creds: credentialsOf(recs)},
			webauthn.WithUserVerification(protocol.VerificationPreferred))
	}
	if err != nil {
		return nil, "", fmt.Errorf("beginning passkey login: %w", err)
	}
	if options, err = json.Marshal(assertion); err != nil {
		return nil, "", fmt.Errorf("encoding login options: %w", err)
	}
	c.Session = *session
	if ceremonyID, err = s.put(ctx, c); err != nil {
		return nil, "", err
	}
	return options, ceremonyID, nil
}

// FinishLogin verifies the browser's response to the login ceremony
// ceremonyID (the JSON of PublicKeyCredential.toJSON() after get). On
// success it returns the user, the store id of the passkey used, and
// whether the authenticator verified the user (PIN or biometric) rather
// than only testing their presence; it has stored the passkey's new sign
// count and last use. The ceremony is used up whatever the outcome.
//
// It refuses when the ceremony is unknown, used or expired; when the
// response is malformed; when the passkey is not registered, or not to the
// user the ceremony was begun for; when verification fails (challenge,
// origin, RP ID hash, user presence, user verification where required,
// signature); when the sign count did not increase past the stored one
// (ErrCloneWarning: the stored count is left as it was), also when a
// concurrent login on any instance stored it first; and when the account
// is not active. It fails closed: if the new sign count cannot be stored,
// the login fails.
func (s *Service) FinishLogin(ctx context.Context, ceremonyID string, response []byte) (userID, credID string, userVerified bool, err error) {
	c, err := s.take(ctx, ceremonyID, purposeLogin)
	if err != nil {
		return "", "", false, err
	}
	if len(response) > MaxResponseBytes {
		return "", "", false, refuse(ErrBadResponse, nil)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return "", "", false, refuse(ErrBadResponse, err)
	}

	userID = c.UserID
	if userID == "" {
		h := parsed.Response.UserHandle
		if len(h) == 0 || len(h) > maxUserHandle || !utf8.Valid(h) {
			return "", "", false, refuse(ErrUnknownPasskey, nil)
		}
		userID = string(h)
	}

	u, err := s.users.Get(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", false, refuse(ErrUnknownPasskey, nil)
	}
	if err != nil {
		return "", "", false, fmt.Errorf("loading user: %w", err)
	}
	recs, err := s.load(ctx, userID)
	if err != nil {
		return "", "", false, err
	}
	i := -1
	for j := range recs {
		if bytes.Equal(recs[j].cred.ID, parsed.RawID) {
			i = j
			break
		}
	}
	if i < 0 {
		return "", "", false, refuse(ErrUnknownPasskey, nil)
	}
	rec := recs[i]

	wu := &waUser{u: u, creds: credentialsOf(recs)}
	var cred *webauthn.Credential
	if c.UserID != "" {
		cred, err = s.wa.ValidateLogin(wu, c.Session, parsed)
	} else {
		// The library checks that the response's user handle is this
		// user's id before it checks the signature.
		_, cred, err = s.wa.ValidatePasskeyLogin(func(_, _ []byte) (webauthn.User, error) { return wu, nil }, c.Session, parsed)
	}
	if err != nil {
		s.log.Debug("passkey login refused", "user", userID, "passkey", rec.stored.ID, "error", describe(err))
		return "", "", false, refuse(ErrVerification, err)
	}
	if cred.Authenticator.CloneWarning {
		s.cloneWarning(userID, rec, parsed.Response.AuthenticatorData.Counter)
		return "", "", false, refuse(ErrCloneWarning, nil)
	}
	if !active(u) {
		return "", "", false, refuse(ErrUserInactive, nil)
	}

	// Store the new sign count. The store moves it only forwards, so of two
	// logins racing with one count (a cloned authenticator, or a replay to
	// two instances) only one gets in. An authenticator that keeps no
	// count (always zero, as synced passkeys) only has its use recorded.
	now := s.now().UTC()
	if n := cred.Authenticator.SignCount; n > 0 {
		err = s.creds.AdvanceCounter(ctx, rec.stored.ID, int64(n), now)
	} else {
		err = s.creds.Touch(ctx, rec.stored.ID, now)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		s.cloneWarning(userID, rec, parsed.Response.AuthenticatorData.Counter)
		return "", "", false, refuse(ErrCloneWarning, nil)
	case errors.Is(err, store.ErrNotFound): // removed meanwhile
		return "", "", false, refuse(ErrUnknownPasskey, nil)
	case err != nil:
		return "", "", false, fmt.Errorf("storing passkey sign count: %w", err)
	}
	// The flags (backup state; user verification once initialised) are
	// rewritten when they change, which is seldom.
	if cred.Flags.BackupState != rec.cred.Flags.BackupState || cred.Flags.UserVerified != rec.cred.Flags.UserVerified {
		secret, err := json.Marshal(cred)
		if err != nil {
			return "", "", false, fmt.Errorf("encoding passkey: %w", err)
		}
		if err := s.creds.UpdateSecret(ctx, rec.stored.ID, secret); err != nil {
			return "", "", false, fmt.Errorf("storing passkey flags: %w", err)
		}
	}
	return userID, rec.stored.ID, parsed.Response.AuthenticatorData.Flags.UserVerified(), nil
}

func (s *Service) cloneWarning(userID string, rec record, received uint32) {
	s.log.Warn("passkey sign count did not increase: possible cloned authenticator",
		"user", userID, "passkey", rec.stored.ID,
		"stored", rec.cred.Authenticator.SignCount, "received", received)
}

// describe renders a WebAuthn library error with the detail that says
// which check failed, bounded in length.
func describe(err error) string {
	var msg string
	if pe, ok := errors.AsType[*protocol.Error](err); ok {
		msg = pe.Details
		if pe.DevInfo != "" {
			msg += " (" + pe.DevInfo + ")"
		}
	} else {
		msg = err.Error()
	}
	const max = 300
	if len(msg) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}
