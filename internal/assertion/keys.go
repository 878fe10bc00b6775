package assertion

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// KeyUse is the store.SigningKey Use of assertion keys.
const KeyUse = "assertion"

// Key life cycle. A key begins to sign at its CreatedAt, which for a
// scheduled key lies prepublish in the future: by then every instance has
// loaded it (reloadEvery) and every verifier has fetched a key set that
// holds it (the public verifier refreshes every 5 minutes, and Handler lets
// HTTP caches keep the set as long). A key stops signing when the next one
// begins, and stays published for retention afterwards: the longest
// lifetime any instance may give an assertion, the time an instance may
// still sign with it before it reloads, and a margin for verifier leeway
// and clock skew.
const (
	reloadEvery = time.Minute
	prepublish  = 15 * time.Minute
	retention   = reloadEvery + MaxLifetime + 2*time.Minute
	jwksMaxAge  = 300 // seconds, Handler's Cache-Control
)

var errNoKeys = errors.New("no usable assertion signing key in the store")

// key is one loaded signing key.
type key struct {
	id     string
	start  time.Time // CreatedAt: when it begins to sign
	priv   ed25519.PrivateKey
	header []byte // the base64url-encoded JOSE header of its assertions
	jwk    []byte // its public JWK
}

// keySet is the loaded keys by start, oldest first, without those already
// retired when it was loaded. It is never empty and never changed.
type keySet struct {
	keys []*key
}

// current is the key that signs at now: the newest one that has begun,
// or, when none has (another instance's clock runs ahead), the oldest.
func (ks *keySet) current(now time.Time) *key {
	for i := len(ks.keys) - 1; i >= 0; i-- {
		if !ks.keys[i].start.After(now) {
			return ks.keys[i]
		}
	}
	return ks.keys[0]
}

// published reports whether the key at index i is in the key set at now:
// every key is until retention after the next one began.
func (ks *keySet) published(i int, now time.Time) bool {
	return i == len(ks.keys)-1 || now.Before(ks.keys[i+1].start.Add(retention))
}

// Run reloads the keys every minute, picking up keys other instances made,
// and schedules the next key when the current one is due for rotation,
// until ctx ends. Errors are logged; the keys already loaded keep signing.
func (s *Signer) Run(ctx context.Context) {
	t := time.NewTicker(reloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.tick(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("assertion keys", "err", err)
			}
		}
	}
}

// tick is one round of Run: reload, then schedule the next key when the
// newest one in the store (made by any instance) has begun Rotation ago,
// less the time a new key is published before it signs.
func (s *Signer) tick(ctx context.Context) error {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	if err := s.reload(ctx); err != nil {
		return err
	}
	now := s.now()
	ks := s.set.Load()
	if now.Before(ks.keys[len(ks.keys)-1].start.Add(s.rotation - prepublish)) {
		return nil
	}
	if err := s.create(ctx, now.Add(prepublish)); err != nil {
		return err
	}
	s.log.Info("scheduled a new assertion signing key", "begins", now.Add(prepublish))
	return s.reload(ctx)
}

// Rotate makes a new key that signs from now on, on this instance at once
// and on the others when they next reload. The keys before it stay
// published until their assertions have expired. Instances that rotate at
// the same moment each make a key, and all end up signing with the newest.
func (s *Signer) Rotate(ctx context.Context) error {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	// Begin strictly after every key that has begun, so that the new key
	// is the newest even when the clock has not moved (stored times have
	// microsecond precision).
	start := s.now().Truncate(time.Microsecond)
	if ks := s.set.Load(); ks != nil {
		for _, k := range ks.keys {
			if !k.start.After(start) && !k.start.Before(start) {
				start = k.start.Add(time.Microsecond)
			}
		}
	}
	if err := s.create(ctx, start); err != nil {
		return fmt.Errorf("rotating assertion key: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		return fmt.Errorf("rotating assertion key: %w", err)
	}
	s.log.Info("rotated the assertion signing key")
	return nil
}

// create stores a new Ed25519 key that begins to sign at start. Its id is
// its JWK thumbprint (RFC 7638).
func (s *Signer) create(ctx context.Context, start time.Time) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key: %w", err)
	}
	k := &store.SigningKey{
		ID: thumbprint(pub), Use: KeyUse, Alg: "EdDSA",
		Private: priv, Public: pub, CreatedAt: start,
	}
	if err := s.keys.Create(ctx, k); err != nil {
		return fmt.Errorf("storing key: %w", err)
	}
	return nil
}

