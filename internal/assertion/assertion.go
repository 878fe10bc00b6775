// Package assertion signs the identity assertion Moat sends to upstreams:
// a short-lived JWT (RFC 7519) in the X-Moat-Assertion header that says who
// the request is made by, signed with Ed25519 (EdDSA, RFC 8037) by a key
// the gateway rotates and publishes as a JWK Set (RFC 7517) at JWKSPath.
//
// Upstreams verify it with the public package
// github.com/moatgw/moat/assertion, or any JOSE library, against that key
// set. docs/assertion.md describes the claims.
//
// Signing keys live in the store (their private halves sealed by the key
// ring), so every instance that shares a store signs with keys every
// instance publishes.
package assertion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/store"
)

// Header is the request header that carries the assertion to the upstream.
const Header = "X-Moat-Assertion"

// JWKSPath is where the gateway publishes the public keys.
const JWKSPath = "/.well-known/moat/jwks.json"

// TokenType is the JOSE "typ" header of every assertion (RFC 8725
// section 3.11), so that no other JWT is ever taken for one.
const TokenType = "moat-assertion+jwt"

// Bounds and defaults of Options.
const (
	DefaultLifetime = time.Minute
	MaxLifetime     = 10 * time.Minute
	DefaultRotation = 24 * time.Hour
	MinRotation     = time.Hour
	DefaultCacheTTL = 5 * time.Second
)

// maxCacheEntries bounds the assertion cache: one entry per principal and
// route seen within CacheTTL.
const maxCacheEntries = 10000

// Options configures a Signer.
type Options struct {
	Keys     store.SigningKeys // where the keys live: instances that share it share keys
	Issuer   string            // "iss": the gateway's public URL
	Lifetime time.Duration     // assertion lifetime; 0 means DefaultLifetime, at most MaxLifetime
	// Rotation is how often a new signing key takes over; 0 means
	// DefaultRotation, at least MinRotation. A scheduled key is published
	// before it signs, and the keys before it stay published until every
	// assertion they signed has expired, plus a margin.
	Rotation time.Duration
	// CacheTTL is how long an assertion for the same principal and route
	// is reused, at most, and never once less than half its lifetime is
	// left; 0 means DefaultCacheTTL, a negative value turns the cache off
	// (every request is then signed apart and carries its request id).
	CacheTTL time.Duration
	Now      func() time.Time // nil means time.Now
	Logger   *slog.Logger     // nil discards
}

// Signer signs assertions. Its methods are safe for concurrent use.
//
// # Caching and the request id
//
// The Ed25519 signature is nearly the whole cost of an assertion: 30 to
// 40µs of CPU on a busy 2-core machine (BenchmarkSign), where Moat spends
// about 60µs on a whole proxied request (docs/performance.md); a cache hit
// costs 0.2 to 0.3µs and allocates nothing (BenchmarkSignCached). So an assertion is signed once
// per principal and route and reused while fresh (CacheTTL, at most half
// its lifetime), and the request id is left out of it: the upstream reads
// that from the X-Request-Id header Moat sets on every proxied request,
// and the "jti" names the assertion, not the request. Putting the request
// id in would make every request a cache miss, since no two requests
// share one. A deployment that wants each assertion bound to its request
// turns the cache off (CacheTTL < 0) and pays the signature per request;
// every assertion then carries the request id in "rid".
type Signer struct {
	keys     store.SigningKeys
	issuer   string
	lifetime time.Duration
	rotation time.Duration
	cacheTTL time.Duration // < 0: no cache
	now      func() time.Time
	log      *slog.Logger

	set atomic.Pointer[keySet]

	rotateMu sync.Mutex // one reload or key creation at a time
	skipped  map[string]bool

	cacheMu  sync.RWMutex
	cache    map[string]cached
	cacheMax int
}

// cached is an assertion kept for reuse.
type cached struct {
	token string
	kid   string    // the key that signed it: a new current key ends its reuse
	until time.Time // reuse it before this time only
}

