package passkey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

// CeremonyStore keeps ceremony state between the begin and finish steps.
// The data is opaque to it; it never comes from the client. A shared
// implementation (Redis: SET id data PXAT expires NX, then GETDEL id) lets a
// ceremony finish on any instance of a cluster; it must bound what it holds
// as the in-process one does. Methods must be safe for concurrent use.
type CeremonyStore interface {
	// Put stores data under id until expires. It returns
	// ErrTooManyCeremonies when the store is full.
	Put(ctx context.Context, id string, data []byte, expires time.Time) error
	// Take removes the data under id and returns it, so that a ceremony
	// finishes at most once, however many requests race for it. It returns
	// ErrNoCeremony when there is none. An expired entry may be returned or
	// may already be gone; the Service checks expiry itself.
	Take(ctx context.Context, id string) ([]byte, error)
}

// Ceremony purposes.
const (
	purposeRegister = "register"
	purposeLogin    = "login"
)

// ceremony is the state of one ceremony, as stored.
type ceremony struct {
	Purpose string               `json:"purpose"`
	UserID  string               `json:"user,omitempty"` // empty for a discoverable login
	Expires time.Time            `json:"expires"`
	Session webauthn.SessionData `json:"session"`
}

// put stores c under a new ceremony id and returns the id.
func (s *Service) put(ctx context.Context, c *ceremony) (string, error) {
	c.Expires = s.now().Add(s.ttl)
	data, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding ceremony: %w", err)
	}
	id := newCeremonyID()
	if err := s.ceremonies.Put(ctx, id, data, c.Expires); err != nil {
		if errors.Is(err, ErrTooManyCeremonies) {
			s.log.Warn("ceremony store full: refusing new ceremonies")
			return "", ErrTooManyCeremonies
		}
		return "", fmt.Errorf("storing ceremony: %w", err)
	}
	return id, nil
}

// ceremonyIDLen is the length of a ceremony id: 16 bytes in base64url.
const ceremonyIDLen = 22

// take removes the ceremony id and checks that it serves purpose and has
// not expired. Whatever the outcome, the ceremony cannot be used again.
func (s *Service) take(ctx context.Context, id, purpose string) (*ceremony, error) {
	if len(id) != ceremonyIDLen {
		return nil, refuse(ErrNoCeremony, nil)
	}
	data, err := s.ceremonies.Take(ctx, id)
	if errors.Is(err, ErrNoCeremony) {
		return nil, refuse(ErrNoCeremony, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("loading ceremony: %w", err)
	}
	var c ceremony
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decoding ceremony: %w", err)
	}
	if !s.now().Before(c.Expires) {
		return nil, refuse(ErrCeremonyExpired, nil)
	}
	if c.Purpose != purpose {
		return nil, refuse(ErrCeremonyMismatch, nil)
	}
	return &c, nil
}

// memoryCeremonies is the in-process CeremonyStore: a map bounded to max
// entries. Expired entries are swept at most once a minute, or once a
// second while the map is full, so a full map of live ceremonies costs a
// refused Put, not a scan per request.
type memoryCeremonies struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	m     map[string]memoryCeremony
	swept time.Time
}

type memoryCeremony struct {
	data    []byte
	expires time.Time
}

func newMemoryCeremonies(max int, now func() time.Time) *memoryCeremonies {
	return &memoryCeremonies{max: max, now: now, m: make(map[string]memoryCeremony)}
}

func (c *memoryCeremonies) Put(_ context.Context, id string, data []byte, expires time.Time) error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	full := len(c.m) >= c.max
	if now.Sub(c.swept) >= time.Minute || (full && now.Sub(c.swept) >= time.Second) {
		c.sweep(now)
		full = len(c.m) >= c.max
	}
	if full {
		return ErrTooManyCeremonies
	}
	if _, taken := c.m[id]; taken {
		return fmt.Errorf("ceremony id %s already in use", id)
	}
	c.m[id] = memoryCeremony{data: data, expires: expires}
	return nil
}

func (c *memoryCeremonies) sweep(now time.Time) {
	for id, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, id)
		}
	}
	c.swept = now
}

func (c *memoryCeremonies) Take(_ context.Context, id string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return nil, ErrNoCeremony
	}
	delete(c.m, id)
	return e.data, nil
}

// Len is the number of ceremonies held, expired ones not yet swept
// included.
func (c *memoryCeremonies) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
