package store

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type exportedRow struct {
	table string
	row   []any
}

func exportAll(t testing.TB, s *Store) (int, []exportedRow) {
	t.Helper()
	var rows []exportedRow
	v, err := s.Export(context.Background(), func(table string, row []any) error {
		for i, x := range row {
			switch x.(type) {
			case nil, int64, string, []byte:
			default:
				t.Errorf("%s column %d: value of type %T", table, i, x)
			}
		}
		rows = append(rows, exportedRow{table, row})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, rows
}

// rowSource feeds rows to Import.
func rowSource(rows []exportedRow) func() (string, []any, error) {
	i := 0
	return func() (string, []any, error) {
		if i == len(rows) {
			return "", nil, io.EOF
		}
		i++
		return rows[i-1].table, rows[i-1].row, nil
	}
}

// fullFixture fills every table.
func fullFixture(t testing.TB, s *Store) []sealedValue {
	t.Helper()
	ctx := context.Background()
	vals := fixture(t, s, 2)
	u := mustUser(t, s, "plain", "")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Sessions().Create(ctx, &Session{IDHash: []byte{0xff, 0x00}, UserID: u.ID, Methods: []string{"pwd"}, ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}))
	must(s.APIKeys().Create(ctx, &APIKey{Name: "ci", Owner: "service", Prefix: "moat_x", Hash: []byte{1, 2}, Scopes: []string{"read"}}))
	for i := range 3 {
		must(s.Audit().Append(ctx, &AuditRecord{Kind: "test", Data: fmt.Appendf(nil, `{"n":%d}`, i), Hash: []byte{byte(i)}}))
	}
	must(s.Backups().Create(ctx, &BackupRecord{File: "b.age", Size: 10, VerifyOK: true, VerifiedAt: t0}))
	// Keys whose order depends on the collation: byte order on both backends.
	must(s.DataKeys().Create(ctx, &DataKey{ID: "alpha", Wrapped: []byte("wrapped"), KEKID: "kek", State: "active"}))
	must(s.DataKeys().Create(ctx, &DataKey{ID: "Zeta", Wrapped: []byte("wrapped"), KEKID: "kek", State: "retired"}))
	return vals
}

func testExportImport(t *testing.T, b backend) {
	ctx := context.Background()
	src, c := newStore(t, b)
	vals := fullFixture(t, src)
	version, rows := exportAll(t, src)
	if version != len(src.Migrations()) {
		t.Fatalf("Export returned schema version %d, want %d", version, len(src.Migrations()))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.table] = true
	}
	for _, ti := range src.Tables() {
		if !seen[ti.Name] {
			t.Errorf("the fixture left table %s empty: the round trip does not cover it", ti.Name)
		}
	}

	dst, _ := newStore(t, b)
	dst.SetCipher(c)
	if err := dst.Import(ctx, version, rowSource(rows)); err != nil {
		t.Fatal(err)
	}
	_, again := exportAll(t, dst)
	if !reflect.DeepEqual(rows, again) {
		t.Fatalf("export after import differs:\n got %v\nwant %v", again, rows)
	}
	checkReadable(t, dst, vals)
	if err := dst.Check(ctx); err != nil {
		t.Fatalf("Check after import: %v", err)
	}
}

func testImportRefused(t *testing.T, b backend) {
	ctx := context.Background()
	src, _ := newStore(t, b)
	fullFixture(t, src)
	version, rows := exportAll(t, src)

	t.Run("not empty", func(t *testing.T) {
		if err := src.Import(ctx, version, rowSource(rows)); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("Import into a non-empty store = %v, want a not empty error", err)
		}
	})
	t.Run("not migrated", func(t *testing.T) {
		dst := b.open(t)
		if err := dst.Import(ctx, version, rowSource(rows)); err == nil {
			t.Fatal("Import into an unmigrated store succeeded")
		}
	})

	userRow := rows[0].row
	for _, tc := range []struct {
		name    string
		version int
		rows    []exportedRow
	}{
		{"other schema version", version + 1, rows},
		{"unknown table", version, []exportedRow{{"nope", userRow}}},
		{"wrong column count", version, []exportedRow{{"users", userRow[:3]}}},
		{"wrong value type", version, []exportedRow{{"users", append([]any{int64(1)}, userRow[1:]...)}}},
		{"float value", version, []exportedRow{{"users", append(slices.Clone(userRow[:7]), 1.5, nil)}}},
		{"bad row after good ones", version, append(slices.Clone(rows[:3]), exportedRow{"users", userRow[:1]})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, _ := newStore(t, b)
			if err := dst.Import(ctx, tc.version, rowSource(tc.rows)); err == nil {
				t.Fatal("Import succeeded")
			}
			if _, left := exportAll(t, dst); len(left) != 0 {
				t.Fatalf("a failed Import left %d rows", len(left))
			}
		})
	}
	t.Run("source error", func(t *testing.T) {
		dst, _ := newStore(t, b)
		n := 0
		err := dst.Import(ctx, version, func() (string, []any, error) {
			if n == 2 {
				return "", nil, io.ErrUnexpectedEOF
			}
			n++
			return rows[n-1].table, rows[n-1].row, nil
		})
		if err == nil || !strings.Contains(err.Error(), io.ErrUnexpectedEOF.Error()) {
			t.Fatalf("Import = %v, want the source's error", err)
		}
		if _, left := exportAll(t, dst); len(left) != 0 {
			t.Fatalf("a failed Import left %d rows", len(left))
		}
	})
}

