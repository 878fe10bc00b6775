package apikey

import (
	"context"
	"errors"
	"hash/crc32"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

// backend opens real stores of one kind. open returns a migrated store
// with a key ring, and reopen, which opens another Store on the same
// database with the same master key, as a second Moat instance would.
type backend struct {
	name string
	open func(t testing.TB) (st *store.Store, reopen func(t testing.TB) *store.Store)
}

var backends = []backend{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openAt opens a store, migrates it and sets a key ring under master on it.
func openAt(t testing.TB, o store.Options, master []byte) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, o)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating store: %v", err)
	}
	ring, err := keyring.Open(ctx, st.DataKeys(), master, nil)
	if err != nil {
		t.Fatalf("opening key ring: %v", err)
	}
	st.SetCipher(ring)
	return st
}

func newMaster(t testing.TB) []byte {
	t.Helper()
	mk, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	master, err := keyring.ParseMasterKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	return master
}

func openSQLite(t testing.TB) (*store.Store, func(t testing.TB) *store.Store) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	master := newMaster(t)
	st := openAt(t, store.Options{DataDir: dir}, master)
	return st, func(t testing.TB) *store.Store { return openAt(t, store.Options{DataDir: dir}, master) }
}

func openPostgres(t testing.TB) (*store.Store, func(t testing.TB) *store.Store) {
	t.Helper()
	url, schema := storetest.PostgresSchema(t, "moat_test_apikey_")
	master := newMaster(t)
	o := store.Options{URL: url, Schema: schema}
	st := openAt(t, o, master)
	return st, func(t testing.TB) *store.Store { return openAt(t, o, master) }
}

// newService returns a Service over st's keys with the pepper st keeps,
// as the server builds it; o.Keys and o.Pepper are filled in.
func newService(t testing.TB, st *store.Store, o Options) *Service {
	t.Helper()
	pepper, err := st.Secrets().GetOrCreate(context.Background(), "apikey.pepper", 32)
	if err != nil {
		t.Fatalf("getting pepper: %v", err)
	}
	if o.Keys == nil {
		o.Keys = st.APIKeys()
	}
	o.Pepper = pepper
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newClock() *testclock.Clock {
	return testclock.New(time.Now().UTC().Truncate(time.Second))
}

// countingKeys is the real store's keys, counting the reads and able to
// fail Touch, to show what Verify asks of the store.
type countingKeys struct {
	store.APIKeys
	reads     atomic.Int64
	touches   atomic.Int64
	failTouch atomic.Bool
}

func (c *countingKeys) GetByPrefix(ctx context.Context, prefix string) (*store.APIKey, error) {
	c.reads.Add(1)
	return c.APIKeys.GetByPrefix(ctx, prefix)
}

func (c *countingKeys) Touch(ctx context.Context, id string, at time.Time) error {
	c.touches.Add(1)
	if c.failTouch.Load() {
		return errors.New("touch failed on purpose")
	}
	return c.APIKeys.Touch(ctx, id, at)
}

// wantReason fails t unless err is ErrInvalid with the reason want.
func wantReason(t testing.TB, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got error %v, want ErrInvalid (%s)", err, want)
	}
	if got := Reason(err); got != want {
		t.Fatalf("got reason %q (%v), want %q", got, err, want)
	}
}

// mustVerify verifies key and fails t if it is refused.
func mustVerify(t testing.TB, s *Service, key string) *store.APIKey {
	t.Helper()
	rec, err := s.Verify(context.Background(), key)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rec
}

// withChecksum returns body (everything before the checksum) with its
// correct checksum appended.
func withChecksum(body string) string {
	var c [checkLen]byte
	putChecksum(c[:], crc32.ChecksumIEEE([]byte(body)))
	return body + string(c[:])
}
