package keyring

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// memKeys is an in-memory store.DataKeys. It can be told to fail Update
// after a number of successful calls, to interrupt a rotation half way.
type memKeys struct {
	mu      sync.Mutex
	keys    []*store.DataKey
	updates int
	// failUpdatesAfter, when not negative, makes Update fail once that
	// many calls have succeeded.
	failUpdatesAfter int
}

var errStoreDown = errors.New("store unavailable")

func newMemKeys() *memKeys { return &memKeys{failUpdatesAfter: -1} }

func cloneKey(k *store.DataKey) *store.DataKey {
	c := *k
	c.Wrapped = bytes.Clone(k.Wrapped)
	return &c
}

func (m *memKeys) List(ctx context.Context) ([]*store.DataKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*store.DataKey, len(m.keys))
	for i, k := range m.keys {
		out[i] = cloneKey(k)
	}
	return out, nil
}

func (m *memKeys) Create(ctx context.Context, k *store.DataKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.keys {
		if e.ID == k.ID {
			return store.ErrConflict
		}
	}
	m.keys = append(m.keys, cloneKey(k))
	return nil
}

func (m *memKeys) Update(ctx context.Context, k *store.DataKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failUpdatesAfter >= 0 && m.updates >= m.failUpdatesAfter {
		return errStoreDown
	}
	for _, e := range m.keys {
		if e.ID == k.ID {
			e.Wrapped = bytes.Clone(k.Wrapped)
			e.KEKID = k.KEKID
			e.State = k.State
			m.updates++
			return nil
		}
	}
	return store.ErrNotFound
}

// failUpdatesAfterNow makes Update fail after n more successful calls.
func (m *memKeys) failUpdatesAfterNow(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failUpdatesAfter = m.updates + n
}

func (m *memKeys) healUpdates() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failUpdatesAfter = -1
}

// edit changes the stored record of key id in place.
func (m *memKeys) edit(t *testing.T, id string, f func(*store.DataKey)) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.keys, func(k *store.DataKey) bool { return k.ID == id })
	if i < 0 {
		t.Fatalf("no stored data key %s", id)
	}
	f(m.keys[i])
}

// states maps each stored key id to its state.
func (m *memKeys) states() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.keys))
	for _, k := range m.keys {
		out[k.ID] = k.State
	}
	return out
}

func (m *memKeys) kekIDs() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.keys))
	for _, k := range m.keys {
		out[k.ID] = k.KEKID
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newMaster(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMasterKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openRing(t testing.TB, keys store.DataKeys, master []byte) *Ring {
	t.Helper()
	r, err := Open(context.Background(), keys, master, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

func seal(t testing.TB, r *Ring, plaintext string, aad []byte) []byte {
	t.Helper()
	ct, err := r.Seal([]byte(plaintext), aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return ct
}

func mustOpen(t testing.TB, r *Ring, ct, aad []byte, want string) {
	t.Helper()
	got, err := r.Open(ct, aad)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if string(got) != want {
		t.Fatalf("Open = %q, want %q", got, want)
	}
}
