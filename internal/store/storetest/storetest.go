// Package storetest opens real stores for tests of the packages built on
// the store: SQLite in the test's temporary directory, migrated, with a
// key ring under a fresh master key as its cipher, as moat serve opens it.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// PostgresURLEnv names the environment variable with the URL of the
// PostgreSQL server tests use.
const PostgresURLEnv = "MOAT_TEST_POSTGRES_URL"

// PostgresSchema returns the test PostgreSQL server's URL and the name of
// a fresh schema, prefix followed by random hex, which is dropped when the
// test ends (after the stores the test opened on it are closed, if they
// were opened after this call). Without PostgresURLEnv it skips the test,
// and fails it under CI, which must run every test.
func PostgresSchema(t testing.TB, prefix string) (url, schema string) {
	t.Helper()
	url = os.Getenv(PostgresURLEnv)
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests", PostgresURLEnv)
		}
		t.Skipf("%s is not set: skipping PostgreSQL tests", PostgresURLEnv)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema = prefix + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("dropping schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil { //sqlcheck:ok the schema name is random hex made here, quoted as an identifier
			t.Errorf("dropping schema: %v", err)
		}
	})
	return url, schema
}
