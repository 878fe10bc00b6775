// Package keyring encrypts Moat's secrets at rest with envelope encryption.
//
// A master key, kept outside the data directory, yields a key-encryption
// key (KEK) through HKDF-SHA-256. The KEK wraps a small set of random data
// keys with AES-256-GCM; the wrapped keys live in the store. The data keys
// seal field values with AES-256-GCM, each value bound to its table, column
// and record id (see store.FieldAAD) and carrying the id of the data key
// that sealed it. A Ring holds the unwrapped data keys in memory and
// implements store.Cipher.
//
// Exactly one data key is active: new values are sealed with it. Rotation
// makes a new active key and marks the previous one retiring while stored
// values are re-encrypted, then retired. Retired keys are kept and stay
// readable, because backups taken before the rotation hold values sealed
// with them; no data key is ever deleted.
package keyring

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// Data key states, as stored in store.DataKey.State.
const (
	// StateActive marks the one key new values are sealed with.
	StateActive = "active"
	// StateRetiring marks a key being rotated away: values sealed with it
	// are still being re-encrypted.
	StateRetiring = "retiring"
	// StateRetired marks a key whose rotation is complete. It still opens
	// values, such as those in backups taken before the rotation.
	StateRetired = "retired"
)

const dataKeySize = 32

// ErrWrongMasterKey means a data key cannot be unwrapped with the master
// key given: it was wrapped under another one, or its stored form is
// damaged. Moat refuses to start rather than run without its secrets.
var ErrWrongMasterKey = errors.New("the master key does not match the key ring: check keys.master_key")

// KeyInfo describes one data key, for listing. It holds no key material.
type KeyInfo struct {
	ID        string
	State     string // StateActive, StateRetiring or StateRetired
	CreatedAt time.Time
	KEKID     string // fingerprint of the master key that wraps it
}

// Ring is the set of data keys, unwrapped in memory. It implements
// store.Cipher. Make one with Open or OpenWithPrevious. All its methods are safe for concurrent use: sealing and
// opening read an immutable snapshot of the keys, which Rotate,
// FinishRotation, RewrapKEK and Reload replace atomically.
type Ring struct {
	keys   store.DataKeys
	logger *slog.Logger
	set    atomic.Pointer[keySet]

	mu   sync.Mutex      // serializes the methods that change the ring
	kek  *kek            // wraps new data keys; guarded by mu
	keks map[string]*kek // every key-encryption key known, by id; guarded by mu
}

// dataKey is one unwrapped data key. It is never modified once it is part
// of a keySet; a change of state makes a copy.
type dataKey struct {
	id      string
	state   string
	created time.Time
	kekID   string
	wrapped []byte
	secret  []byte
	aead    cipher.AEAD // cached: creating it costs more than sealing a field
}

func (k *dataKey) record() *store.DataKey {
	return &store.DataKey{ID: k.id, Wrapped: k.wrapped, KEKID: k.kekID, CreatedAt: k.created, State: k.state}
}

func (k *dataKey) with(state string) *dataKey {
	c := *k
	c.state = state
	return &c
}

// keySet is an immutable snapshot of the ring.
type keySet struct {
	byID   map[string]*dataKey
	sorted []*dataKey // oldest first
	active *dataKey
	kekID  string // the KEK new data keys are wrapped with
}

func newKeySet(keys []*dataKey, kekID string) *keySet {
	s := &keySet{byID: make(map[string]*dataKey, len(keys)), sorted: slices.Clone(keys), kekID: kekID}
	slices.SortFunc(s.sorted, compareAge)
	for _, k := range s.sorted {
		s.byID[k.id] = k
		if k.state == StateActive {
			s.active = k
		}
	}
	return s
}

