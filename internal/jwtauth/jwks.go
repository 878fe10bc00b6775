package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// key is one public signing key of an issuer.
type key struct {
	kid string
	alg string // the JWK's "alg"; empty when it names none
	pub crypto.PublicKey
}

// fits reports whether k may verify a signature made with alg: the JWK's
// own alg, when it has one, must be alg, and the key type (and curve) must
// be alg's.
func (k *key) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		}
	case ed25519.PublicKey:
		return jose.SignatureAlgorithm(alg) == jose.EdDSA
	}
	return false
}

// keySet is one fetched JWK Set. It is immutable.
type keySet struct {
	keys      []*key
	fetchedAt time.Time
	staleAt   time.Time // refetch in the background from then on
}

// find returns the key for a token's kid and alg. With no kid, the one key
// that fits alg is taken. The reason is "" when a key was found,
// ReasonAlg when keys with that kid exist but none fits alg (a refetch
// would not help), and ReasonKid when the kid is unknown.
func (ks *keySet) find(kid, alg string) (*key, string) {
	var found *key
	n, named := 0, false
	for _, k := range ks.keys {
		if kid != "" && k.kid != kid {
			continue
		}
		named = true
		if k.fits(alg) {
			if kid != "" {
				return k, ""
			}
			found = k
			n++
		}
	}
	switch {
	case n == 1:
		return found, ""
	case kid != "" && named:
		return nil, ReasonAlg
	}
	return nil, ReasonKid
}

// has reports whether k is still one of the set's keys.
func (ks *keySet) has(k *key) bool {
	return ks != nil && slices.Contains(ks.keys, k)
}

// keyState holds an issuer's current key set and the state of its fetches.
type keyState struct {
	set atomic.Pointer[keySet] // nil until the first successful fetch

	mu        sync.Mutex
	attemptAt time.Time // last fetch started, by the Verifier's clock
	lastErr   error     // of the last finished fetch
	flight    *flight   // the fetch in progress, if any
}

// flight is one fetch in progress; done is closed when it ends.
type flight struct {
	done chan struct{}
	set  *keySet
	err  error
}

// refresh fetches is's keys, joining a fetch in progress rather than
// starting another. When limited (a fetch prompted by a request), it
// starts none if one started less than JWKSRefreshInterval ago, and then
// returns the current set and the error of the last fetch. With wait, it
// waits for the fetch (or ctx) and returns the resulting set and the
// fetch error; without, it returns at once with the current set.
func (v *Verifier) refresh(ctx context.Context, is *issuer, wait, limited bool) (*keySet, error) {
	st := &is.keys
	st.mu.Lock()
	f := st.flight
	if f == nil {
		now := v.now()
		if limited && !st.attemptAt.IsZero() && now.Sub(st.attemptAt) < v.refreshInterval {
			set, err := st.set.Load(), st.lastErr
			st.mu.Unlock()
			return set, err
		}
		st.attemptAt = now
		f = &flight{done: make(chan struct{})}
		st.flight = f
		v.bg.Add(1)
		go func() {
			defer v.bg.Done()
			v.runFetch(context.WithoutCancel(ctx), is, f)
		}()
	}
	st.mu.Unlock()
	if !wait {
		return st.set.Load(), nil
	}
	select {
	case <-f.done:
		return f.set, f.err
	case <-ctx.Done():
		return st.set.Load(), fmt.Errorf("waiting for the key set: %w", ctx.Err())
	}
}

// runFetch fetches is's key set for f and publishes the result.
func (v *Verifier) runFetch(ctx context.Context, is *issuer, f *flight) {
	st := &is.keys
	set, err := v.fetch(ctx, is, st.set.Load())
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		v.log.Warn("fetching token issuer keys", "issuer", is.cfg.Issuer, "err", err)
		f.set = st.set.Load()
	} else {
		st.set.Store(set)
		f.set = set
	}
	f.err = err
	st.lastErr = err
	st.flight = nil
	close(f.done)
}

// fetch reads is's JWK Set, finding its URL by discovery when none is
// configured. Keys equal to ones of old are kept as the same values, so
// that verified tokens cached with them stay valid.
func (v *Verifier) fetch(ctx context.Context, is *issuer, old *keySet) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	u := is.cfg.JWKSURL
	if u == "" {
		var err error
		if u, err = v.discover(ctx, is); err != nil {
			return nil, err
		}
	}
	body, h, err := v.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("fetching the key set: %w", err)
	}
	keys, err := v.parseKeySet(is, body)
	if err != nil {
		return nil, fmt.Errorf("reading the key set from %s: %w", u, err)
	}
	for i, k := range keys {
		if old == nil {
			break
		}
		for _, o := range old.keys {
			if o.kid == k.kid && o.alg == k.alg && samePublicKey(o.pub, k.pub) {
				keys[i] = o
				break
			}
		}
	}
	now := v.now()
	return &keySet{keys: keys, fetchedAt: now, staleAt: now.Add(v.maxAge(h.Get("Cache-Control")))}, nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// maxAge is how long a key set fetched with the Cache-Control header cc
