// Package passkey runs the server side of WebAuthn for Moat's local
// accounts: registering passkeys, and logging in with one either as a second
// factor (the user is known, the browser is offered that user's passkeys) or
// without a username (a discoverable credential names its user through the
// user handle). Options go to the browser as JSON and responses come back as
// JSON, in the shapes of the WebAuthn Level 3 toJSON() methods; the HTTP
// handlers and pages that carry them belong to the login portal.
//
// A passkey is stored as a store.Credential of kind "webauthn": ID is "pk_"
// and a hash of the WebAuthn credential id (so one credential id cannot be
// registered twice), Name the user's label for it, Secret the library's
// JSON credential record (credential id, COSE public key, flags,
// transports, AAGUID), which the store seals at rest, and Counter the
// signature count, which the store only moves forwards, so a cloned
// authenticator is caught across instances. The user handle given to
// authenticators is the bytes of the Moat user id, which is random and
// carries no personal data.
//
// Ceremony state (the challenge and what the finish step checks against)
// stays on the server, keyed by a random 128-bit ceremony id, for five
// minutes, and each ceremony finishes at most once. By default it lives in a
// bounded map in this process, so in a cluster a ceremony must finish on the
// instance that began it (sticky routing of the login portal), unless
// Options.Ceremonies names a shared CeremonyStore.
//
// Specification: https://www.w3.org/TR/webauthn-3/
package passkey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moatgw/moat/internal/store"
)

// Kind is the store.Credential kind of a passkey.
const Kind = "webauthn"

// Defaults for the zero values of Options.
const (
	DefaultCeremonyTTL   = 5 * time.Minute
	DefaultMaxCeremonies = 10000
	DefaultMaxPerUser    = 25
	DefaultDisplayName   = "Moat"
)

// Limits on what a client sends.
const (
	// MaxResponseBytes bounds the JSON of a registration or login response.
	// A response with an attestation certificate chain is a few kilobytes.
	MaxResponseBytes = 64 << 10
	// MaxNameRunes bounds a passkey's name.
	MaxNameRunes = 64
	// maxUserHandle is the longest user handle WebAuthn allows.
	maxUserHandle = 64
)

// CredentialStore is the part of the credential store passkeys use;
// store.Credentials satisfies it. Its methods must be safe for concurrent
// use.
type CredentialStore interface {
	// ListByUser returns all the user's credentials, of every kind.
	ListByUser(ctx context.Context, userID string) ([]*store.Credential, error)
	// Create stores c with the ID it carries; an ID already taken is
	// store.ErrConflict.
	Create(ctx context.Context, c *store.Credential) error
	// AdvanceCounter sets the counter of credential id to n and its last
	// use to at, only if n is greater than the stored counter; otherwise
	// store.ErrConflict. It holds the sign count across instances.
	AdvanceCounter(ctx context.Context, id string, n int64, at time.Time) error
	// UpdateSecret replaces the secret of credential id.
	UpdateSecret(ctx context.Context, id string, secret []byte) error
	// Touch sets the last use of credential id.
	Touch(ctx context.Context, id string, at time.Time) error
	// Delete removes credential id; none is store.ErrNotFound.
	Delete(ctx context.Context, id string) error
}

// CredentialRenamer is implemented by a credential store that can change a
// credential's name in place. Without it, Rename fails with
// ErrRenameUnsupported.
type CredentialRenamer interface {
	// Rename sets the name of credential id; none is store.ErrNotFound.
	Rename(ctx context.Context, id, name string) error
}

// UserStore looks users up by id. A WebAuthn user handle is the user id's
// bytes, so it also resolves discoverable logins.
type UserStore interface {
	// Get returns the user id, or store.ErrNotFound.
	Get(ctx context.Context, id string) (*store.User, error)
}

