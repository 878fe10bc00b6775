package passkey

import "errors"

// ErrRefused is matched (errors.Is) by every error that refuses what the
// client sent or asked: the caller answers it with a 4xx and records a
// denied event. Each refusal also matches one of the reasons below. An error
// that matches none of them means the check could not be made (the store or
// ceremony store failed): the caller answers 503 and lets nobody in.
var ErrRefused = errors.New("passkey refused")

// Reasons for a refusal.
var (
	ErrNoCeremony       = errors.New("no such ceremony: unknown, already finished or expired")
	ErrCeremonyExpired  = errors.New("ceremony expired")
	ErrCeremonyMismatch = errors.New("ceremony was begun for another user or purpose")
	ErrBadResponse      = errors.New("malformed authenticator response")
	ErrVerification     = errors.New("authenticator response failed verification")
	ErrCloneWarning     = errors.New("sign count did not increase: the authenticator may be cloned")
	ErrUnknownPasskey   = errors.New("passkey not registered")
	ErrUserInactive     = errors.New("account is not active")
	ErrAlreadyExists    = errors.New("passkey already registered")
	ErrTooManyPasskeys  = errors.New("too many passkeys")
	ErrNoPasskeys       = errors.New("user has no passkeys")
	ErrBadName          = errors.New("passkey name must be at most 64 characters with no control characters")
	ErrNotFound         = errors.New("no such passkey")
)

// ErrTooManyCeremonies is returned by the begin methods when the ceremony
// store is full. It is not a refusal of the client: the caller answers 503
// with Retry-After, and should rate-limit who may begin ceremonies.
var ErrTooManyCeremonies = errors.New("too many ceremonies in progress")

// ErrRenameUnsupported is returned by Rename when the credential store does
// not implement CredentialRenamer.
var ErrRenameUnsupported = errors.New("the credential store cannot rename passkeys")

// reasons map refusal reasons to the short names Reason returns.
var reasons = []struct {
	err  error
	name string
}{
	{ErrNoCeremony, "ceremony_unknown"},
	{ErrCeremonyExpired, "ceremony_expired"},
	{ErrCeremonyMismatch, "ceremony_mismatch"},
	{ErrBadResponse, "bad_response"},
	{ErrVerification, "verification_failed"},
	{ErrCloneWarning, "clone_warning"},
	{ErrUnknownPasskey, "unknown_passkey"},
	{ErrUserInactive, "user_inactive"},
	{ErrAlreadyExists, "already_registered"},
	{ErrTooManyPasskeys, "too_many_passkeys"},
	{ErrNoPasskeys, "no_passkeys"},
	{ErrBadName, "bad_name"},
	{ErrNotFound, "not_found"},
	{ErrTooManyCeremonies, "too_many_ceremonies"},
}

// Reason names why err refused, for the Rule of a security event:
// "clone_warning", "verification_failed" and so on. It is "" for nil and
// "error" for an error that is not a refusal.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "error"
}

// refusal is a refused request: it matches ErrRefused, its reason and,
// when there is one, the underlying cause (such as the WebAuthn library's
// *protocol.Error, whose details say which check failed).
type refusal struct {
	reason, cause error
}

func refuse(reason, cause error) error { return &refusal{reason: reason, cause: cause} }

func (e *refusal) Error() string {
	if e.cause == nil {
		return e.reason.Error()
	}
	return e.reason.Error() + ": " + describe(e.cause)
}

func (e *refusal) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrRefused, e.reason}
	}
	return []error{ErrRefused, e.reason, e.cause}
}
