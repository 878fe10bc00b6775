package passkey

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/testclock"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/store"
)

const (
	testRPID   = "localhost"
	testOrigin = "https://localhost:8443"
)

// clock is a settable clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) }

// env is a Service over a real SQLite store with an encrypting key ring,
// and two users.
type env struct {
	svc        *Service
	st         *store.Store
	creds      CredentialStore
	clock      *clock
	alice, bob *store.User
}

type envOption func(*Options)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	logger := testLogger(t)
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	encoded, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	master, err := keyring.ParseMasterKey(encoded)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keyring.Open(ctx, st.DataKeys(), master, logger)
	if err != nil {
		t.Fatal(err)
	}
	st.SetCipher(ring)

	e := &env{st: st, creds: renamingStore{st.Credentials(), st.DB()}, clock: newClock()}
	e.alice = mustUser(t, st, "alice", "Alice Liddell")
	e.bob = mustUser(t, st, "bob", "")
	o := Options{
		RPID:          testRPID,
		RPOrigins:     []string{testOrigin},
		RPDisplayName: "Moat test",
		Credentials:   e.creds,
		Users:         st.Users(),
		Now:           e.clock.Now,
		Logger:        logger,
	}
	for _, f := range opts {
		f(&o)
	}
	e.creds = o.Credentials
	if e.svc, err = New(o); err != nil {
		t.Fatal(err)
	}
	return e
}

func testLogger(t testing.TB) *slog.Logger {
	if tt, ok := t.(*testing.T); ok {
		return slog.New(slog.NewTextHandler(tt.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func mustUser(t testing.TB, st *store.Store, name, display string) *store.User {
	t.Helper()
	u := &store.User{Username: name, DisplayName: display, Email: name + "@example.com"}
	if err := st.Users().Create(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// newAuthenticator returns a software passkey for the test relying party.
func newAuthenticator(t testing.TB) *passkeytest.Authenticator {
	t.Helper()
	return passkeytest.New(t, testRPID, testOrigin)
}

// register runs a registration ceremony for u with a, its answer bent by
// tweaks, and fails the test if it does not succeed.
func (e *env) register(t testing.TB, u *store.User, a *passkeytest.Authenticator, name string, tweaks ...passkeytest.Tweak) *store.Credential {
	t.Helper()
	ctx := context.Background()
	opts, id, err := e.svc.BeginRegistration(ctx, u)
	if err != nil {
		t.Fatalf("BeginRegistration: %v", err)
	}
	c, err := e.svc.FinishRegistration(ctx, id, u, name, a.Create(opts, tweaks...))
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return c
}

// beginLogin begins a login (u nil: passwordless) and fails the test on error.
func (e *env) beginLogin(t testing.TB, u *store.User) (options []byte, ceremonyID string) {
	t.Helper()
	opts, id, err := e.svc.BeginLogin(context.Background(), u)
	if err != nil {
		t.Fatalf("BeginLogin: %v", err)
	}
	return opts, id
}

// stored returns the credential record of u's passkey id as stored, with
// the sign count the store keeps beside it.
func (e *env) stored(t testing.TB, u *store.User, id string) webauthn.Credential {
	t.Helper()
	all, err := e.creds.ListByUser(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(c *store.Credential) bool { return c.ID == id })
	if i < 0 {
		t.Fatalf("passkey %s of %s not stored", id, u.Username)
	}
	var wc webauthn.Credential
	if err := json.Unmarshal(all[i].Secret, &wc); err != nil {
		t.Fatal(err)
	}
	wc.Authenticator.SignCount = uint32(all[i].Counter)
	return wc
}

// The store's credentials are a CredentialStore as they are.
var _ CredentialStore = store.Credentials(nil)

// renamingStore adds Rename to the store's credentials, for tests only: it
// deletes the row and creates it again with the same id, counter and dates.
// The store itself cannot rename yet.
type renamingStore struct {
	store.Credentials
	db *sql.DB
}

func (s renamingStore) Rename(ctx context.Context, id, name string) error {
	var userID string
	if err := s.db.QueryRowContext(ctx, `SELECT user_id FROM credentials WHERE id = $1`, id).Scan(&userID); err != nil {
		return store.ErrNotFound
	}
	all, err := s.ListByUser(ctx, userID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(c *store.Credential) bool { return c.ID == id })
	if i < 0 {
		return store.ErrNotFound
	}
	if err := s.Delete(ctx, id); err != nil {
		return err
	}
	all[i].Name = name
	return s.Create(ctx, all[i])
}

// memCredentials is an in-memory CredentialStore that can be made to fail.
type memCredentials struct {
	mu         sync.Mutex
	m          map[string]store.Credential
	failList   error
	failWrite  error
	beforeList func() // called first by ListByUser, to line up racing logins
}

func newMemCredentials() *memCredentials {
	return &memCredentials{m: make(map[string]store.Credential)}
}

func (m *memCredentials) ListByUser(_ context.Context, userID string) ([]*store.Credential, error) {
	if m.beforeList != nil {
		m.beforeList()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failList != nil {
		return nil, m.failList
	}
	var out []*store.Credential
	for _, c := range m.m {
		if c.UserID == userID {
			cp := c
			out = append(out, &cp)
		}
	}
	slices.SortFunc(out, func(a, b *store.Credential) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (m *memCredentials) Create(_ context.Context, c *store.Credential) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWrite != nil {
		return m.failWrite
	}
	if _, ok := m.m[c.ID]; ok {
		return store.ErrConflict
	}
	m.m[c.ID] = *c
	return nil
}

// update applies f to credential id under the lock.
func (m *memCredentials) update(id string, f func(*store.Credential) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWrite != nil {
		return m.failWrite
	}
	c, ok := m.m[id]
	if !ok {
		return store.ErrNotFound
	}
	if err := f(&c); err != nil {
		return err
	}
	m.m[id] = c
	return nil
}

func (m *memCredentials) AdvanceCounter(_ context.Context, id string, n int64, at time.Time) error {
	return m.update(id, func(c *store.Credential) error {
		if n <= c.Counter {
			return store.ErrConflict
		}
		c.Counter, c.LastUsedAt = n, at
		return nil
	})
}

func (m *memCredentials) UpdateSecret(_ context.Context, id string, secret []byte) error {
	return m.update(id, func(c *store.Credential) error { c.Secret = secret; return nil })
}

func (m *memCredentials) Touch(_ context.Context, id string, at time.Time) error {
	return m.update(id, func(c *store.Credential) error { c.LastUsedAt = at; return nil })
}

func (m *memCredentials) Rename(_ context.Context, id, name string) error {
	return m.update(id, func(c *store.Credential) error { c.Name = name; return nil })
}

func (m *memCredentials) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWrite != nil {
		return m.failWrite
	}
	if _, ok := m.m[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.m, id)
	return nil
}

// barrier returns a function that blocks until n callers have called it
// (or a few seconds have passed, so a broken test cannot hang).
func barrier(n int) func() {
	var (
		mu    sync.Mutex
		count int
		all   = make(chan struct{})
	)
	return func() {
		mu.Lock()
		if count++; count == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
	}
}

// wantRefused fails the test unless err is a refusal for reason.
func wantRefused(t testing.TB, err, reason error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refusal %q", reason)
	}
	if !errors.Is(err, ErrRefused) || !errors.Is(err, reason) {
		t.Fatalf("error %q; want refusal %q", err, reason)
	}
}
