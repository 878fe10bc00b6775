// Package apikey issues and checks Moat's API keys: long-lived machine
// credentials sent as "Authorization: Bearer moat_..." or
// "X-API-Key: moat_...".
//
// A key is 63 ASCII characters:
//
//	key      = "moat_" id "_" secret checksum
//	id       = 8 base32      ; 40 random bits, lower-case RFC 4648 alphabet a-z 2-7
//	secret   = 43 base62     ; 256 random bits
//	checksum = 6 base62      ; CRC-32 (IEEE) of everything before it
//	base62   = "0"-"9" / "A"-"Z" / "a"-"z"
//
// The checksum is the number the CRC-32 of "moat_" id "_" secret spells,
// written in base62 with the most significant digit first and padded with
// "0" to 6 digits. The fixed "moat_" start lets secret scanners find leaked
// keys, and the checksum lets them (and Moat) tell a real key from a
// look-alike or a typo offline. The id is not secret: it is how the store
// finds the key (store.APIKey.Prefix) and how logs and the CLI name it.
//
// Only HMAC-SHA-256 of the whole key, under a pepper kept in the store's
// encrypted secrets, is stored, and it is compared in constant time. A key
// that names no stored id costs the same HMAC and store read as one with a
// wrong secret. Verified keys are cached in memory, by their HMAC, for a
// short time, so the per-request check reads the store only once per key
// and CacheTTL.
package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/store"
)

// ErrInvalid is what Verify returns for a key that does not let its
// bearer in: malformed, a wrong checksum, an unknown id, a wrong secret,
// expired or revoked. The error wraps it with the reason (see Reason). It
// is a result, not a failure: any other error from Verify means the check
// could not be made.
var ErrInvalid = errors.New("invalid api key")

// refusal is ErrInvalid with the reason.
type refusal struct{ reason, detail string }

func (r *refusal) Error() string { return ErrInvalid.Error() + ": " + r.detail }
func (r *refusal) Unwrap() error { return ErrInvalid }

// The refusals Verify returns; Reason reads them back. None of them
// quotes the key.
var (
	errMalformed = &refusal{"malformed", "malformed"}
	errChecksum  = &refusal{"checksum", "bad checksum"}
	errUnknown   = &refusal{"unknown", "unknown key id"}
	errSecret    = &refusal{"secret", "wrong secret"}
	errExpired   = &refusal{"expired", "expired"}
	errRevoked   = &refusal{"revoked", "revoked"}
)

// Reason returns why err refused a key, for security events: "malformed",
// "checksum", "unknown", "secret", "expired" or "revoked". It returns ""
// for nil and for any error that is not ErrInvalid (the store could not
// answer). The reason is for events and logs: a client is told the same
// for each of them. Reason is safe for concurrent use.
func Reason(err error) string {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}

// Defaults and limits.
const (
	defaultCacheTTL     = 2 * time.Second
	defaultCacheEntries = 10000
	// minPepper is the shortest pepper New accepts, in bytes.
	minPepper = 32
	// touchInterval is how often, at most, a key's last use is written.
	touchInterval = time.Minute
	// createAttempts bounds the retries of Create when a new id is taken.
	createAttempts = 4
	// maxText bounds names, owners and scopes, in bytes.
	maxText = 200
)

// Options configures a Service.
type Options struct {
	// Keys is where keys are kept: Store.APIKeys().
	Keys store.APIKeys
	// Pepper is the HMAC key, at least 32 bytes, the same on every
	// instance: Store.Secrets().GetOrCreate(ctx, "apikey.pepper", 32).
	Pepper []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheTTL is how long a verified key is trusted without reading the
	// store again, and so how long a revocation made on another instance
	// can take to be seen here. 0 means 2s; negative turns the cache off.
	CacheTTL time.Duration
	// CacheEntries bounds the cache; 0 means 10000.
	CacheEntries int
}

// Service issues, checks, lists, revokes and rotates API keys. Its methods
// are safe for concurrent use, and several Services (one per Moat
// instance) may share one store.
type Service struct {
	keys  store.APIKeys
	now   func() time.Time
	cache *cache // nil: no cache
	macs  sync.Pool
	dummy mac // compared against when a key's id is unknown
}

