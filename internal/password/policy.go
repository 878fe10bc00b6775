package password

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Policy is what a new password must satisfy, after NIST SP 800-63B section
// 3.1.1.2. Lengths are in Unicode code points of the NFKC form.
type Policy struct {
	MinLength int
	MaxLength int
}

// Bounds on a Policy. NIST sets the floor of the minimum at 8 and of the
// maximum at 64; the ceiling keeps every accepted password within
// MaxPasswordBytes.
const (
	lowestMinLength  = 8
	lowestMaxLength  = 64
	highestMaxLength = MaxPasswordBytes / utf8.UTFMax
)

// usernameMinLen is the shortest user name looked for in a password: a
// shorter one would refuse too many good passwords by chance.
const usernameMinLen = 3

// DefaultPolicy returns a minimum of 12 and a maximum of 128 code points.
func DefaultPolicy() Policy { return Policy{MinLength: 12, MaxLength: 128} }

// Validate reports whether p is within NIST's bounds: a minimum of at least
// 8, a maximum of at least 64 (and at most 1024), the minimum not above the
// maximum.
func (p Policy) Validate() error {
	var errs []error
	if p.MinLength < lowestMinLength {
		errs = append(errs, fmt.Errorf("password minimum length %d: want at least %d", p.MinLength, lowestMinLength))
	}
	if p.MaxLength < lowestMaxLength || p.MaxLength > highestMaxLength {
		errs = append(errs, fmt.Errorf("password maximum length %d: want %d to %d", p.MaxLength, lowestMaxLength, highestMaxLength))
	}
	if p.MinLength > p.MaxLength {
		errs = append(errs, fmt.Errorf("password minimum length %d is above the maximum %d", p.MinLength, p.MaxLength))
	}
	return errors.Join(errs...)
}

// Reason says which rule a password broke.
type Reason string

// The reasons a PolicyError can give.
const (
	ReasonTooShort         Reason = "too_short"
	ReasonTooLong          Reason = "too_long"
	ReasonRepetitive       Reason = "repetitive"
	ReasonContainsUsername Reason = "contains_username"
	ReasonBreached         Reason = "breached"
)

// PolicyError is a password refused by a Policy. Its message is fit to show
// the user; it never includes the password.
type PolicyError struct {
	Reason Reason
	Limit  int // the length limit broken, for ReasonTooShort and ReasonTooLong
}

func (e *PolicyError) Error() string {
	switch e.Reason {
	case ReasonTooShort:
		return fmt.Sprintf("password must be at least %d characters long", e.Limit)
	case ReasonTooLong:
		return fmt.Sprintf("password must be at most %d characters long", e.Limit)
	case ReasonRepetitive:
		return "password must not be one character repeated"
	case ReasonContainsUsername:
		return "password must not contain the user name"
	case ReasonBreached:
		return "password is too common: it appears in lists of passwords exposed in data breaches"
	default:
		return "password is not allowed"
	}
}

// Check returns a *PolicyError when password breaks one of p's rules, in
// this order: length (too short, too long), a single repeated character,
// containing username (ignoring case, only for user names of at least 3
// characters), and appearing in the embedded breached-password list
// (ignoring case and surrounding white space). Any other error (p fails
// Validate, the list cannot be loaded) means the check could not be made:
// the caller must refuse the password.
//
// The first call loads the breached list. Check is safe for concurrent use.
func (p Policy) Check(password, username string) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("checking password: %w", err)
	}
	if len(password) > MaxPasswordBytes {
		return &PolicyError{Reason: ReasonTooLong, Limit: p.MaxLength}
	}
	pw := norm.NFKC.String(password)
	n := utf8.RuneCountInString(pw)
	if n < p.MinLength {
		return &PolicyError{Reason: ReasonTooShort, Limit: p.MinLength}
	}
	if n > p.MaxLength {
		return &PolicyError{Reason: ReasonTooLong, Limit: p.MaxLength}
	}
	lower := strings.ToLower(pw)
	if repetitive(lower) {
		return &PolicyError{Reason: ReasonRepetitive}
	}
	if u := strings.ToLower(norm.NFKC.String(strings.TrimSpace(username))); utf8.RuneCountInString(u) >= usernameMinLen && strings.Contains(lower, u) {
		return &PolicyError{Reason: ReasonContainsUsername}
	}
	list, err := breachedList()
	if err != nil {
		return fmt.Errorf("checking password: %w", err)
	}
	if list.contains(strings.TrimSpace(lower)) {
		return &PolicyError{Reason: ReasonBreached}
	}
	return nil
}

// repetitive reports whether s is one code point repeated.
func repetitive(s string) bool {
	first, size := utf8.DecodeRuneInString(s)
	for _, r := range s[size:] {
		if r != first {
			return false
		}
	}
	return true
}
