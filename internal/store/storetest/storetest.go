// Package storetest opens real stores for tests of the packages built on
// the store: SQLite in the test's temporary directory, migrated, with a
// key ring under a fresh master key as its cipher, as moat serve opens it.
package storetest

import (
	"context"
	"testing"

	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/store"
)

// Open returns a migrated SQLite store whose sealed fields are encrypted
// by a key ring; it is closed when the test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mk, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	master, err := keyring.ParseMasterKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keyring.Open(ctx, st.DataKeys(), master, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.SetCipher(ring)
	return st
}