// New returns a Signer over the assertion keys in o.Keys, creating the
// first key if there is none. It fails when the store cannot be read or
// written, or o is invalid.
func New(ctx context.Context, o Options) (*Signer, error) {
	if o.Keys == nil {
		return nil, errors.New("assertion signer: no key store")
	}
	if o.Issuer == "" {
		return nil, errors.New("assertion signer: no issuer")
	}
	s := &Signer{
		keys: o.Keys, issuer: o.Issuer,
		lifetime: o.Lifetime, rotation: o.Rotation, cacheTTL: o.CacheTTL,
		now: o.Now, log: o.Logger,
		skipped: map[string]bool{},
		cache:   map[string]cached{},

		cacheMax: maxCacheEntries,
	}
	switch {
	case s.lifetime == 0:
		s.lifetime = DefaultLifetime
	case s.lifetime < time.Second || s.lifetime > MaxLifetime:
		return nil, fmt.Errorf("assertion signer: lifetime %v: want between 1s and %v", s.lifetime, MaxLifetime)
	}
	switch {
	case s.rotation == 0:
		s.rotation = DefaultRotation
	case s.rotation < MinRotation:
		return nil, fmt.Errorf("assertion signer: rotation %v: want at least %v", s.rotation, MinRotation)
	}
	if s.cacheTTL == 0 {
		s.cacheTTL = DefaultCacheTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "assertion")

	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	err := s.reload(ctx)
	if errors.Is(err, errNoKeys) {
		if err = s.create(ctx, s.now()); err == nil {
			err = s.reload(ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("assertion signer: %w", err)
	}
	return s, nil
}

// claims is the JSON payload of an assertion. docs/assertion.md and the
// public verifier read the same names.
type claims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  string          `json:"aud"`
	IssuedAt  int64           `json:"iat"`
	NotBefore int64           `json:"nbf"`
	Expiry    int64           `json:"exp"`
	ID        string          `json:"jti"`
	RequestID string          `json:"rid,omitempty"`
	Method    string          `json:"method"`
	Name      string          `json:"name,omitempty"`
	Roles     []string        `json:"roles,omitempty"`
	Scopes    []string        `json:"scopes,omitempty"`
	AMR       []string        `json:"amr,omitempty"`
	AuthTime  int64           `json:"auth_time,omitempty"`
	IdP       string          `json:"idp,omitempty"`
	SessionID string          `json:"sid,omitempty"`
	KeyID     string          `json:"key_id,omitempty"`
	Extra     json.RawMessage `json:"ext,omitempty"`
}

// Sign returns the assertion that p makes the request to the route named
// audience. With the cache on (the default) it returns an assertion
// already signed for the same principal and route when one is fresh, and
// requestID is not in it (see Signer); with the cache off every call
// signs, and "rid" is requestID. It fails for a principal without a
// subject, an empty audience, or principal claims that are not JSON.
func (s *Signer) Sign(p *authn.Principal, audience, requestID string) (string, error) {
	if p == nil || p.Subject == "" {
		return "", errors.New("signing assertion: no authenticated subject")
	}
	if audience == "" {
		return "", errors.New("signing assertion: no audience")
	}
	var extra []byte
	if len(p.Claims) > 0 {
		var err error
		if extra, err = json.Marshal(p.Claims); err != nil {
			return "", fmt.Errorf("signing assertion: principal claims: %w", err)
		}
	}
	now := s.now()
	k := s.set.Load().current(now)
	if s.cacheTTL < 0 {
		return s.sign(k, p, audience, requestID, extra, now)
	}

	var arr [256]byte
	ck := cacheKey(arr[:0], p, audience, extra)
	s.cacheMu.RLock()
	c, ok := s.cache[string(ck)]
	s.cacheMu.RUnlock()
	if ok && c.kid == k.id && now.Before(c.until) {
		return c.token, nil
	}
	tok, err := s.sign(k, p, audience, "", extra, now)
	if err != nil {
		return "", err
	}
	s.remember(string(ck), cached{token: tok, kid: k.id, until: now.Add(min(s.cacheTTL, s.lifetime/2))}, now)
	return tok, nil
}

// sign builds and signs one assertion with k.
func (s *Signer) sign(k *key, p *authn.Principal, audience, requestID string, extra []byte, now time.Time) (string, error) {
	c := claims{
		Issuer: s.issuer, Subject: p.Subject, Audience: audience,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(s.lifetime).Unix(),
		ID: rand.Text(), RequestID: requestID,
		Method: p.Method, Name: p.Name,
		Roles: p.Roles, Scopes: p.Scopes, AMR: p.AuthMethods,
		IdP: p.Issuer, SessionID: p.SessionID, KeyID: p.KeyID,
		Extra: extra,
	}
	if !p.AuthTime.IsZero() {
		c.AuthTime = p.AuthTime.Unix()
	}
	payload, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("signing assertion: %w", err)
	}
	enc := base64.RawURLEncoding
	b := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	b = append(b, k.header...)
	b = append(b, '.')
	b = enc.AppendEncode(b, payload)
	sig := ed25519.Sign(k.priv, b)
	b = append(b, '.')
	b = enc.AppendEncode(b, sig)
	return string(b), nil
}

// remember stores c under ck, first dropping stale entries when the cache
// is full, and everything when that is not enough.
func (s *Signer) remember(ck string, c cached, now time.Time) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if len(s.cache) >= s.cacheMax {
		for k, e := range s.cache {
			if !now.Before(e.until) {
				delete(s.cache, k)
			}
		}
		if len(s.cache) >= s.cacheMax {
			clear(s.cache)
		}
	}
	s.cache[ck] = c
}

// cacheKey appends to b everything of p that goes into an assertion for
// audience, each part length-prefixed so that no two principals share a key.
func cacheKey(b []byte, p *authn.Principal, audience string, extra []byte) []byte {
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	list := func(l []string) {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(audience)
	str(p.Subject)
	str(p.Method)
	str(p.Name)
	str(p.Issuer)
	str(p.SessionID)
	str(p.KeyID)
	list(p.Roles)
	list(p.Scopes)
	list(p.AuthMethods)
	var at int64
	if !p.AuthTime.IsZero() {
		at = p.AuthTime.Unix()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(extra)))
	return append(b, extra...)
}