// reload reads the keys from the store and makes them the loaded set. A
// key that cannot be used (another algorithm, a malformed key) is skipped
// and logged once. Callers hold rotateMu.
func (s *Signer) reload(ctx context.Context) error {
	stored, err := s.keys.List(ctx, KeyUse)
	if err != nil {
		return fmt.Errorf("loading keys: %w", err)
	}
	slices.SortStableFunc(stored, func(a, b *store.SigningKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	// Newest first, down to the first key that began retention ago: the
	// ones before it are retired.
	now := s.now()
	var keys []*key
	for i := len(stored) - 1; i >= 0; i-- {
		sk := stored[i]
		k, err := parseKey(sk)
		if err != nil {
			if !s.skipped[sk.ID] {
				s.skipped[sk.ID] = true
				s.log.Warn("skipping an assertion signing key", "kid", sk.ID, "err", err)
			}
			continue
		}
		keys = append(keys, k)
		if !now.Before(k.start.Add(retention)) {
			break
		}
	}
	if len(keys) == 0 {
		return errNoKeys
	}
	slices.Reverse(keys)
	all := &keySet{keys: keys}
	live := &keySet{}
	for i, k := range keys {
		if all.published(i, now) {
			live.keys = append(live.keys, k)
		}
	}
	s.set.Store(live)
	return nil
}

// parseKey checks a stored key and prepares it for signing.
func parseKey(sk *store.SigningKey) (*key, error) {
	if sk.Alg != "EdDSA" {
		return nil, fmt.Errorf("algorithm %q: want EdDSA", sk.Alg)
	}
	if sk.ID == "" {
		return nil, errors.New("no key id")
	}
	var priv ed25519.PrivateKey
	switch len(sk.Private) {
	case ed25519.SeedSize:
		priv = ed25519.NewKeyFromSeed(sk.Private)
	case ed25519.PrivateKeySize:
		priv = ed25519.NewKeyFromSeed(sk.Private[:ed25519.SeedSize])
		if !bytes.Equal(priv, sk.Private) {
			return nil, errors.New("private key halves do not match")
		}
	default:
		return nil, fmt.Errorf("private key of %d bytes: want an Ed25519 key", len(sk.Private))
	}
	pub := priv.Public().(ed25519.PublicKey)
	if len(sk.Public) > 0 && !bytes.Equal(pub, sk.Public) {
		return nil, errors.New("public key does not match the private key")
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"EdDSA", sk.ID, TokenType})
	if err != nil {
		return nil, err
	}
	jwk, err := json.Marshal(struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}{"OKP", "Ed25519", base64.RawURLEncoding.EncodeToString(pub), sk.ID, "EdDSA", "sig"})
	if err != nil {
		return nil, err
	}
	return &key{
		id:     sk.ID,
		start:  sk.CreatedAt,
		priv:   priv,
		header: base64.RawURLEncoding.AppendEncode(nil, header),
		jwk:    jwk,
	}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key
// (RFC 8037 section 2): SHA-256 over its required members in order.
func thumbprint(pub ed25519.PublicKey) string {
	h := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// JWKS returns the published public keys as a JWK Set: the key that signs
// now, a scheduled next one, and earlier ones whose assertions may still
// be valid.
func (s *Signer) JWKS() []byte {
	ks := s.set.Load()
	now := s.now()
	b := []byte(`{"keys":[`)
	n := 0
	for i, k := range ks.keys {
		if !ks.published(i, now) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, k.jwk...)
		n++
	}
	return append(b, "]}"...)
}

// Handler serves JWKS to GET and HEAD requests, cacheable for five
// minutes. Moat serves it at JWKSPath on every host, without
// authentication: the keys are public.
func (s *Signer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body := s.JWKS()
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "max-age="+strconv.Itoa(jwksMaxAge))
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	})
}
