package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The conformance suite runs every test of conformanceTests against each
// backend: SQLite in a temporary directory always, PostgreSQL when
// MOAT_TEST_POSTGRES_URL is set (each test in a fresh schema of its own).

const postgresURLEnv = "MOAT_TEST_POSTGRES_URL"

// backend makes stores of one kind for the tests.
type backend struct {
	name string
	// open opens a new, empty, unmigrated store.
	open func(t testing.TB) *Store
	// reopen opens another Store on the same database as s.
	reopen func(t testing.TB, s *Store) *Store
}

// storeTarget remembers where a test store lives, for reopen.
type storeTarget struct {
	dir, schema string
}

var (
	targetsMu sync.Mutex
	targets   = map[*Store]storeTarget{}
)

func setTarget(s *Store, st storeTarget) {
	targetsMu.Lock()
	targets[s] = st
	targetsMu.Unlock()
}

func target(s *Store) storeTarget {
	targetsMu.Lock()
	defer targetsMu.Unlock()
	return targets[s]
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var sqliteBackend = backend{
	name: BackendSQLite,
	open: func(t testing.TB) *Store {
		t.Helper()
		dir := t.TempDir()
		// The data directory Moat makes is 0700; t.TempDir is 0755 and
		// Open would tighten it with a warning.
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return openSQLiteAt(t, dir)
	},
	reopen: func(t testing.TB, s *Store) *Store {
		t.Helper()
		return openSQLiteAt(t, target(s).dir)
	},
}

func openSQLiteAt(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	setTarget(s, storeTarget{dir: dir})
	t.Cleanup(func() { s.Close() })
	return s
}

// postgresURL returns the test server's URL, skipping the test when it is
// not set, or failing it under CI, which must run every test.
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(postgresURLEnv)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests", postgresURLEnv)
		}
		t.Skipf("%s is not set: skipping PostgreSQL tests", postgresURLEnv)
	}
	return u
}

var postgresBackend = backend{
	name: BackendPostgres,
	open: func(t testing.TB) *Store {
		t.Helper()
		return openPostgresAt(t, freshSchema(t))
	},
	reopen: func(t testing.TB, s *Store) *Store {
		t.Helper()
		return openPostgresAt(t, target(s).schema)
	},
}

// freshSchema names a new schema for the test and drops it at cleanup.
func freshSchema(t testing.TB) string {
	t.Helper()
	url := postgresURL(t)
	var b [8]byte
	rand.Read(b[:])
	schema := "moat_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("dropping schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil { //sqlcheck:ok test: table and column names are constants of the test
			t.Errorf("dropping schema: %v", err)
		}
	})
	return schema
}

func openPostgresAt(t testing.TB, schema string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{URL: postgresURL(t), Schema: schema, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	setTarget(s, storeTarget{schema: schema})
	// Registered after freshSchema's cleanup, so it runs before the drop.
	t.Cleanup(func() { s.Close() })
	return s
}

var backends = []backend{sqliteBackend, postgresBackend}

// newStore opens a migrated store with a test cipher set.
func newStore(t testing.TB, b backend) (*Store, *testCipher) {
	t.Helper()
	s := b.open(t)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := newTestCipher(t, "k1")
	s.SetCipher(c)
	return s, c
}

type conformanceTest struct {
	name string
	run  func(t *testing.T, b backend)
}

// conformanceTests is the suite, every test written once for both backends.
var conformanceTests = []conformanceTest{
	{"Users", testUsers},
	{"Credentials", testCredentials},
	{"Identities", testIdentities},
	{"Sessions", testSessions},
	{"APIKeys", testAPIKeys},
	{"SigningKeys", testSigningKeys},
	{"Secrets", testSecrets},
	{"Audit", testAudit},
	{"Backups", testBackups},
	{"DataKeys", testDataKeys},
	{"CascadeDelete", testCascadeDelete},
	{"EncryptedAtRest", testEncryptedAtRest},
	{"MovedCiphertext", testMovedCiphertext},
	{"TamperedCiphertext", testTamperedCiphertext},
	{"NoCipher", testNoCipher},
	{"Reencrypt", testReencrypt},
	{"ReencryptResumes", testReencryptResumes},
	{"ReencryptWrongHint", testReencryptWrongHint},
	{"ReencryptConcurrentWrite", testReencryptConcurrentWrite},
	{"ExportImport", testExportImport},
	{"ImportRefused", testImportRefused},
	{"Wipe", testWipe},
	{"TablesMatchSchema", testTablesMatchSchema},
	{"Check", testCheck},
	{"MigrateIdempotent", testMigrateIdempotent},
	{"MigrationStatus", testMigrationStatus},
	{"MigrationChecksum", testMigrationChecksum},
	{"MigrationNewer", testMigrationNewer},
	{"MigrationAdded", testMigrationAdded},
	{"ConcurrentWrites", testConcurrentWrites},
	{"ConcurrentAudit", testConcurrentAudit},
}

// runConformance runs the suite against one backend.
func runConformance(t *testing.T, b backend) {
	for _, tc := range conformanceTests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, b) })
	}
}

func TestSQLite(t *testing.T) { runConformance(t, sqliteBackend) }

func TestPostgres(t *testing.T) {
	postgresURL(t)
	runConformance(t, postgresBackend)
}
