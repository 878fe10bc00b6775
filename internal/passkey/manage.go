package passkey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// Passkey describes one registered passkey, for a user's list of them. It
// holds no key material.
type Passkey struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"createdAt"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	// AAGUID names the authenticator model, in UUID form; all zeros when
	// the authenticator does not say (as with attestation "none", usually).
	AAGUID string `json:"aaguid"`
	// Transports are how the browser can reach the authenticator
	// ("internal", "hybrid", "usb", "nfc", "ble").
	Transports []string `json:"transports,omitempty"`
	// BackupEligible is true for a passkey that may be synced between
	// devices; BackedUp says whether it is.
	BackupEligible bool `json:"backupEligible"`
	BackedUp       bool `json:"backedUp"`
}

// List returns userID's passkeys, oldest first.
func (s *Service) List(ctx context.Context, userID string) ([]Passkey, error) {
	recs, err := s.load(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Passkey, len(recs))
	for i, r := range recs {
		p := Passkey{
			ID:             r.stored.ID,
			Name:           r.stored.Name,
			CreatedAt:      r.stored.CreatedAt,
			LastUsedAt:     r.stored.LastUsedAt,
			AAGUID:         formatAAGUID(r.cred.Authenticator.AAGUID),
			BackupEligible: r.cred.Flags.BackupEligible,
			BackedUp:       r.cred.Flags.BackupState,
		}
		for _, t := range r.cred.Transport {
			p.Transports = append(p.Transports, string(t))
		}
		out[i] = p
	}
	return out, nil
}

// Rename sets the name of userID's passkey id. It refuses a bad name
// (ErrBadName) and a passkey that is not the user's (ErrNotFound), and
// fails with ErrRenameUnsupported if the credential store cannot rename.
func (s *Service) Rename(ctx context.Context, userID, id, name string) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	r, ok := s.creds.(CredentialRenamer)
	if !ok {
		return ErrRenameUnsupported
	}
	if _, err := s.find(ctx, userID, id); err != nil {
		return err
	}
	if err := r.Rename(ctx, id, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return refuse(ErrNotFound, nil)
		}
		return fmt.Errorf("renaming passkey: %w", err)
	}
	return nil
}

// Remove deletes userID's passkey id. It refuses a passkey that is not the
// user's (ErrNotFound). Whether a user may remove their last factor is the
// caller's policy.
func (s *Service) Remove(ctx context.Context, userID, id string) error {
	if _, err := s.find(ctx, userID, id); err != nil {
		return err
	}
	if err := s.creds.Delete(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return refuse(ErrNotFound, nil)
		}
		return fmt.Errorf("removing passkey: %w", err)
	}
	s.log.Info("passkey removed", "user", userID, "passkey", id)
	return nil
}

// find returns userID's passkey id as stored, without decoding it, so a
// record that no longer decodes can still be renamed or removed.
func (s *Service) find(ctx context.Context, userID, id string) (*store.Credential, error) {
	all, err := s.creds.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing passkeys: %w", err)
	}
	for _, c := range all {
		if c.Kind == Kind && c.ID == id {
			return c, nil
		}
	}
	return nil, refuse(ErrNotFound, nil)
}

// formatAAGUID renders a 16-byte AAGUID in UUID form.
func formatAAGUID(b []byte) string {
	if len(b) != 16 {
		b = make([]byte, 16)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
