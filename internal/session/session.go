// Package session keeps Moat's login sessions: random 256-bit session
// tokens handed to browsers in a __Host- cookie, of which only the SHA-256
// is ever stored, checked on every request against idle and absolute
// timeouts and revocation. Sessions live in the durable store (SQLite or
// PostgreSQL) on one machine, or in Redis when several Moat instances share
// them; a small in-process cache keeps the per-request check to a few
// microseconds, and Redis pub/sub carries revocations to every instance.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// ErrNoSession is what Lookup and Rotate return for a token that names no
// usable session: malformed, unknown, idle or absolutely expired, or
// revoked. It is a result, not a failure: any other error means the check
// could not be made, and the caller must refuse the request (fail closed).
var ErrNoSession = errors.New("no valid session")

// Token sizes: 32 random bytes, 43 characters of unpadded base64url.
const (
	tokenBytes = 32
	// TokenLen is the length of a session token as the browser holds it.
	TokenLen = 43
)

// tokenEncoding is base64url without padding, strict so that exactly one
// spelling of each token decodes (no non-zero trailing bits, no newlines).
var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken returns a fresh token and the hash it is stored under.
func newToken() (string, [sha256.Size]byte, error) {
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", [sha256.Size]byte{}, fmt.Errorf("generating session id: %w", err)
	}
	return tokenEncoding.EncodeToString(raw[:]), sha256.Sum256(raw[:]), nil
}

// parseToken checks that tok is a well-formed token (exactly TokenLen
// characters of the base64url alphabet, canonical) and returns the hash of
// the id it encodes. It never fails with anything but ok == false, whatever
// tok holds, and it looks at no more than TokenLen bytes of it.
func parseToken(tok string) (h [sha256.Size]byte, ok bool) {
	if !wellFormed(tok) {
		return h, false
	}
	var src [TokenLen]byte
	copy(src[:], tok)
	var raw [tokenBytes]byte
	n, err := tokenEncoding.Decode(raw[:], src[:])
	if err != nil || n != tokenBytes {
		return h, false
	}
	return sha256.Sum256(raw[:]), true
}

// isTokenChar reports whether c belongs to the base64url alphabet.
func isTokenChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// wellFormed reports whether tok could be a session token, without
// hashing it.
func wellFormed(tok string) bool {
	if len(tok) != TokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !isTokenChar(tok[i]) {
			return false
		}
	}
	// The last character carries 4 payload bits and 2 zero bits: only
	// every fourth letter of the alphabet can end a canonical token.
	return base64Index(tok[TokenLen-1])&3 == 0
}

// base64Index is the 6-bit value of a base64url character.
func base64Index(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	default:
		return 63
	}
}

// Backend keeps sessions by the hash of their id. *store.Store's Sessions()
// satisfies it as it is (SQLite, PostgreSQL), and so does *Redis. Every
// method is safe for concurrent use.
//
// Get returns the session whatever its state (revoked and expired ones
// included: the Manager decides), or an error wrapping store.ErrNotFound
// for an unknown hash. Touch and Revoke return an error wrapping
// store.ErrNotFound for an unknown hash; Revoke keeps the first revocation
// time. RevokeUser revokes every session of a user not yet revoked and says
// how many; ListByUser returns a user's sessions, oldest first;
// DeleteExpired removes sessions whose absolute expiry is before before.
// Any other error means the backend could not answer.
type Backend interface {
	Create(ctx context.Context, s *store.Session) error
	Get(ctx context.Context, idHash []byte) (*store.Session, error)
	Touch(ctx context.Context, idHash []byte, at time.Time) error
	Revoke(ctx context.Context, idHash []byte, at time.Time) error
	RevokeUser(ctx context.Context, userID string, at time.Time) (int, error)
	ListByUser(ctx context.Context, userID string) ([]*store.Session, error)
	DeleteExpired(ctx context.Context, before time.Time) (int, error)
}

// The durable store's session aggregate is a Backend as it stands.
var _ Backend = store.Sessions(nil)

// revocationFeed is a Backend that tells every instance about revocations.
// A Manager subscribes to it; *Redis implements it with pub/sub.
type revocationFeed interface {
	// watchRevocations reports revocations to w until stop is called;
	// stop returns once nothing more will be reported.
	watchRevocations(w revocationWatcher) (stop func())
}

// revocationWatcher receives what a revocationFeed hears.
type revocationWatcher interface {
	// feedUp says the subscription is (again) in place: revocations from
	// here on will be heard. Anything heard earlier may have been missed.
	feedUp()
	// feedDown says the subscription is lost: revocations may be missed
	// until the next feedUp.
	feedDown(err error)
	revokedSession(idHash [sha256.Size]byte)
	revokedUser(userID string)
	// revokedUnknown is a message the watcher cannot read: assume the worst.
	revokedUnknown()
}