// hasher computes HMACs of keys without allocating.
type hasher struct {
	h   hash.Hash
	buf [keyLen]byte
	sum mac
}

// New returns a Service. It fails if Keys is missing, the pepper is
// shorter than 32 bytes, or CacheEntries is negative.
func New(o Options) (*Service, error) {
	switch {
	case o.Keys == nil:
		return nil, errors.New("api keys: no key store")
	case len(o.Pepper) < minPepper:
		return nil, fmt.Errorf("api keys: pepper is %d bytes, want at least %d", len(o.Pepper), minPepper)
	case o.CacheEntries < 0:
		return nil, fmt.Errorf("api keys: negative cache size %d", o.CacheEntries)
	}
	s := &Service{keys: o.Keys, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	pepper := slices.Clone(o.Pepper)
	s.macs.New = func() any { return &hasher{h: hmac.New(sha256.New, pepper)} }
	if _, err := rand.Read(s.dummy[:]); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	ttl := o.CacheTTL
	if ttl == 0 {
		ttl = defaultCacheTTL
	}
	if ttl > 0 {
		n := o.CacheEntries
		if n == 0 {
			n = defaultCacheEntries
		}
		s.cache = newCache(ttl, n)
	}
	return s, nil
}

// clock is the current time at the precision the store keeps.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// mac returns the HMAC of key, which must be keyLen bytes long.
func (s *Service) mac(key string) mac {
	hs := s.macs.Get().(*hasher)
	hs.h.Reset()
	copy(hs.buf[:], key)
	hs.h.Write(hs.buf[:])
	hs.h.Sum(hs.sum[:0])
	sum := hs.sum
	s.macs.Put(hs)
	return sum
}

// Create issues a new key for owner (a user id, or "service") with the
// scopes given; name says what it is for. ttl 0 makes a key that never
// expires. It returns the key, which is shown once and never stored, and
// the stored record. It is safe for concurrent use; it fails on a missing
// owner, a negative ttl, a name, owner or scope that is too long or holds
// control characters, or a store error, and then stores nothing.
func (s *Service) Create(ctx context.Context, name, owner string, scopes []string, ttl time.Duration) (key string, rec *store.APIKey, err error) {
	if err := checkFields(name, owner, scopes); err != nil {
		return "", nil, fmt.Errorf("creating api key: %w", err)
	}
	if ttl < 0 {
		return "", nil, fmt.Errorf("creating api key: negative lifetime %v", ttl)
	}
	return s.create(ctx, name, owner, scopes, ttl, s.clock())
}

func (s *Service) create(ctx context.Context, name, owner string, scopes []string, ttl time.Duration, now time.Time) (string, *store.APIKey, error) {
	for range createAttempts {
		key, id, err := newKey()
		if err != nil {
			return "", nil, err
		}
		h := s.mac(key)
		rec := &store.APIKey{
			Name:      name,
			Owner:     owner,
			Prefix:    id,
			Hash:      h[:],
			Scopes:    slices.Clone(scopes),
			CreatedAt: now,
		}
		if ttl > 0 {
			rec.ExpiresAt = now.Add(ttl)
		}
		err = s.keys.Create(ctx, rec)
		if errors.Is(err, store.ErrConflict) {
			continue // the id is taken: draw another
		}
		if err != nil {
			return "", nil, fmt.Errorf("creating api key: %w", err)
		}
		return key, rec, nil
	}
	return "", nil, errors.New("creating api key: no free id found")
}

// checkFields checks what Create stores and events and logs later show.
func checkFields(name, owner string, scopes []string) error {
	if owner == "" {
		return errors.New("no owner")
	}
	if err := checkText("name", name); err != nil {
		return err
	}
	if err := checkText("owner", owner); err != nil {
		return err
	}
	for _, sc := range scopes {
		if sc == "" || strings.ContainsFunc(sc, unicode.IsSpace) {
			return fmt.Errorf("scope %q is empty or holds spaces", sc)
		}
		if err := checkText("scope", sc); err != nil {
			return err
		}
	}
	return nil
}

func checkText(what, v string) error {
	if len(v) > maxText {
		return fmt.Errorf("%s is longer than %d bytes", what, maxText)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return fmt.Errorf("%s %q is not printable text", what, v)
	}
	return nil
}

// Verify checks key and returns its record. A key that does not let its
// bearer in is refused with an error wrapping ErrInvalid, whose Reason
// says why; a malformed key or one with a wrong checksum is refused
// without reading the store. Any other error means the store could not
// answer, and the caller must refuse the request (fail closed, 503).
//
// A key found right is cached for CacheTTL; a cached key is still checked
// against the clock for expiry and revocation on each call. Its last use
// is written to the store at most once a minute per key; a failure to
// write it is ignored and never refuses the request. The record returned
// is the caller's own copy. Verify is safe for concurrent use.
func (s *Service) Verify(ctx context.Context, key string) (*store.APIKey, error) {
	id, err := parse(key)
	if err != nil {
		return nil, err
	}
	h := s.mac(key)
	now := s.now()
	if s.cache != nil {
		if e := s.cache.get(&h, now); e != nil {
			return s.accept(ctx, e, now)
		}
	}
	var gen uint64
	if s.cache != nil {
		gen = s.cache.gen.Load()
	}
	rec, err := s.keys.GetByPrefix(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// The same comparison as for a wrong secret, so that the two
		// answers take the same time.
		hmac.Equal(s.dummy[:], h[:])
		return nil, errUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("verifying api key: %w", err)
	}
	if !hmac.Equal(rec.Hash, h[:]) {
		return nil, errSecret
	}
	if s.cache == nil {
		return s.accept(ctx, newEntry(rec, now, 0), now)
	}
	e := newEntry(rec, now, s.cache.ttl)
	s.cache.put(gen, &h, e, now)
	return s.accept(ctx, e, now)
}

// accept refuses the key of e if it has expired or been revoked at now,
// records its use when the last record is older than touchInterval, and
// returns a copy of its record.
func (s *Service) accept(ctx context.Context, e *entry, now time.Time) (*store.APIKey, error) {
	rec := e.rec
	if !rec.RevokedAt.IsZero() && !now.Before(rec.RevokedAt) {
		return nil, errRevoked
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return nil, errExpired
	}
	out := *rec
	out.Scopes = slices.Clone(rec.Scopes)
	out.Hash = slices.Clone(rec.Hash)
	at := now.UTC().Truncate(time.Microsecond)
	last := e.touched.Load()
	if at.UnixMicro()-last >= touchInterval.Microseconds() && e.touched.CompareAndSwap(last, at.UnixMicro()) {
		// One of concurrent requests writes; a failed write waits for
		// the next interval like a successful one, so that a store in
		// trouble is not asked on every request.
		if err := s.keys.Touch(ctx, rec.ID, at); err == nil {
			out.LastUsedAt = at
		}
	} else if last > 0 {
		out.LastUsedAt = time.UnixMicro(last).UTC()
	}
	return &out, nil
}

// List returns every key, revoked and expired ones included, oldest
// first. A key whose RevokedAt is in the future was rotated and still
// works until then. List is safe for concurrent use; it fails only when
// the store does.
func (s *Service) List(ctx context.Context) ([]*store.APIKey, error) {
	keys, err := s.keys.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return keys, nil
}

// get returns the key with the store id id, or an error wrapping
// store.ErrNotFound.
func (s *Service) get(ctx context.Context, id string) (*store.APIKey, error) {
	keys, err := s.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.ID == id {
			return k, nil
		}
	}
	return nil, store.ErrNotFound
}

