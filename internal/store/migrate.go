package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The schema is built by numbered, forward-only migrations: files
// migrations/NNNN_name.sql, applied in order, each once. There is one file
// per version for both backends; the few type names that differ are tokens
// (see substitutions) so the two schemas cannot drift apart, and the
// checksum is taken over the file as written, the same on both.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one schema version this build of Moat knows.
type Migration struct {
	Version  int
	Name     string
	Checksum string // hex SHA-256 of the migration file
}

// MigrationStatus is a migration and whether the database has it.
type MigrationStatus struct {
	Migration
	Applied   bool
	AppliedAt time.Time // zero if pending
}

type migration struct {
	Migration
	sql string // before substitution
}

// substitutions are the per-backend replacements of the tokens in the
// migration files.
var substitutions = map[string]*strings.Replacer{
	BackendSQLite:   strings.NewReplacer("{{int}}", "INTEGER", "{{bytes}}", "BLOB", "{{strict}}", " STRICT", "{{binary}}", ""),
	BackendPostgres: strings.NewReplacer("{{int}}", "BIGINT", "{{bytes}}", "BYTEA", "{{strict}}", "", "{{binary}}", `COLLATE "C"`),
}

// loadMigrations reads the migration files of fsys, in version order.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	var out []migration
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".sql")
		num, label, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || label == "" {
			return nil, fmt.Errorf("loading migrations: %s: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("loading migrations: %w", err)
		}
		sum := sha256.Sum256(b)
		out = append(out, migration{
			Migration: Migration{Version: v, Name: label, Checksum: hex.EncodeToString(sum[:])},
			sql:       string(b),
		})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.Version - b.Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("loading migrations: want versions 1 to %d in sequence, found %d at position %d", len(out), out[i].Version, i+1)
		}
	}
	return out, nil
}

// Migrations lists the schema versions this build knows, in order.
func (s *Store) Migrations() []Migration {
	out := make([]Migration, len(s.migrations))
	for i, m := range s.migrations {
		out[i] = m.Migration
	}
	return out
}

const (
	createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT NOT NULL PRIMARY KEY,
	name       TEXT NOT NULL,
	checksum   TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`
	selectMigrations       = `SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version`
	insertMigration        = `INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)`
	sqliteHasMigrations    = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`
	postgresHasMigrations  = `SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'`
	postgresMigrationsLock = `SELECT pg_advisory_xact_lock($1, $2)`
)

// migrationLockKey is the first key of the PostgreSQL advisory lock
// Migrate holds; the second is derived from the schema (lockKey), so
// stores in different schemas migrate independently.
const migrationLockKey int32 = 0x6d6f6174 // "moat"

func lockKey(schema string) int32 {
	h := fnv.New32a()
	h.Write([]byte(schema))
	return int32(h.Sum32())
}

type appliedMigration struct {
	Migration
	at time.Time
}

