package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

func testMigrateIdempotent(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(s.Migrations()) || len(applied) == 0 {
		t.Fatalf("first Migrate applied %d migrations, want all %d", len(applied), len(s.Migrations()))
	}
	for range 2 {
		applied, err = s.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 {
			t.Fatalf("Migrate again applied %v, want nothing", applied)
		}
	}
	// Another instance on the same database has nothing to do either.
	if applied, err := b.reopen(t, s).Migrate(ctx); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate from a second instance = %v, %v", applied, err)
	}
}

func testMigrationStatus(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	known := s.Migrations()

	v, err := s.SchemaVersion(ctx)
	if err != nil || v != 0 {
		t.Fatalf("SchemaVersion before Migrate = %d, %v; want 0", v, err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(known) {
		t.Fatalf("Status lists %d migrations, want %d", len(st), len(known))
	}
	for _, m := range st {
		if m.Applied || !m.AppliedAt.IsZero() {
			t.Fatalf("before Migrate, Status says %+v", m)
		}
	}
	pending, err := s.Pending(ctx)
	if err != nil || len(pending) != len(known) {
		t.Fatalf("Pending before Migrate = %v, %v; want all", pending, err)
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range st {
		if !m.Applied || m.AppliedAt.IsZero() || m.Migration != known[i] {
			t.Fatalf("after Migrate, Status says %+v", m)
		}
	}
	if pending, err := s.Pending(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("Pending after Migrate = %v, %v; want none", pending, err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(known) {
		t.Fatalf("SchemaVersion after Migrate = %d, %v; want %d", v, err, len(known))
	}
}

func testMigrationChecksum(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	if _, err := s.DB().Exec(`UPDATE schema_migrations SET checksum = $1 WHERE version = 1`, "0000"); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func() error{
		"Migrate": func() error { _, err := s.Migrate(ctx); return err },
		"Status":  func() error { _, err := s.Status(ctx); return err },
		"Check":   func() error { return s.Check(ctx) },
	} {
		if err := run(); err == nil || !strings.Contains(err.Error(), "changed after it was applied") {
			t.Errorf("%s with a changed migration = %v, want a checksum error", name, err)
		}
	}
}

func testMigrationNewer(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	if _, err := s.DB().Exec(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (999, 'future', 'x', 0)`); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("database schema version 999 is newer than this moat (%d): upgrade moat", len(s.Migrations()))
	_, err := s.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Migrate of a newer schema = %v, want %q", err, want)
	}
	if _, err := s.Pending(ctx); err == nil {
		t.Fatal("Pending of a newer schema succeeded")
	}
}

// testMigrationAdded checks that a migration added after a database was
// migrated is the only one applied, and that a failing one changes nothing.
func testMigrationAdded(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	base := s.migrations

	next := fstest.MapFS{}
	for _, m := range base {
		next[fmt.Sprintf("migrations/%04d_%s.sql", m.Version, m.Name)] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	broken := fstest.MapFS{}
	for k, v := range next {
		broken[k] = v
	}
	n := len(base) + 1
	next[fmt.Sprintf("migrations/%04d_notes.sql", n)] = &fstest.MapFile{Data: []byte("CREATE TABLE notes (id TEXT NOT NULL PRIMARY KEY, body {{bytes}}){{strict}};\nCREATE INDEX notes_body ON notes (body);\n")}
	broken[fmt.Sprintf("migrations/%04d_broken.sql", n)] = &fstest.MapFile{Data: []byte("CREATE TABLE broken (id TEXT);\nTHIS IS NOT SQL;\n")}

	t.Run("failing", func(t *testing.T) {
		migs, err := loadMigrations(broken)
		if err != nil {
			t.Fatal(err)
		}
		s.migrations = migs
		if _, err := s.Migrate(ctx); err == nil {
			t.Fatal("Migrate with a broken migration succeeded")
		}
		s.migrations = base
		if v, err := s.SchemaVersion(ctx); err != nil || v != len(base) {
			t.Fatalf("after a failed Migrate, SchemaVersion = %d, %v; want %d", v, err, len(base))
		}
		if _, err := s.DB().Exec(`SELECT COUNT(*) FROM broken`); err == nil {
			t.Fatal("a failed migration left its table behind")
		}
	})
	t.Run("applied", func(t *testing.T) {
		migs, err := loadMigrations(next)
		if err != nil {
			t.Fatal(err)
		}
		s.migrations = migs
		defer func() { s.migrations = base }()
		pending, err := s.Pending(ctx)
		if err != nil || len(pending) != 1 || pending[0].Version != n {
			t.Fatalf("Pending = %v, %v; want only %d", pending, err, n)
		}
		applied, err := s.Migrate(ctx)
		if err != nil || len(applied) != 1 || applied[0].Name != "notes" {
			t.Fatalf("Migrate = %v, %v; want only notes", applied, err)
		}
		if _, err := s.DB().Exec(`INSERT INTO notes (id, body) VALUES ($1, $2)`, "a", []byte("b")); err != nil {
			t.Fatalf("the new table: %v", err)
		}
	})
}

func TestLoadMigrationsRejects(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no name":     {"migrations/0001.sql": {}},
		"not numeric": {"migrations/abcd_x.sql": {}},
		"gap":         {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"zero":        {"migrations/0000_a.sql": {}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := loadMigrations(fsys); err == nil {
				t.Fatal("loadMigrations succeeded")
			}
		})
	}
}

func TestSQLiteFileModes(t *testing.T) {
	dir := t.TempDir() + "/data"
	s, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	checkMode(dir, 0o700)
	for _, f := range []string{SQLiteFile, SQLiteFile + "-wal", SQLiteFile + "-shm"} {
		checkMode(dir+"/"+f, 0o600)
	}

	t.Run("tightened", func(t *testing.T) {
		s.Close()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir+"/"+SQLiteFile, 0o644); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(context.Background(), Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		checkMode(dir, 0o700)
		checkMode(dir+"/"+SQLiteFile, 0o600)
	})
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no data dir", Options{}},
		{"unknown scheme", Options{URL: "mysql://user:hunter2@db/moat"}},
		{"schema on sqlite", Options{DataDir: t.TempDir(), Schema: "x"}},
		{"bad schema", Options{URL: "postgres://127.0.0.1:1/x", Schema: "Robert'); DROP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q repeats the password", err)
			}
		})
	}
}

const helperSchemaEnv = "MOAT_STORE_TEST_HELPER_SCHEMA"

// TestHelperProcess is not a test: TestPostgresConcurrentMigrate runs the
// test binary as a helper process that opens the store and migrates it.
func TestHelperProcess(t *testing.T) {
	schema := os.Getenv(helperSchemaEnv)
	if schema == "" {
		t.Skip("helper process for TestPostgresConcurrentMigrate")
	}
	s, err := Open(context.Background(), Options{URL: os.Getenv(postgresURLEnv), Schema: schema})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	applied, err := s.Migrate(context.Background())
	s.Close()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("applied=%d\n", len(applied))
	os.Exit(0)
}

// TestPostgresConcurrentMigrate starts three processes at once on one new
// schema: they must migrate it exactly once between them.
func TestPostgresConcurrentMigrate(t *testing.T) {
	url := postgresURL(t)
	schema := freshSchema(t)
	const procs = 3
	outs := make([]string, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperSchemaEnv+"="+schema, postgresURLEnv+"="+url)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	wg.Wait()
	appliedBy := 0
	for i := range procs {
		if errs[i] != nil {
			t.Fatalf("process %d: %v\n%s", i, errs[i], outs[i])
		}
		switch {
		case strings.Contains(outs[i], "applied=0"):
		case strings.Contains(outs[i], "applied="):
			appliedBy++
		default:
			t.Fatalf("process %d said:\n%s", i, outs[i])
		}
	}
	if appliedBy != 1 {
		t.Fatalf("%d processes applied migrations, want exactly 1", appliedBy)
	}

	s := openPostgresAt(t, schema)
	rows, err := s.DB().Query(`SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	versions := 0
	for rows.Next() {
		var v, n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		versions++
		if v != versions || n != 1 {
			t.Fatalf("schema_migrations has version %d %d times", v, n)
		}
	}
	if versions != len(s.Migrations()) {
		t.Fatalf("schema_migrations has %d versions, want %d", versions, len(s.Migrations()))
	}
}