// compareAge orders keys oldest first, by id when created at the same time.
func compareAge(a, b *dataKey) int {
	if c := a.created.Compare(b.created); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// Open loads the key ring from keys and unwraps every data key with the
// key-encryption key derived from master (see ParseMasterKey). On an empty
// store it creates the first data key. It fails with ErrWrongMasterKey if
// any data key cannot be unwrapped: Moat must not run with secrets it
// cannot read. A nil logger discards.
func Open(ctx context.Context, keys store.DataKeys, master []byte, logger *slog.Logger) (*Ring, error) {
	return OpenWithPrevious(ctx, keys, master, nil, logger)
}

// OpenWithPrevious is Open for a ring whose data keys may be wrapped under
// either of two master keys: each key is unwrapped with the one its KEK id
// names. It resumes an interrupted RewrapKEK. New data keys are wrapped
// under master. previous may be nil.
func OpenWithPrevious(ctx context.Context, keys store.DataKeys, master, previous []byte, logger *slog.Logger) (*Ring, error) {
	if keys == nil {
		return nil, errors.New("opening key ring: no data key store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	primary, err := newKEK(master)
	if err != nil {
		return nil, fmt.Errorf("opening key ring: %w", err)
	}
	r := &Ring{
		keys:   keys,
		logger: logger.With("component", "keyring"),
		kek:    primary,
		keks:   map[string]*kek{primary.id: primary},
	}
	if previous != nil {
		p, err := newKEK(previous)
		if err != nil {
			return nil, fmt.Errorf("opening key ring: previous %w", err)
		}
		r.keks[p.id] = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.load(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("opening key ring: %w", err)
	}
	if n == 0 {
		k, err := r.create(ctx, StateActive)
		if err != nil {
			return nil, fmt.Errorf("opening key ring: %w", err)
		}
		r.logger.Info("created the first data key", "key_id", k.id, "kek_id", k.kekID)
		// Load again rather than use k alone: another instance sharing the
		// store may have created its own first key at the same moment, and
		// load settles which one is active the same way everywhere.
		if _, err := r.load(ctx, true); err != nil {
			return nil, fmt.Errorf("opening key ring: %w", err)
		}
	}
	return r, nil
}

// Reload reads the data keys again, so that a ring sees keys created or
// rotated elsewhere: by `moat keys rotate` or by another instance sharing
// the database. Keys already in memory are kept as they are (only their
// state is updated), so a ring still works after the data keys were
// re-wrapped under a new master key; a new key that cannot be unwrapped
// fails with ErrWrongMasterKey and the ring keeps its previous keys.
// Reload writes nothing.
func (r *Ring) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.load(ctx, false); err != nil {
		return fmt.Errorf("reloading key ring: %w", err)
	}
	return nil
}

// load reads the data keys from the store, unwraps those not yet in memory,
// makes exactly one key active and swaps the result in. With repair, a
// fix to the states (see settle) is written back. It returns the number of
// keys loaded; with none, the ring is left as it was. r.mu must be held.
func (r *Ring) load(ctx context.Context, repair bool) (int, error) {
	stored, err := r.keys.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("loading data keys: %w", err)
	}
	if len(stored) == 0 {
		return 0, nil
	}
	prev := r.set.Load()
	keys := make([]*dataKey, 0, len(stored))
	seen := make(map[string]bool, len(stored))
	for _, sk := range stored {
		if err := checkRecord(sk); err != nil {
			return 0, err
		}
		if seen[sk.ID] {
			return 0, fmt.Errorf("data key %s is stored twice", sk.ID)
		}
		seen[sk.ID] = true
		if prev != nil {
			if k, ok := prev.byID[sk.ID]; ok {
				c := *k
				c.state, c.kekID, c.wrapped, c.created = sk.State, sk.KEKID, sk.Wrapped, sk.CreatedAt
				keys = append(keys, &c)
				continue
			}
		}
		k, err := r.unwrap(sk)
		if err != nil {
			return 0, err
		}
		keys = append(keys, k)
	}
	if prev != nil {
		for _, k := range prev.sorted {
			if !seen[k.id] {
				r.logger.Warn("a data key has disappeared from the store; values sealed with it can no longer be opened", "key_id", k.id)
			}
		}
	}
	keys, fixed := r.settle(keys)
	if repair {
		for _, k := range fixed {
			if err := r.keys.Update(ctx, k.record()); err != nil {
				return 0, fmt.Errorf("marking data key %s %s: %w", k.id, k.state, err)
			}
		}
	}
	r.set.Store(newKeySet(keys, r.kek.id))
	return len(keys), nil
}

// settle makes exactly one key active. Several active keys are what an
// interrupted Rotate leaves (the new key is stored before the old one is
// marked retiring), and two instances may each create a first key at the
// same time: the newest stays active and the others become retiring, so
// that a rotation re-encrypts what they sealed. With no active key at all,
// the newest becomes active. It returns the keys and those it changed.
func (r *Ring) settle(keys []*dataKey) (all, fixed []*dataKey) {
	newest := -1
	actives := 0
	for i, k := range keys {
		if k.state == StateActive {
			actives++
			if newest < 0 || compareAge(k, keys[newest]) > 0 {
				newest = i
			}
		}
	}
	switch {
	case actives == 1:
		return keys, nil
	case actives == 0:
		for i, k := range keys {
			if newest < 0 || compareAge(k, keys[newest]) > 0 {
				newest = i
			}
		}
		keys[newest] = keys[newest].with(StateActive)
		r.logger.Warn("no data key is active; making the newest one active", "key_id", keys[newest].id)
		return keys, []*dataKey{keys[newest]}
	}
	for i, k := range keys {
		if k.state == StateActive && i != newest {
			keys[i] = k.with(StateRetiring)
			fixed = append(fixed, keys[i])
		}
	}
	r.logger.Warn("several data keys are active, as after an interrupted rotation; keeping the newest active and marking the others retiring",
		"key_id", keys[newest].id, "retiring", len(fixed))
	return keys, fixed
}

// checkRecord rejects a stored data key that Moat could not have written.
func checkRecord(sk *store.DataKey) error {
	if !validKeyID(sk.ID) {
		return fmt.Errorf("a data key has an invalid id %q", sk.ID)
	}
	switch sk.State {
	case StateActive, StateRetiring, StateRetired:
	default:
		return fmt.Errorf("data key %s has an unknown state %q", sk.ID, sk.State)
	}
	return nil
}

// validKeyID reports whether id can be a data key id: 1 to 64 ASCII
// letters, digits, '_' or '-'. It fits the one-byte length of the
// ciphertext header and is safe to print.
func validKeyID[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

const maxKeyIDLen = 64

// unwrap unwraps a stored data key with the KEK its record names.
func (r *Ring) unwrap(sk *store.DataKey) (*dataKey, error) {
	kk, ok := r.keks[sk.KEKID]
	if !ok {
		known := make([]string, 0, len(r.keks))
		for id := range r.keks {
			known = append(known, id)
		}
		slices.Sort(known)
		return nil, fmt.Errorf("data key %s is wrapped under master key %s, not under %s: %w",
			sk.ID, sk.KEKID, strings.Join(known, " or "), ErrWrongMasterKey)
	}
	secret, err := kk.unwrap(sk.ID, sk.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("data key %s does not unwrap under master key %s (its record is damaged or was altered): %w",
			sk.ID, kk.id, ErrWrongMasterKey)
	}
	aead, err := newAEAD(secret)
	if err != nil {
		return nil, err
	}
	return &dataKey{id: sk.ID, state: sk.State, created: sk.CreatedAt, kekID: sk.KEKID, wrapped: sk.Wrapped, secret: secret, aead: aead}, nil
}

// create makes a new data key, wraps it under r.kek and stores it. It does
// not add it to the ring. r.mu must be held.
func (r *Ring) create(ctx context.Context, state string) (*dataKey, error) {
	secret := make([]byte, dataKeySize)
	rand.Read(secret) // never fails since Go 1.24
	aead, err := newAEAD(secret)
	if err != nil {
		return nil, err
	}
	id := "dk_" + strings.ToLower(rand.Text()[:10])
	k := &dataKey{
		id:      id,
		state:   state,
		created: time.Now().UTC(),
		kekID:   r.kek.id,
		wrapped: r.kek.wrap(id, secret),
		secret:  secret,
		aead:    aead,
	}
	if err := r.keys.Create(ctx, k.record()); err != nil {
		return nil, fmt.Errorf("storing new data key: %w", err)
	}
	return k, nil
}

// Keys lists the data keys, oldest first.
func (r *Ring) Keys() []KeyInfo {
	s := r.set.Load()
	out := make([]KeyInfo, len(s.sorted))
	for i, k := range s.sorted {
		out[i] = KeyInfo{ID: k.id, State: k.state, CreatedAt: k.created, KEKID: k.kekID}
	}
	return out
}

// KEKID is the fingerprint of the master key new data keys are wrapped
// under (see MasterKeyID).
func (r *Ring) KEKID() string { return r.set.Load().kekID }

// RotationInProgress reports whether a data key is retiring: a rotation
// has started and FinishRotation has not been called yet.
func (r *Ring) RotationInProgress() bool {
	for _, k := range r.set.Load().sorted {
		if k.state == StateRetiring {
			return true
		}
	}
	return false
}
