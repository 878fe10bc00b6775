package passkey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moatgw/moat/internal/store"
)

// BeginRegistration starts registering a passkey for user, who must be
// logged in. It returns the options for navigator.credentials.create, as
// JSON {"publicKey": PublicKeyCredentialCreationOptionsJSON}, and the
// ceremony id to give FinishRegistration. The options ask for a
// discoverable credential (resident key required), user verification
// preferred and no attestation, and exclude the user's passkeys, so an
// authenticator holding one of them declines to make another.
//
// It refuses (ErrTooManyPasskeys) when the user already has MaxPerUser
// passkeys, and returns ErrTooManyCeremonies when the ceremony store is full.
func (s *Service) BeginRegistration(ctx context.Context, user *store.User) (options []byte, ceremonyID string, err error) {
	if err := checkUser(user); err != nil {
		return nil, "", err
	}
	recs, err := s.load(ctx, user.ID)
	if err != nil {
		return nil, "", err
	}
	if len(recs) >= s.maxPerUser {
		return nil, "", refuse(ErrTooManyPasskeys, nil)
	}
	wu := &waUser{u: user, creds: credentialsOf(recs)}
	creation, session, err := s.wa.BeginRegistration(wu,
		webauthn.WithExclusions(webauthn.Credentials(wu.creds).CredentialDescriptors()),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
	)
	if err != nil {
		return nil, "", fmt.Errorf("beginning passkey registration: %w", err)
	}
	if options, err = json.Marshal(creation); err != nil {
		return nil, "", fmt.Errorf("encoding registration options: %w", err)
	}
	if ceremonyID, err = s.put(ctx, &ceremony{Purpose: purposeRegister, UserID: user.ID, Session: *session}); err != nil {
		return nil, "", err
	}
	return options, ceremonyID, nil
}

// FinishRegistration verifies the browser's response to the ceremony
// ceremonyID (the JSON of PublicKeyCredential.toJSON() after create) and
// stores the new passkey for user under name. The ceremony must have been
// begun for the same user; it is used up by this call whatever the outcome,
// except when name is refused (ErrBadName), which is checked first.
//
// It refuses when the ceremony is unknown, used, expired or another user's,
// when the response is malformed or fails verification (challenge, origin,
// RP ID hash, user presence, attestation), when the credential is already
// registered (to anyone), and when the user has MaxPerUser passkeys.
func (s *Service) FinishRegistration(ctx context.Context, ceremonyID string, user *store.User, name string, response []byte) (*store.Credential, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	name, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	c, err := s.take(ctx, ceremonyID, purposeRegister)
	if err != nil {
		return nil, err
	}
	if c.UserID != user.ID {
		return nil, refuse(ErrCeremonyMismatch, nil)
	}
	if len(response) > MaxResponseBytes {
		return nil, refuse(ErrBadResponse, nil)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, refuse(ErrBadResponse, err)
	}

	defer s.lockUser(user.ID)()
	recs, err := s.load(ctx, user.ID)
	if err != nil {
		return nil, err
	}
	if len(recs) >= s.maxPerUser {
		return nil, refuse(ErrTooManyPasskeys, nil)
	}
	cred, err := s.wa.CreateCredential(&waUser{u: user, creds: credentialsOf(recs)}, c.Session, parsed)
	if err != nil {
		s.log.Debug("passkey registration refused", "user", user.ID, "error", describe(err))
		return nil, refuse(ErrVerification, err)
	}
	secret, err := json.Marshal(cred)
	if err != nil {
		return nil, fmt.Errorf("encoding passkey: %w", err)
	}
	sc := &store.Credential{
		ID:        passkeyID(cred.ID),
		UserID:    user.ID,
		Kind:      Kind,
		Name:      name,
		Secret:    secret,
		Counter:   int64(cred.Authenticator.SignCount),
		CreatedAt: s.now().UTC(),
	}
	if err := s.creds.Create(ctx, sc); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, refuse(ErrAlreadyExists, nil)
		}
		return nil, fmt.Errorf("storing passkey: %w", err)
	}
	s.log.Info("passkey registered", "user", user.ID, "passkey", sc.ID)
	return sc, nil
}

// checkUser checks that user can be given to authenticators: its id is the
// user handle, at most 64 bytes.
func checkUser(user *store.User) error {
	if user == nil || user.ID == "" {
		return errors.New("passkey: no user")
	}
	if len(user.ID) > maxUserHandle {
		return fmt.Errorf("passkey: user id of %d bytes is longer than a user handle may be", len(user.ID))
	}
	return nil
}