// Options configure a Service.
type Options struct {
	// RPID is the relying party id: the site's host name, such as
	// "login.example.com" or "localhost". Passkeys are bound to it; changing
	// it makes every registered passkey unusable.
	RPID string
	// RPOrigins are the origins the browser may report, such as
	// "https://login.example.com:8443".
	RPOrigins []string
	// RPDisplayName is the name authenticators show; DefaultDisplayName if
	// empty.
	RPDisplayName string

	Credentials CredentialStore
	Users       UserStore

	// Ceremonies holds ceremony state between begin and finish. Nil keeps
	// it in a bounded map in this process (MaxCeremonies).
	Ceremonies CeremonyStore
	// MaxCeremonies bounds the in-process ceremony map;
	// DefaultMaxCeremonies if zero.
	MaxCeremonies int
	// CeremonyTTL is how long a ceremony may take; DefaultCeremonyTTL if
	// zero.
	CeremonyTTL time.Duration
	// MaxPerUser bounds the passkeys one user may register;
	// DefaultMaxPerUser if zero.
	MaxPerUser int

	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Service registers passkeys and verifies logins with them. Its methods are
// safe for concurrent use.
type Service struct {
	wa         *webauthn.WebAuthn
	creds      CredentialStore
	users      UserStore
	ceremonies CeremonyStore
	ttl        time.Duration
	maxPerUser int
	now        func() time.Time
	log        *slog.Logger

	// locks serialise registrations of one user in this process, so a
	// user cannot exceed MaxPerUser by registering in parallel. Logins need
	// no lock: the store advances a sign count only forwards, atomically.
	seed  maphash.Seed
	locks [64]sync.Mutex
}

// New checks o and returns a Service.
func New(o Options) (*Service, error) {
	var errs []error
	if o.RPID == "" {
		errs = append(errs, errors.New("no relying party id"))
	}
	if len(o.RPOrigins) == 0 {
		errs = append(errs, errors.New("no relying party origins"))
	}
	if o.Credentials == nil {
		errs = append(errs, errors.New("no credential store"))
	}
	if o.Users == nil {
		errs = append(errs, errors.New("no user store"))
	}
	if o.MaxCeremonies < 0 || o.CeremonyTTL < 0 || o.MaxPerUser < 0 {
		errs = append(errs, errors.New("negative limit"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuring passkeys: %w", errors.Join(errs...))
	}
	s := &Service{
		creds:      o.Credentials,
		users:      o.Users,
		ceremonies: o.Ceremonies,
		ttl:        o.CeremonyTTL,
		maxPerUser: o.MaxPerUser,
		now:        o.Now,
		log:        o.Logger,
		seed:       maphash.MakeSeed(),
	}
	if s.ttl == 0 {
		s.ttl = DefaultCeremonyTTL
	}
	if s.maxPerUser == 0 {
		s.maxPerUser = DefaultMaxPerUser
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "passkey")
	if s.ceremonies == nil {
		max := o.MaxCeremonies
		if max == 0 {
			max = DefaultMaxCeremonies
		}
		s.ceremonies = newMemoryCeremonies(max, s.now)
	}
	name := o.RPDisplayName
	if name == "" {
		name = DefaultDisplayName
	}
	timeout := webauthn.TimeoutConfig{Timeout: s.ttl, TimeoutUVD: s.ttl}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  o.RPID,
		RPDisplayName:         name,
		RPOrigins:             o.RPOrigins,
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationPreferred,
		},
		// The timeout is sent to the browser; expiry is enforced here with
		// the injected clock (see take), not by the library's wall clock.
		Timeouts: webauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
		// No decision is based on a client extension output other than
		// credProps, which is requested; outputs a browser or password
		// manager adds unasked are ignored rather than failing the login.
		ExtensionsUnsolicitedOutputPolicy: protocol.UnsolicitedOutputPolicyIgnore,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring passkeys: %w", err)
	}
	s.wa = wa
	return s, nil
}

// lockUser takes the in-process lock of userID's passkeys and returns its
// release.
func (s *Service) lockUser(userID string) func() {
	m := &s.locks[maphash.String(s.seed, userID)%uint64(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// waUser is a Moat user as the WebAuthn library sees it.
type waUser struct {
	u     *store.User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte   { return []byte(w.u.ID) }
func (w *waUser) WebAuthnName() string { return w.u.Username }
func (w *waUser) WebAuthnDisplayName() string {
	if w.u.DisplayName != "" {
		return w.u.DisplayName
	}
	return w.u.Username
}
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

// record is one stored passkey with its decoded credential.
type record struct {
	stored *store.Credential
	cred   webauthn.Credential
}

// load returns userID's passkeys, oldest first. The sign count of each
// comes from the store's counter, which is authoritative: the count inside
// the record is only as of its last rewrite. A record that does not decode
// is an error: it is never skipped silently.
func (s *Service) load(ctx context.Context, userID string) ([]record, error) {
	all, err := s.creds.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing passkeys: %w", err)
	}
	var out []record
	for _, c := range all {
		if c.Kind != Kind {
			continue
		}
		var wc webauthn.Credential
		if err := json.Unmarshal(c.Secret, &wc); err != nil {
			return nil, fmt.Errorf("decoding passkey %s: %w", c.ID, err)
		}
		if c.Counter < 0 || c.Counter > math.MaxUint32 {
			return nil, fmt.Errorf("passkey %s: sign count %d out of range", c.ID, c.Counter)
		}
		wc.Authenticator.SignCount = uint32(c.Counter)
		out = append(out, record{stored: c, cred: wc})
	}
	return out, nil
}

func credentialsOf(recs []record) []webauthn.Credential {
	out := make([]webauthn.Credential, len(recs))
	for i, r := range recs {
		out[i] = r.cred
	}
	return out
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// passkeyID is the store id of the credential with WebAuthn credential id
// rawID: "pk_" and 160 bits of its SHA-256. Deriving it makes the store's
// primary key refuse a credential id registered twice, to any user.
func passkeyID(rawID []byte) string {
	sum := sha256.Sum256(rawID)
	return "pk_" + idEncoding.EncodeToString(sum[:20])
}

// newCeremonyID returns 128 random bits, base64url without padding.
func newCeremonyID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cleanName checks a user-chosen passkey name: trimmed, at most
// MaxNameRunes, no control characters (bidirectional ones included); empty
// becomes "Passkey".
func cleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "Passkey", nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameRunes {
		return "", refuse(ErrBadName, nil)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || isBidiControl(r) {
			return "", refuse(ErrBadName, nil)
		}
	}
	return name, nil
}

// isBidiControl reports the embedding, override and isolate controls, which
// could make a name display as another.
func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// active reports whether u may log in.
func active(u *store.User) bool { return u.Status == "" || u.Status == "active" }
