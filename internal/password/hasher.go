package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/text/unicode/norm"
)

// MaxPasswordBytes is the longest password, in bytes before normalisation,
// that a Hasher hashes. It bounds the work one request can cause; Policy
// refuses longer passwords too, so every password it accepts can be hashed.
const MaxPasswordBytes = 4096

// ErrBusy is returned when a hash could not start within the Hasher's
// maximum wait because the memory budget was in use. Callers answer 503.
var ErrBusy = errors.New("password hashing is at capacity")

// ErrPasswordTooLong is returned by Hash for a password longer than
// MaxPasswordBytes.
var ErrPasswordTooLong = errors.New("password is too long")

// deriveFunc is the Argon2id key derivation, replaceable in tests.
type deriveFunc func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

// A Hasher hashes and verifies passwords with fixed Argon2id parameters,
// running at most as many computations at once as its memory budget allows.
// It is safe for concurrent use.
type Hasher struct {
	params  Params
	budget  int64
	maxWait time.Duration
	sem     *semaphore.Weighted
	dummy   string // a hash of a random password, for unknown users
	derive  deriveFunc
}

// NewHasher returns a Hasher that makes new hashes with p and admits
// computations while their memory adds up to at most budgetBytes. A
// computation that cannot start within maxWait fails with ErrBusy (zero
// means: start now or fail). p must pass Validate and the budget must fit at
// least one hash with p.
//
// NewHasher computes the dummy hash for VerifyUnknownUser, so it takes as
// long as one hash.
func NewHasher(p Params, budgetBytes int64, maxWait time.Duration) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	if need := p.memoryBytes(); budgetBytes < need {
		return nil, fmt.Errorf("password hasher: budget of %d bytes is less than the %d bytes one hash needs", budgetBytes, need)
	}
	if maxWait < 0 {
		return nil, fmt.Errorf("password hasher: negative maximum wait %v", maxWait)
	}
	h := &Hasher{
		params:  p,
		budget:  budgetBytes,
		maxWait: maxWait,
		sem:     semaphore.NewWeighted(budgetBytes),
		derive:  argon2.IDKey,
	}
	random := make([]byte, 32)
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	h.dummy = encodePHC(p, salt, h.derive(random, salt, p.Time, p.Memory, p.Threads, p.KeyLen))
	return h, nil
}

// Params returns the parameters the Hasher makes new hashes with.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the PHC string of a new hash of the NFKC form of password,
// with a fresh random salt. It fails with ErrBusy when the budget stays full
// for the maximum wait, with the context's error when ctx ends first, and
// with ErrPasswordTooLong for a password over MaxPasswordBytes.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	key, err := h.compute(ctx, h.params, password, salt)
	if err != nil {
		return "", err
	}
	return encodePHC(h.params, salt, key), nil
}

// Verify reports whether password matches the stored PHC string, comparing
// in constant time. needsRehash is true when the password matches but the
// hash was made with other parameters than the Hasher's: the caller should
// then store a new Hash of the password.
//
// A wrong password is a result (ok false, err nil), not an error, and so is a
// password over MaxPasswordBytes, which no stored hash can match. err is
// ErrBusy, the context's error, a wrapped ErrInvalidHash for a malformed or
// out-of-range stored hash, or an error for a stored hash that needs more
// memory than the whole budget: in each case the check could not be made and
// the caller must refuse the login.
func (h *Hasher) Verify(ctx context.Context, phc, password string) (ok, needsRehash bool, err error) {
	if len(password) > MaxPasswordBytes {
		return false, false, nil
	}
	stored, err := parsePHC(phc)
	if err != nil {
		return false, false, err
	}
	key, err := h.compute(ctx, stored.params, password, stored.salt)
	if err != nil {
		return false, false, err
	}
	ok = subtle.ConstantTimeCompare(key, stored.key) == 1
	return ok, ok && stored.params != h.params, nil
}

// VerifyUnknownUser does the work of Verify against a dummy hash made with
// the Hasher's parameters, and discards the result. Call it when the account
// does not exist, so that the answer takes as long as a wrong password and
// can be the same. It fails as Verify does (ErrBusy, the context's error).
func (h *Hasher) VerifyUnknownUser(ctx context.Context, password string) error {
	_, _, err := h.Verify(ctx, h.dummy, password)
	return err
}

// compute derives the Argon2id key of the NFKC form of password with p and
// salt, holding p's memory in the budget while it runs.
func (h *Hasher) compute(ctx context.Context, p Params, password string, salt []byte) ([]byte, error) {
	n := p.memoryBytes()
	if err := h.acquire(ctx, n); err != nil {
		return nil, err
	}
	defer h.sem.Release(n)
	return h.derive([]byte(norm.NFKC.String(password)), salt, p.Time, p.Memory, p.Threads, p.KeyLen), nil
}

// acquire takes n bytes of the budget, waiting at most maxWait.
func (h *Hasher) acquire(ctx context.Context, n int64) error {
	if n > h.budget {
		return fmt.Errorf("password hash needs %d bytes of memory, more than the hashing budget of %d", n, h.budget)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password hashing: %w", err)
	}
	if h.sem.TryAcquire(n) {
		return nil
	}
	if h.maxWait == 0 {
		return ErrBusy
	}
	wctx, cancel := context.WithTimeout(ctx, h.maxWait)
	defer cancel()
	if err := h.sem.Acquire(wctx, n); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("password hashing: %w", ctxErr)
		}
		return ErrBusy
	}
	return nil
}