func testWipe(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	fullFixture(t, s)
	version, rows := exportAll(t, s)
	if err := s.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, left := exportAll(t, s); len(left) != 0 {
		t.Fatalf("Wipe left %d rows", len(left))
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != version {
		t.Fatalf("after Wipe, SchemaVersion = %d, %v; want %d", v, err, version)
	}
	if err := s.Import(ctx, version, rowSource(rows)); err != nil {
		t.Fatalf("Import after Wipe: %v", err)
	}
}

const (
	sqliteTableNames    = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	sqliteColumnNames   = `SELECT name FROM pragma_table_info($1) ORDER BY cid`
	postgresTableNames  = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`
	postgresColumnNames = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`
)

func queryStrings(t testing.TB, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.DB().Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// testTablesMatchSchema checks Tables against the migrated database, so
// Export cannot silently miss a table or a column.
func testTablesMatchSchema(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	tq, cq := sqliteTableNames, sqliteColumnNames
	if s.Backend() == BackendPostgres {
		tq, cq = postgresTableNames, postgresColumnNames
	}
	var want []string
	for _, name := range queryStrings(t, s, tq) { //sqlcheck:ok test: table and column names are constants of the test
		if name != "schema_migrations" {
			want = append(want, name)
		}
	}
	var got []string
	for _, ti := range s.Tables() {
		got = append(got, ti.Name)
		if cols := queryStrings(t, s, cq, ti.Name); !slices.Equal(cols, ti.Columns) { //sqlcheck:ok test: table and column names are constants of the test
			t.Errorf("table %s: Tables lists columns %v, the database has %v", ti.Name, ti.Columns, cols)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Tables lists %v, the database has %v", got, want)
	}
}

const (
	orphanCredential = `INSERT INTO credentials (id, user_id, kind, created_at) VALUES ('orphan', 'ghost', 'password', 0)`
	sqliteFKOff      = `PRAGMA foreign_keys = OFF`
	sqliteFKOn       = `PRAGMA foreign_keys = ON`
	postgresFKOff    = `SET session_replication_role = replica`
	postgresFKOn     = `RESET session_replication_role`
)

func testCheck(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	fullFixture(t, s)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check of a good database: %v", err)
	}

	// Break a foreign key behind the store's back, on a connection that
	// does not enforce them.
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	off, on := sqliteFKOff, sqliteFKOn
	if s.Backend() == BackendPostgres {
		off, on = postgresFKOff, postgresFKOn
	}
	if _, err := conn.ExecContext(ctx, off); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		conn.Close()
		t.Skipf("cannot disable foreign keys: %v", err)
	}
	_, err = conn.ExecContext(ctx, orphanCredential)
	if _, err2 := conn.ExecContext(ctx, on); err2 != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatal(err2)
	}
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}

	err = s.Check(ctx)
	if err == nil {
		t.Fatal("Check passed with an orphaned credential")
	}
	if !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("Check error %q does not name the table", err)
	}
	t.Logf("Check: %v", err)
}

// TestExportAcrossBackends restores an SQLite export into PostgreSQL and
// back: the two schemas hold the same data the same way.
func TestExportAcrossBackends(t *testing.T) {
	ctx := context.Background()
	postgresURL(t)
	lite, c := newStore(t, sqliteBackend)
	vals := fullFixture(t, lite)
	version, rows := exportAll(t, lite)

	pg, _ := newStore(t, postgresBackend)
	pg.SetCipher(c)
	if err := pg.Import(ctx, version, rowSource(rows)); err != nil {
		t.Fatal(err)
	}
	checkReadable(t, pg, vals)
	_, pgRows := exportAll(t, pg)
	if !reflect.DeepEqual(rows, pgRows) {
		t.Fatalf("PostgreSQL exports the data differently:\n got %v\nwant %v", pgRows, rows)
	}

	back, _ := newStore(t, sqliteBackend)
	if err := back.Import(ctx, version, rowSource(pgRows)); err != nil {
		t.Fatal(err)
	}
	_, again := exportAll(t, back)
	if !reflect.DeepEqual(rows, again) {
		t.Fatalf("SQLite → PostgreSQL → SQLite changed the data:\n got %v\nwant %v", again, rows)
	}
}