// is used before a background refetch: its max-age, kept between
// JWKSRefreshInterval and 24h, or 1h when it has none.
func (v *Verifier) maxAge(cc string) time.Duration {
	d := defaultJWKSMaxAge
	for part := range strings.SplitSeq(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case strings.EqualFold(name, "no-store"), strings.EqualFold(name, "no-cache"):
			return v.refreshInterval
		case strings.EqualFold(name, "max-age"):
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
				d = time.Duration(min(n, int64(maxJWKSMaxAge/time.Second))) * time.Second
			}
		}
	}
	return min(max(d, v.refreshInterval), max(maxJWKSMaxAge, v.refreshInterval))
}

// discover reads is's discovery document and returns its jwks_uri, after
// checking that the document names is as its issuer.
func (v *Verifier) discover(ctx context.Context, is *issuer) (string, error) {
	u := strings.TrimSuffix(is.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := v.get(ctx, u)
	if err != nil {
		return "", fmt.Errorf("fetching the discovery document: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("reading the discovery document %s: %w", u, err)
	}
	if doc.Issuer != is.cfg.Issuer {
		return "", fmt.Errorf("discovery document %s names issuer %q, not %q", u, clip(doc.Issuer), clip(is.cfg.Issuer))
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discovery document %s has no jwks_uri", u)
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// get fetches u and returns its body, of at most 1 MiB, and its header.
func (v *Verifier) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return nil, nil, fmt.Errorf("GET %s: larger than %d bytes", u, maxDocumentBytes)
	}
	return body, resp.Header, nil
}

// parseKeySet reads the signing keys of a JWK Set (RFC 7517 section 5).
// It keeps only the public part of each key, and skips, with a log line,
// keys it cannot use: those for another use than "sig" or whose key_ops
// lack "verify", symmetric keys, RSA keys under 2048 bits, curves other
// than P-256 and P-384, keys whose alg is not accepted, and keys it
// cannot read.
func (v *Verifier) parseKeySet(is *issuer, body []byte) ([]*key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	if doc.Keys == nil {
		return nil, errors.New(`no "keys" member`)
	}
	var keys []*key
	for i, raw := range doc.Keys {
		if len(keys) == maxKeys {
			v.log.Warn("token issuer key set has too many keys; ignoring the rest", "issuer", is.cfg.Issuer, "kept", maxKeys)
			break
		}
		k, err := parseKey(raw)
		if err != nil {
			v.log.Warn("ignoring a key of a token issuer", "issuer", is.cfg.Issuer, "index", i, "err", err)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		v.log.Warn("token issuer key set has no usable signing key", "issuer", is.cfg.Issuer)
	}
	return keys, nil
}

// parseKey reads one JWK and returns its public signing key.
func parseKey(raw []byte) (*key, error) {
	var ops struct {
		KeyOps []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &ops); err != nil {
		return nil, err
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	switch _, symmetric := jwk.Key.([]byte); {
	case symmetric:
		return nil, fmt.Errorf("key %q is symmetric", clip(jwk.KeyID))
	case jwk.Use != "" && jwk.Use != "sig":
		return nil, fmt.Errorf("key %q is for use %q", clip(jwk.KeyID), clip(jwk.Use))
	case len(ops.KeyOps) > 0 && !slices.Contains(ops.KeyOps, "verify"):
		return nil, fmt.Errorf("key %q: key_ops lacks verify", clip(jwk.KeyID))
	case jwk.Algorithm != "" && !supportedAlgorithm(jwk.Algorithm):
		return nil, fmt.Errorf("key %q: algorithm %q is not accepted", clip(jwk.KeyID), clip(jwk.Algorithm))
	}
	pub := jwk.Public() // drops any private part
	if !pub.Valid() {
		return nil, fmt.Errorf("key %q is not a valid public key", clip(jwk.KeyID))
	}
	switch p := pub.Key.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("key %q: RSA key of %d bits is too short", clip(jwk.KeyID), p.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return nil, fmt.Errorf("key %q: curve %s is not accepted", clip(jwk.KeyID), p.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("key %q: key type %T is not accepted", clip(jwk.KeyID), pub.Key)
	}
	return &key{kid: jwk.KeyID, alg: jwk.Algorithm, pub: pub.Key}, nil
}
