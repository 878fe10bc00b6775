package assertion

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key set fetching.
const (
	refreshEvery = 5 * time.Minute // a known key set is fetched again this often
	retryEvery   = time.Minute     // after a failed refresh, and between fetches for unknown key ids
	firstRetry   = 5 * time.Second // between attempts while no key set was ever fetched
	maxJWKSSize  = 1 << 20
	maxKeys      = 100
)

// keySet holds the gateway's public keys by key id, fetched from url.
type keySet struct {
	url    string
	client *http.Client
	sem    chan struct{} // one fetch at a time

	mu          sync.Mutex
	keys        map[string]ed25519.PublicKey // nil until a fetch succeeds
	nextRefresh time.Time                    // fetch a known set again from then on
	nextUnknown time.Time                    // an unknown key id may cause a fetch from then on
}

func newKeySet(url string, client *http.Client) *keySet {
	return &keySet{url: url, client: client, sem: make(chan struct{}, 1)}
}

// get returns the key kid at now, fetching the set first when it is due
// or does not hold kid. A known key is still returned when a due refresh
// fails: keys do not go bad because the gateway is out of reach.
func (s *keySet) get(ctx context.Context, kid string, now time.Time) (ed25519.PublicKey, error) {
	s.mu.Lock()
	k, ok := s.keys[kid]
	due := !now.Before(s.nextRefresh)
	s.mu.Unlock()

	switch {
	case ok && !due:
		return k, nil
	case ok:
		// Refresh, unless another request already is.
		select {
		case s.sem <- struct{}{}:
			s.fetchLocked(ctx, now)
			<-s.sem
		default:
			return k, nil
		}
	default:
		// Wait for a fetch in flight, which may bring kid, before deciding.
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		err := s.fetchIfStill(ctx, kid, now)
		<-s.sem
		if err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	k, ok = s.keys[kid]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: unknown key id", ErrInvalid)
	}
	return k, nil
}

// fetchIfStill fetches the set for kid unless a fetch that ran while the
// caller waited for its turn already brought kid, or the throttle now
// forbids one. The caller holds sem.
func (s *keySet) fetchIfStill(ctx context.Context, kid string, now time.Time) error {
	s.mu.Lock()
	if _, ok := s.keys[kid]; ok {
		s.mu.Unlock()
		return nil
	}
	have := s.keys != nil
	var allowed bool
	if have {
		// An unknown key id: another key set may have been published.
		allowed = !now.Before(s.nextUnknown)
		if allowed {
			s.nextUnknown = now.Add(retryEvery)
		}
	} else {
		allowed = !now.Before(s.nextRefresh)
	}
	s.mu.Unlock()
	switch {
	case !allowed && !have:
		return fmt.Errorf("%w: fetching the key set failed recently", ErrUnavailable)
	case !allowed:
		return fmt.Errorf("%w: unknown key id", ErrInvalid)
	}
	return s.fetchLocked(ctx, now)
}

// fetchLocked fetches the set and, when that works, replaces the keys.
// The caller holds sem.
func (s *keySet) fetchLocked(ctx context.Context, now time.Time) error {
	keys, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.keys == nil {
			s.nextRefresh = now.Add(firstRetry)
		} else {
			s.nextRefresh = now.Add(retryEvery)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.keys = keys
	s.nextRefresh = now.Add(refreshEvery)
	return nil
}

// fetch reads the JWK Set and keeps its Ed25519 signing keys that have a
// key id; it fails when there is none.
func (s *keySet) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching key set: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching key set: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching key set: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("fetching key set: larger than %d bytes", maxJWKSSize)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("reading key set: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, raw := range set.Keys {
		if len(keys) == maxKeys {
			break
		}
		// Keys of other types, or malformed ones, are not for us.
		var k jose.JSONWebKey
		if k.UnmarshalJSON(raw) != nil || k.KeyID == "" || !k.Valid() {
			continue
		}
		if (k.Algorithm != "" && k.Algorithm != string(jose.EdDSA)) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if pub, ok := k.Key.(ed25519.PublicKey); ok && len(pub) == ed25519.PublicKeySize {
			keys[k.KeyID] = pub
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("reading key set: no Ed25519 signing key with a key id")
	}
	return keys, nil
}
