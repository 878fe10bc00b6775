package audit

import (
	"context"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
)

// backend opens audit stores of one kind: open makes a fresh migrated
// store, and a second function that opens another store on the same
// database, as a second Moat instance would.
type backend struct {
	name string
	open func(t testing.TB) (*store.Store, func() *store.Store)
}

var backends = []backend{
	{store.BackendSQLite, openSQLite},
	{store.BackendPostgres, openPostgres},
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// withCipher gives st a key ring under a fresh master key, for the
// secret the checkpoint key comes from.
func withCipher(t testing.TB, st *store.Store, master []byte) {
	t.Helper()
	ring, err := keyring.Open(context.Background(), st.DataKeys(), master, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.SetCipher(ring)
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

func openSQLite(t testing.TB) (*store.Store, func() *store.Store) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	master := newMaster(t)
	open := func() *store.Store {
		t.Helper()
		st, err := store.Open(context.Background(), store.Options{DataDir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		withCipher(t, st, master)
		return st
	}
	return open(), open
}

func openPostgres(t testing.TB) (*store.Store, func() *store.Store) {
	t.Helper()
	url, schema := storetest.PostgresSchema(t, "moat_test_audit_")
	master := newMaster(t)
	open := func() *store.Store {
		t.Helper()
		st, err := store.Open(context.Background(), store.Options{URL: url, Schema: schema, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		withCipher(t, st, master)
		return st
	}
	return open(), open
}

// newWriter starts a Writer on st with the checkpoint key of st, closed
// at the end of the test.
func newWriter(t testing.TB, st *store.Store, o Options) *Writer {
	t.Helper()
	if o.Signer == nil {
		o.Signer = loadSigner(t, st)
	}
	o.Store = st.Audit()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	w, err := NewWriter(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func loadSigner(t testing.TB, st *store.Store) *Signer {
	t.Helper()
	s, err := LoadSigner(context.Background(), st.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sampleEvent is event i of a test.
func sampleEvent(i int, at time.Time) event.Event {
	return event.Event{
		Time:      at,
		Kind:      "request.denied",
		Outcome:   event.Denied,
		Principal: "alice",
		ClientIP:  "198.51.100.7",
		Route:     "/api/items",
		RequestID: "req-" + hex.EncodeToString([]byte{byte(i >> 8), byte(i)}),
		Rule:      "ratelimit.ip",
		Details:   map[string]string{"limit": "100/m"},
	}
}

// countEvents returns the number of records in the log that are not
// checkpoints.
func countEvents(t testing.TB, st *store.Store) (events, checkpoints int) {
	t.Helper()
	var after int64
	for {
		recs, err := st.Audit().List(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return events, checkpoints
		}
		for _, r := range recs {
			if r.Kind == KindCheckpoint {
				checkpoints++
			} else {
				events++
			}
		}
		after = recs[len(recs)-1].Seq
	}
}

// verify runs Verify and fails the test on a read error.
func verify(t testing.TB, st *store.Store, s *Signer) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), st.Audit(), s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