// Revoke revokes the key with the store id id at once. This instance
// refuses it from the moment Revoke returns; other instances do within
// their CacheTTL. Revoking a revoked key again is not an error. It fails
// with an error wrapping store.ErrNotFound for an unknown id, and with an
// error when the store cannot answer or when it keeps an earlier-set,
// later revocation time (a rotated key's grace period) instead of now: the
// key then still works until that time, and Revoke says so rather than
// report success. Revoke is safe for concurrent use.
func (s *Service) Revoke(ctx context.Context, id string) error {
	now := s.clock()
	if err := s.keys.Revoke(ctx, id, now); err != nil {
		return fmt.Errorf("revoking api key %s: %w", id, err)
	}
	if s.cache != nil {
		s.cache.forget(id)
	}
	// The store may keep the first revocation time it was given rather
	// than the earliest: check which one holds.
	rec, err := s.get(ctx, id)
	if err != nil {
		return fmt.Errorf("revoking api key %s: reading it back: %w", id, err)
	}
	if rec.RevokedAt.After(now) {
		return fmt.Errorf("revoking api key %s: the store kept the revocation at %s set by an earlier rotation; the key works until then",
			id, rec.RevokedAt.Format(time.RFC3339))
	}
	return nil
}

// Rotate issues a new key with the name, owner, scopes and lifetime of
// the key with the store id id, and revokes the old key grace from now:
// until then both work, then only the new one does. A grace of 0 revokes
// the old key at once. It returns the new key, shown once, and its record.
//
// Rotate fails, and issues nothing, for an unknown id (an error wrapping
// store.ErrNotFound), a key already revoked or expired, a negative grace,
// or an old key already due to be revoked later than now+grace (the store
// keeps the first revocation time). If the new key is stored but the old
// one cannot be revoked, the new key is revoked again and Rotate fails.
// Rotate is safe for concurrent use.
func (s *Service) Rotate(ctx context.Context, id string, grace time.Duration) (key string, rec *store.APIKey, err error) {
	if grace < 0 {
		return "", nil, fmt.Errorf("rotating api key %s: negative grace period %v", id, grace)
	}
	old, err := s.get(ctx, id)
	if err != nil {
		return "", nil, fmt.Errorf("rotating api key %s: %w", id, err)
	}
	now := s.clock()
	switch {
	case !old.RevokedAt.IsZero() && !now.Before(old.RevokedAt):
		return "", nil, fmt.Errorf("rotating api key %s: it is revoked", id)
	case !old.ExpiresAt.IsZero() && !now.Before(old.ExpiresAt):
		return "", nil, fmt.Errorf("rotating api key %s: it has expired", id)
	}
	until := now.Add(grace)
	if !old.RevokedAt.IsZero() && old.RevokedAt.After(until) {
		return "", nil, fmt.Errorf("rotating api key %s: it is already due to be revoked at %s, after the grace period asked for",
			id, old.RevokedAt.Format(time.RFC3339))
	}
	var ttl time.Duration
	if !old.ExpiresAt.IsZero() {
		ttl = old.ExpiresAt.Sub(old.CreatedAt)
	}
	key, rec, err = s.create(ctx, old.Name, old.Owner, old.Scopes, ttl, now)
	if err != nil {
		return "", nil, fmt.Errorf("rotating api key %s: %w", id, err)
	}
	if err := s.keys.Revoke(ctx, old.ID, until); err != nil {
		undo := s.keys.Revoke(context.WithoutCancel(ctx), rec.ID, now)
		if undo != nil {
			undo = fmt.Errorf("the new key %s could not be revoked again: %w", rec.ID, undo)
		}
		return "", nil, errors.Join(fmt.Errorf("rotating api key %s: %w", id, err), undo)
	}
	if s.cache != nil {
		s.cache.forget(old.ID)
	}
	return key, rec, nil
}

// Principal returns the Principal a request authenticated with rec
// stands for: Method authn.MethodAPIKey, the owner as Subject, the key's
// name as Name, its scopes and id, and Moat as Issuer. It returns nil for
// a nil rec. It is safe for concurrent use.
func (s *Service) Principal(rec *store.APIKey) *authn.Principal {
	if rec == nil {
		return nil
	}
	return &authn.Principal{
		Subject: rec.Owner,
		Name:    rec.Name,
		Method:  authn.MethodAPIKey,
		Scopes:  slices.Clone(rec.Scopes),
		Issuer:  authn.LocalIssuer,
		KeyID:   rec.ID,
	}
}