// readApplied returns the migrations recorded in q, none if the
// schema_migrations table does not exist yet.
func (s *Store) readApplied(ctx context.Context, q querier) ([]appliedMigration, error) {
	has := sqliteHasMigrations
	if s.backend == BackendPostgres {
		has = postgresHasMigrations
	}
	var n int
	if err := q.QueryRowContext(ctx, has).Scan(&n); err != nil {
		return nil, fmt.Errorf("reading schema version: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, selectMigrations)
	if err != nil {
		return nil, fmt.Errorf("reading schema version: %w", err)
	}
	defer rows.Close()
	var out []appliedMigration
	for rows.Next() {
		var (
			a  appliedMigration
			at int64
		)
		if err := rows.Scan(&a.Version, &a.Name, &a.Checksum, &at); err != nil {
			return nil, fmt.Errorf("reading schema version: %w", err)
		}
		a.at = time.UnixMicro(at).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// checkApplied compares what the database has applied with what this build
// knows, and returns the migrations still to apply. A schema newer than
// this build, or a migration changed after it was applied, is an error.
func (s *Store) checkApplied(applied []appliedMigration) ([]migration, error) {
	latest := len(s.migrations)
	if n := len(applied); n > 0 && applied[n-1].Version > latest {
		return nil, fmt.Errorf("database schema version %d is newer than this moat (%d): upgrade moat", applied[n-1].Version, latest)
	}
	done := make(map[int]bool, len(applied))
	var errs []error
	for _, a := range applied {
		if a.Version < 1 {
			return nil, fmt.Errorf("database records an invalid schema version %d", a.Version)
		}
		m := s.migrations[a.Version-1]
		if a.Checksum != m.Checksum {
			errs = append(errs, fmt.Errorf("migration %d (%s) was changed after it was applied: checksum %s in the database, %s in this moat", a.Version, m.Name, short(a.Checksum), short(m.Checksum)))
		}
		done[a.Version] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var pending []migration
	for _, m := range s.migrations {
		if !done[m.Version] {
			pending = append(pending, m)
		}
	}
	return pending, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// Migrate applies the pending migrations, in order, in one transaction,
// and returns those it applied. It holds a lock while it does (a
// PostgreSQL advisory lock, the SQLite write lock), so several instances
// starting together migrate once: the others wait, then find nothing to do.
// A database whose schema is newer than this build knows, or whose applied
// migrations differ from this build's, is an error and is left unchanged.
func (s *Store) Migrate(ctx context.Context) ([]Migration, error) {
	var applied []Migration
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if s.backend == BackendPostgres {
			if _, err := tx.ExecContext(ctx, postgresMigrationsLock, migrationLockKey, s.schemaKey); err != nil {
				return fmt.Errorf("taking the migration lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		have, err := s.readApplied(ctx, tx)
		if err != nil {
			return err
		}
		pending, err := s.checkApplied(have)
		if err != nil {
			return err
		}
		repl := substitutions[s.backend]
		for _, m := range pending {
			if _, err := tx.ExecContext(ctx, repl.Replace(m.sql)); err != nil { //sqlcheck:ok embedded migration; placeholders are replaced by constant type names
				return fmt.Errorf("applying migration %d (%s): %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, insertMigration, m.Version, m.Name, m.Checksum, micros(now())); err != nil {
				return fmt.Errorf("recording migration %d (%s): %w", m.Version, m.Name, err)
			}
			applied = append(applied, m.Migration)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrating %s store: %w", s.backend, err)
	}
	for _, m := range applied {
		s.log.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	return applied, nil
}

// Status lists every migration this build knows, applied or pending, and
// fails like Migrate would on a newer or changed schema.
func (s *Store) Status(ctx context.Context) ([]MigrationStatus, error) {
	have, err := s.readApplied(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if _, err := s.checkApplied(have); err != nil {
		return nil, err
	}
	at := make(map[int]time.Time, len(have))
	for _, a := range have {
		at[a.Version] = a.at
	}
	out := make([]MigrationStatus, len(s.migrations))
	for i, m := range s.migrations {
		t, ok := at[m.Version]
		out[i] = MigrationStatus{Migration: m.Migration, Applied: ok, AppliedAt: t}
	}
	return out, nil
}

// Pending lists the migrations Migrate would apply now (for a dry run).
func (s *Store) Pending(ctx context.Context) ([]Migration, error) {
	have, err := s.readApplied(ctx, s.db)
	if err != nil {
		return nil, err
	}
	pending, err := s.checkApplied(have)
	if err != nil {
		return nil, err
	}
	out := make([]Migration, len(pending))
	for i, m := range pending {
		out[i] = m.Migration
	}
	return out, nil
}

// SchemaVersion is the highest migration applied to the database, 0 for a
// database never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	return s.schemaVersion(ctx, s.db)
}

func (s *Store) schemaVersion(ctx context.Context, q querier) (int, error) {
	have, err := s.readApplied(ctx, q)
	if err != nil {
		return 0, err
	}
	if len(have) == 0 {
		return 0, nil
	}
	return have[len(have)-1].Version, nil
}
