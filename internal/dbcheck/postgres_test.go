package dbcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testPostgres returns the URL of the test server, a superuser connection to
// it that is closed when the test ends, and a context bounding the test.
func testPostgres(t *testing.T) (string, *pgx.Conn, context.Context) {
	t.Helper()
	u := os.Getenv("MOAT_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MOAT_TEST_POSTGRES_URL is not set in CI")
		}
		t.Skip("MOAT_TEST_POSTGRES_URL is not set; e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	admin, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connecting to the test server: %v", err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	return u, admin, ctx
}

// name returns a fresh identifier for a throwaway role or schema.
func name(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// exec runs statements as the test server's superuser.
func exec(t *testing.T, ctx context.Context, admin *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil { //sqlcheck:ok test setup: constants and quoted identifiers
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// cleanup runs statements when the test ends, whatever happened.
func cleanup(t *testing.T, admin *pgx.Conn, stmts ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range stmts {
			if _, err := admin.Exec(ctx, s); err != nil { //sqlcheck:ok test cleanup: quoted identifiers
				t.Errorf("cleanup: %s: %v", s, err)
			}
		}
	})
}

// newRole creates a role with the given attributes (a constant such as
// "LOGIN CREATEDB"), dropped with everything it owns when the test ends.
func newRole(t *testing.T, ctx context.Context, admin *pgx.Conn, attrs string) (role, quoted string) {
	t.Helper()
	role = name("moat_dbcheck_")
	quoted = pgx.Identifier{role}.Sanitize()
	exec(t, ctx, admin, "CREATE ROLE "+quoted+" "+attrs)
	cleanup(t, admin, "DROP OWNED BY "+quoted, "DROP ROLE "+quoted)
	return role, quoted
}

// newSchema creates a schema owned by the test server's superuser, dropped
// with its contents when the test ends.
func newSchema(t *testing.T, ctx context.Context, admin *pgx.Conn) string {
	t.Helper()
	quoted := pgx.Identifier{name("moat_dbcheck_s")}.Sanitize()
	exec(t, ctx, admin, "CREATE SCHEMA "+quoted)
	cleanup(t, admin, "DROP SCHEMA IF EXISTS "+quoted+" CASCADE")
	return quoted
}

// as returns base with its user replaced (the test server trusts loopback).
func as(t *testing.T, base, role string) string {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

func errorsOf(fs []Finding) []string {
	var s []string
	for _, f := range fs {
		if f.Severity == SeverityError {
			s = append(s, f.Check)
		}
	}
	return s
}

func has(fs []Finding, severity, check string) (Finding, bool) {
	i := slices.IndexFunc(fs, func(f Finding) bool { return f.Severity == severity && f.Check == check })
	if i < 0 {
		return Finding{}, false
	}
	return fs[i], true
}

func TestPostgres(t *testing.T) {
	base, admin, ctx := testPostgres(t)

	t.Run("superuser", func(t *testing.T) {
		got, err := Postgres(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := has(got, SeverityError, "pg.superuser"); !ok {
			t.Fatalf("no pg.superuser finding connecting as a superuser: %v", got)
		}
		if _, ok := has(got, SeverityError, "pg.tls"); ok {
			t.Errorf("pg.tls finding for a loopback server: %v", got)
		}
	})

	t.Run("createdb", func(t *testing.T) {
		role, _ := newRole(t, ctx, admin, "LOGIN CREATEDB")
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"pg.createdb"}; !slices.Equal(errorsOf(got), want) {
			t.Fatalf("errors = %q, want %q: %v", errorsOf(got), want, got)
		}
		if f, _ := has(got, SeverityError, "pg.createdb"); !strings.Contains(f.Message, "NOCREATEDB") {
			t.Errorf("message does not say how to fix it: %s", f.Message)
		}
	})

	t.Run("createrole", func(t *testing.T) {
		role, _ := newRole(t, ctx, admin, "LOGIN CREATEROLE")
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"pg.createrole"}; !slices.Equal(errorsOf(got), want) {
			t.Fatalf("errors = %q, want %q: %v", errorsOf(got), want, got)
		}
	})

	t.Run("least privileged", func(t *testing.T) {
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		schema := newSchema(t, ctx, admin)
		exec(t, ctx, admin,
			"CREATE TABLE "+schema+".users (id bigserial PRIMARY KEY, name text NOT NULL)",
			"GRANT USAGE ON SCHEMA "+schema+" TO "+quoted,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+schema+" TO "+quoted,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "+schema+" TO "+quoted,
		)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if e := errorsOf(got); len(e) > 0 {
			t.Fatalf("errors %q for a least-privileged role: %v", e, got)
		}
		// The role can do its work: the grants above are what Moat needs.
		conn, err := pgx.Connect(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO "+schema+".users (name) VALUES ($1)", "alice"); err != nil { //sqlcheck:ok quoted identifier
			t.Errorf("the least-privileged role cannot insert: %v", err)
		}
		if _, err := conn.Exec(ctx, "DROP TABLE "+schema+".users"); err == nil { //sqlcheck:ok quoted identifier
			t.Errorf("the least-privileged role could drop a table")
		}
	})

	t.Run("owns tables", func(t *testing.T) {
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		schema := newSchema(t, ctx, admin)
		exec(t, ctx, admin,
			"CREATE TABLE "+schema+".users (id bigint)",
			"CREATE TABLE "+schema+".sessions (id bigint)",
			"ALTER TABLE "+schema+".users OWNER TO "+quoted,
			"ALTER TABLE "+schema+".sessions OWNER TO "+quoted,
			"GRANT USAGE ON SCHEMA "+schema+" TO "+quoted,
		)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"pg.owns_tables"}; !slices.Equal(errorsOf(got), want) {
			t.Fatalf("errors = %q, want %q: %v", errorsOf(got), want, got)
		}
		f, _ := has(got, SeverityError, "pg.owns_tables")
		s := strings.Trim(schema, `"`)
		for _, want := range []string{"2 tables", s + ".sessions", s + ".users", "migration role"} {
			if !strings.Contains(f.Message, want) {
				t.Errorf("message does not say %q: %s", want, f.Message)
			}
		}
	})

	t.Run("owns a table through membership", func(t *testing.T) {
		owner, ownerQuoted := newRole(t, ctx, admin, "NOLOGIN")
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		schema := newSchema(t, ctx, admin)
		exec(t, ctx, admin,
			"CREATE TABLE "+schema+".keys (id bigint)",
			"ALTER TABLE "+schema+".keys OWNER TO "+ownerQuoted,
			"GRANT "+ownerQuoted+" TO "+quoted,
		)
		cleanup(t, admin, "REVOKE "+ownerQuoted+" FROM "+quoted)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		f, ok := has(got, SeverityError, "pg.owns_tables")
		if !ok || !strings.Contains(f.Message, "membership in "+owner) {
			t.Fatalf("want pg.owns_tables through membership in %s: %v", owner, got)
		}
	})

	t.Run("owns a schema", func(t *testing.T) {
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		schema := newSchema(t, ctx, admin)
		exec(t, ctx, admin, "ALTER SCHEMA "+schema+" OWNER TO "+quoted)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"pg.owns_schemas"}; !slices.Equal(errorsOf(got), want) {
			t.Fatalf("errors = %q, want %q: %v", errorsOf(got), want, got)
		}
	})

	t.Run("member of a privileged role", func(t *testing.T) {
		parent, parentQuoted := newRole(t, ctx, admin, "NOLOGIN CREATEDB")
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		exec(t, ctx, admin, "GRANT "+parentQuoted+" TO "+quoted)
		cleanup(t, admin, "REVOKE "+parentQuoted+" FROM "+quoted)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		f, ok := has(got, SeverityError, "pg.member")
		if !ok || !strings.Contains(f.Message, parent) || !strings.Contains(f.Message, "CREATEDB") {
			t.Fatalf("want pg.member naming %s and CREATEDB: %v", parent, got)
		}
	})

	t.Run("may create in schemas", func(t *testing.T) {
		role, quoted := newRole(t, ctx, admin, "LOGIN")
		schema := newSchema(t, ctx, admin)
		exec(t, ctx, admin,
			"GRANT USAGE, CREATE ON SCHEMA "+schema+" TO "+quoted,
			"GRANT CREATE ON SCHEMA public TO "+quoted,
		)
		got, err := Postgres(ctx, as(t, base, role))
		if err != nil {
			t.Fatal(err)
		}
		if e := errorsOf(got); len(e) > 0 {
			t.Errorf("errors %q, want only warnings: %v", e, got)
		}
		if _, ok := has(got, SeverityWarning, "pg.public_create"); !ok {
			t.Errorf("no pg.public_create warning: %v", got)
		}
		f, ok := has(got, SeverityWarning, "pg.schema_create")
		if !ok || !strings.Contains(f.Message, strings.Trim(schema, `"`)) {
			t.Errorf("no pg.schema_create warning naming %s: %v", schema, got)
		}
	})
}
