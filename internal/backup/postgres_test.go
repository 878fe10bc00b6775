package backup

import (
	"bytes"
	"context"
	neturl "net/url"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// verifySchemas counts the scratch schemas Verify leaves behind.
func verifySchemas(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'moat\_verify\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgres(t *testing.T) {
	url := postgresURL(t)
	src := newPostgres(t)
	populate(t, src, "")
	want := dump(t, src)
	enc, dec := x25519Keys(t)
	file, m := backupBytes(t, src, enc)
	if m.Backend != "postgres" {
		t.Fatalf("backend = %q", m.Backend)
	}

	t.Run("verifies in a temporary schema", func(t *testing.T) {
		before := verifySchemas(t, src)
		rep := verifyBytes(t, file, dec, ScratchOptions{PostgresURL: url})
		if !rep.OK {
			t.Fatalf("did not verify: %v", rep.Problems)
		}
		if rep.Scratch != "postgres" || len(rep.Notes) != 0 {
			t.Errorf("scratch %q, notes %q", rep.Scratch, rep.Notes)
		}
		if after := verifySchemas(t, src); after != before {
			t.Errorf("%d scratch schemas before, %d after: one was left behind", before, after)
		}
	})

	t.Run("verifies in SQLite without a URL", func(t *testing.T) {
		rep := verifyBytes(t, file, dec, ScratchOptions{})
		if !rep.OK {
			t.Fatalf("did not verify: %v", rep.Problems)
		}
		if rep.Scratch != "sqlite" || len(rep.Notes) == 0 {
			t.Errorf("scratch %q, notes %q: want sqlite and a note saying so", rep.Scratch, rep.Notes)
		}
	})

	t.Run("verifies in SQLite when the role cannot create a schema", func(t *testing.T) {
		role := "moat_noschema_" + randomHex(4)
		ctx := t.Context()
		if _, err := src.DB().ExecContext(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil { //sqlcheck:ok test: role name made here from random hex
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = src.DB().ExecContext(context.Background(), `DROP ROLE IF EXISTS `+role) //sqlcheck:ok test: role name made here from random hex
		})
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = neturl.User(role)
		rep := verifyBytes(t, file, dec, ScratchOptions{PostgresURL: u.String()})
		if !rep.OK {
			t.Fatalf("did not verify: %v", rep.Problems)
		}
		if rep.Scratch != "sqlite" || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "could not create a scratch schema") {
			t.Errorf("scratch %q, notes %q: want sqlite and a note saying why", rep.Scratch, rep.Notes)
		}
	})

	t.Run("a damaged backup fails in a temporary schema", func(t *testing.T) {
		b := bytes.Clone(file)
		b[len(b)/2] ^= 1
		rep := verifyBytes(t, b, dec, ScratchOptions{PostgresURL: url})
		if rep.OK {
			t.Fatal("a damaged backup verified")
		}
	})

	t.Run("restores into an empty store", func(t *testing.T) {
		dst := newPostgres(t)
		if _, err := Restore(t.Context(), dst, bytes.NewReader(file), dec, false); err != nil {
			t.Fatal(err)
		}
		sameData(t, want, dump(t, dst))
	})

	t.Run("restores with wipe", func(t *testing.T) {
		dst := newPostgres(t)
		populate(t, dst, "-other")
		if _, err := Restore(t.Context(), dst, bytes.NewReader(file), dec, true); err != nil {
			t.Fatal(err)
		}
		sameData(t, want, dump(t, dst))
	})

	t.Run("an SQLite backup restores into PostgreSQL", func(t *testing.T) {
		lite := newSQLite(t)
		populate(t, lite, "")
		liteFile, _ := backupBytes(t, lite, enc)
		dst := newPostgres(t)
		if _, err := Restore(t.Context(), dst, bytes.NewReader(liteFile), dec, false); err != nil {
			t.Fatal(err)
		}
		if a, b := len(dump(t, lite)), len(dump(t, dst)); a != b {
			t.Errorf("%d rows in SQLite, %d in PostgreSQL", a, b)
		}
	})
}
