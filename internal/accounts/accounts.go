// Package accounts is the logic of Moat's local accounts: users and their
// enrollment, password logins with brute-force protection and the same
// answer for every kind of failure, second factors (TOTP, recovery codes)
// and the sessions a login produces. The login portal and the CLI call it;
// it never writes HTTP.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/ratelimit"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// Credential kinds.
const (
	KindPassword    = "password"
	KindTOTP        = "totp"
	KindTOTPPending = "totp-pending" // a secret shown but not yet confirmed
	KindRecovery    = "recovery"
	KindWebAuthn    = "webauthn"
	KindEnroll      = "enroll" // a one-time enrollment token's hash
)

// Session methods. A session whose methods include a pending marker is not
// a login yet: it may only finish the second factor or the enrollment.
const (
	MethodPassword   = "pwd"
	MethodTOTP       = "otp"
	MethodRecovery   = "recovery"
	MethodWebAuthn   = "webauthn"
	PendingMFA       = "pending:mfa"
	PendingEnrollMFA = "pending:enroll"
)

// User statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Errors.
var (
	// ErrLoginFailed is the one answer to a failed login, whatever the
	// reason (no such user, wrong password, disabled, locked): the reason
	// goes to the security event, never to the client.
	ErrLoginFailed = errors.New("the user name or password is not correct")
	// ErrBusy means the password hasher's budget is exhausted: answer 503.
	ErrBusy = password.ErrBusy
	// ErrInvalidToken is an enrollment token that is unknown, used or expired.
	ErrInvalidToken = errors.New("this link is not valid: it may have been used already or expired")
	// ErrCodeRejected is a second-factor code that did not verify.
	ErrCodeRejected = errors.New("the code is not correct")
	// ErrUnavailable means the failure counts could not be reached (the
	// shared store is down and fails closed): no attempt is allowed
	// that could not be counted. Answer 503.
	ErrUnavailable = errors.New("sign-in is unavailable: failed attempts cannot be counted")
)

// DefaultAccountPolicy locks an account for 15 minutes after 5 failed
// attempts in 15 minutes, with a back-off of 1s, 2s, 4s, 8s before that.
func DefaultAccountPolicy() ratelimit.FailurePolicy {
	return ratelimit.FailurePolicy{Name: "login-account", MaxFailures: 5, Window: 15 * time.Minute, LockFor: 15 * time.Minute, BaseDelay: time.Second}
}

// DefaultAddressPolicy is laxer, since many people may share an address,
// but still stops one address from spraying passwords across accounts:
// 20 failures in 15 minutes lock it for 15 minutes.
func DefaultAddressPolicy() ratelimit.FailurePolicy {
	return ratelimit.FailurePolicy{Name: "login-address", MaxFailures: 20, Window: 15 * time.Minute, LockFor: 15 * time.Minute}
}

// Options configure a Service.
type Options struct {
	Store    *store.Store // with the key ring set as its cipher
	Hasher   *password.Hasher
	Policy   password.Policy
	Sessions *session.Manager
	Passkeys *passkey.Service // nil turns passkeys off
	// Failures counts failed sign-in attempts, per account under
	// AccountPolicy and per client address under AddressPolicy (zero
	// policies mean DefaultAccountPolicy and DefaultAddressPolicy). With
	// several instances it must be shared (Redis), so that guesses are
	// counted wherever they land; nil means one in memory.
	Failures      ratelimit.FailureStore
	AccountPolicy ratelimit.FailurePolicy
	AddressPolicy ratelimit.FailurePolicy
	MFARoles      []string      // roles that must enroll a second factor; default [admin]
	Issuer        string        // shown in authenticator apps; default "Moat"
	EnrollTTL     time.Duration // lifetime of enrollment links; default 72h
	Events        event.Recorder
	Logger        *slog.Logger
	Now           func() time.Time
}

// Service implements accounts. It is safe for concurrent use.
type Service struct {
	o      Options
	pepper []byte // for recovery code hashes, kept sealed in the store
	users  userCache
	locks  userLocks
}

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// New builds a Service, creating the recovery-code pepper in the store on
// first use.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Store == nil || o.Hasher == nil || o.Sessions == nil {
		return nil, errors.New("accounts: store, hasher and sessions are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Failures == nil {
		o.Failures = ratelimit.NewMemoryFailures(100_000, o.Now)
	}
	if o.AccountPolicy == (ratelimit.FailurePolicy{}) {
		o.AccountPolicy = DefaultAccountPolicy()
	}
	if o.AddressPolicy == (ratelimit.FailurePolicy{}) {
		o.AddressPolicy = DefaultAddressPolicy()
	}
	if err := errors.Join(o.AccountPolicy.Validate(), o.AddressPolicy.Validate()); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if err := o.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if o.MFARoles == nil {
		o.MFARoles = []string{"admin"}
	}
	if o.Issuer == "" {
		o.Issuer = "Moat"
	}
	if o.EnrollTTL <= 0 {
		o.EnrollTTL = 72 * time.Hour
	}
	if o.Events == nil {
		o.Events = event.Discard{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o}
	pepper, err := s.loadPepper(ctx)
	if err != nil {
		return nil, err
	}
	s.pepper = pepper
	return s, nil
}

const pepperName = "accounts.recovery-pepper"

func (s *Service) loadPepper(ctx context.Context) ([]byte, error) {
	p, err := s.o.Store.Secrets().GetOrCreate(ctx, pepperName, 32)
	if err != nil {
		return nil, fmt.Errorf("accounts: the recovery pepper: %w", err)
	}
	return p, nil
}

// NormalizeUsername lower-cases and checks a user name.
func NormalizeUsername(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if !usernameRE.MatchString(n) {
		return "", errors.New("a user name is 1 to 64 characters: letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
	}
	return n, nil
}

// MFARequired reports whether a user with these roles must have a second factor.
func (s *Service) MFARequired(roles []string) bool {
	for _, r := range roles {
		if slices.Contains(s.o.MFARoles, r) {
			return true
		}
	}
	return false
}

func (s *Service) record(ctx context.Context, kind string, outcome event.Outcome, who string, ip netip.Addr, rule string, details map[string]string) {
	e := event.Event{Time: s.o.Now(), Kind: kind, Outcome: outcome, Principal: who, Rule: rule, Details: details}
	if ip.IsValid() {
		e.ClientIP = ip.String()
	}
	s.o.Events.Record(ctx, e)
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func itoa(n int) string { return strconv.Itoa(n) }
