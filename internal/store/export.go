package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// TableInfo names a table and its columns, in the order Export gives and
// Import takes row values.
type TableInfo struct {
	Name    string
	Columns []string
}

type colKind int

const (
	kindInt   colKind = iota // int64; times, counts, booleans
	kindText                 // string; ids, names, JSON lists
	kindBytes                // []byte; hashes, sealed values
)

type column struct {
	name string
	kind colKind
}

// tableSpec describes one table of the latest schema with the queries that
// copy it, each written out in full.
type tableSpec struct {
	name      string
	columns   []column
	selectAll string // every column, in order, rows ordered by primary key
	insert    string // every column, in order, as $1..$n
	deleteAll string
}

// tables lists every table but schema_migrations, parents before children.
// A test checks it against the migrated schema of both backends.
var tables = []tableSpec{
	{
		name: "users",
		columns: []column{{"id", kindText}, {"username", kindText}, {"email", kindBytes}, {"email_kid", kindText},
			{"display_name", kindText}, {"roles", kindText}, {"status", kindText}, {"created_at", kindInt}, {"last_login_at", kindInt}},
		selectAll: `SELECT id, username, email, email_kid, display_name, roles, status, created_at, last_login_at FROM users ORDER BY id`,
		insert:    `INSERT INTO users (id, username, email, email_kid, display_name, roles, status, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		deleteAll: `DELETE FROM users`,
	},
	{
		name: "credentials",
		columns: []column{{"id", kindText}, {"user_id", kindText}, {"kind", kindText}, {"name", kindText}, {"secret", kindBytes},
			{"secret_kid", kindText}, {"hash", kindText}, {"created_at", kindInt}, {"last_used_at", kindInt},
			{"counter", kindInt}, {"expires_at", kindInt}},
		selectAll: `SELECT id, user_id, kind, name, secret, secret_kid, hash, created_at, last_used_at, counter, expires_at FROM credentials ORDER BY id`,
		insert:    `INSERT INTO credentials (id, user_id, kind, name, secret, secret_kid, hash, created_at, last_used_at, counter, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		deleteAll: `DELETE FROM credentials`,
	},
	{
		name: "identities",
		columns: []column{{"id", kindText}, {"user_id", kindText}, {"issuer", kindText}, {"subject", kindText},
			{"refresh_token", kindBytes}, {"refresh_token_kid", kindText}, {"created_at", kindInt}},
		selectAll: `SELECT id, user_id, issuer, subject, refresh_token, refresh_token_kid, created_at FROM identities ORDER BY id`,
		insert:    `INSERT INTO identities (id, user_id, issuer, subject, refresh_token, refresh_token_kid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		deleteAll: `DELETE FROM identities`,
	},
	{
		name: "sessions",
		columns: []column{{"id_hash", kindBytes}, {"user_id", kindText}, {"methods", kindText}, {"auth_time", kindInt},
			{"created_at", kindInt}, {"last_seen", kindInt}, {"expires_at", kindInt}, {"revoked_at", kindInt}},
		selectAll: `SELECT id_hash, user_id, methods, auth_time, created_at, last_seen, expires_at, revoked_at FROM sessions ORDER BY id_hash`,
		insert:    `INSERT INTO sessions (id_hash, user_id, methods, auth_time, created_at, last_seen, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		deleteAll: `DELETE FROM sessions`,
	},
	{
		name: "api_keys",
		columns: []column{{"id", kindText}, {"name", kindText}, {"owner", kindText}, {"prefix", kindText}, {"hash", kindBytes},
			{"scopes", kindText}, {"created_at", kindInt}, {"expires_at", kindInt}, {"revoked_at", kindInt}, {"last_used_at", kindInt}},
		selectAll: `SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_keys ORDER BY id`,
		insert:    `INSERT INTO api_keys (id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		deleteAll: `DELETE FROM api_keys`,
	},
	{
		name: "signing_keys",
		columns: []column{{"id", kindText}, {"key_use", kindText}, {"alg", kindText}, {"private_key", kindBytes},
			{"private_key_kid", kindText}, {"public_key", kindBytes}, {"created_at", kindInt}, {"not_after", kindInt}},
		selectAll: `SELECT id, key_use, alg, private_key, private_key_kid, public_key, created_at, not_after FROM signing_keys ORDER BY id`,
		insert:    `INSERT INTO signing_keys (id, key_use, alg, private_key, private_key_kid, public_key, created_at, not_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		deleteAll: `DELETE FROM signing_keys`,
	},
	{
		name:      "secrets",
		columns:   []column{{"name", kindText}, {"value", kindBytes}, {"value_kid", kindText}, {"updated_at", kindInt}},
		selectAll: `SELECT name, value, value_kid, updated_at FROM secrets ORDER BY name`,
		insert:    `INSERT INTO secrets (name, value, value_kid, updated_at) VALUES ($1, $2, $3, $4)`,
		deleteAll: `DELETE FROM secrets`,
	},
	{
		name: "audit_log",
		columns: []column{{"seq", kindInt}, {"at", kindInt}, {"kind", kindText}, {"data", kindBytes},
			{"prev_hash", kindBytes}, {"hash", kindBytes}},
		selectAll: `SELECT seq, at, kind, data, prev_hash, hash FROM audit_log ORDER BY seq`,
		insert:    `INSERT INTO audit_log (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)`,
		deleteAll: `DELETE FROM audit_log`,
	},
	{
		name: "backups",
		columns: []column{{"id", kindText}, {"created_at", kindInt}, {"file", kindText}, {"size", kindInt}, {"sha256", kindText},
			{"verified_at", kindInt}, {"verify_ok", kindInt}, {"error", kindText}},
		selectAll: `SELECT id, created_at, file, size, sha256, verified_at, verify_ok, error FROM backups ORDER BY id`,
		insert:    `INSERT INTO backups (id, created_at, file, size, sha256, verified_at, verify_ok, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		deleteAll: `DELETE FROM backups`,
	},
	{
		name:      "data_keys",
		columns:   []column{{"id", kindText}, {"wrapped", kindBytes}, {"kek_id", kindText}, {"created_at", kindInt}, {"state", kindText}},
		selectAll: `SELECT id, wrapped, kek_id, created_at, state FROM data_keys ORDER BY id`,
		insert:    `INSERT INTO data_keys (id, wrapped, kek_id, created_at, state) VALUES ($1, $2, $3, $4, $5)`,
		deleteAll: `DELETE FROM data_keys`,
	},
}

// countAllRows counts the rows of every table in tables.
const countAllRows = `SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM credentials) +
	(SELECT COUNT(*) FROM identities) + (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM api_keys) +
	(SELECT COUNT(*) FROM signing_keys) + (SELECT COUNT(*) FROM secrets) + (SELECT COUNT(*) FROM audit_log) +
	(SELECT COUNT(*) FROM backups) + (SELECT COUNT(*) FROM data_keys)`

// Tables lists every table but schema_migrations, parents before
// children, with its columns.
func (s *Store) Tables() []TableInfo {
	out := make([]TableInfo, len(tables))
	for i, t := range tables {
		cols := make([]string, len(t.columns))
		for j, c := range t.columns {
			cols[j] = c.name
		}
		out[i] = TableInfo{Name: t.name, Columns: cols}
	}
	return out
}

// Export reads every table in one consistent read transaction (SQLite: a
// read transaction; PostgreSQL: REPEATABLE READ, READ ONLY) and calls fn
// for each row, table by table in Tables order, rows ordered by primary
// key. Values are nil, int64, string or []byte only, the same for both
// backends. Sealed values are exported sealed. The store must be at the
// latest schema version this build knows, which Export returns.
func (s *Store) Export(ctx context.Context, fn func(table string, row []any) error) (schemaVersion int, err error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.backend == BackendPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	err = s.inTx(ctx, opts, func(tx *sql.Tx) error {
		v, err := s.schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if v != len(s.migrations) {
			return fmt.Errorf("store schema version is %d, this moat exports version %d: migrate first", v, len(s.migrations))
		}
		schemaVersion = v
		for _, t := range tables {
			if err := exportTable(ctx, tx, t, fn); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("exporting store: %w", err)
	}
	return schemaVersion, nil
}

func exportTable(ctx context.Context, tx *sql.Tx, t tableSpec, fn func(string, []any) error) error {
	rows, err := tx.QueryContext(ctx, t.selectAll) //sqlcheck:ok query from the constant table list
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.name, err)
	}
	defer rows.Close()
	raw := make([]any, len(t.columns))
	ptrs := make([]any, len(t.columns))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("reading %s: %w", t.name, err)
		}
		row := make([]any, len(t.columns))
		for i, c := range t.columns {
			if row[i], err = normalise(raw[i], c.kind); err != nil {
				return fmt.Errorf("reading %s.%s: %w", t.name, c.name, err)
			}
		}
		if err := fn(t.name, row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", t.name, err)
	}
	return nil
}

// normalise turns what a driver returned into the one Go type of the
// column's kind.
func normalise(v any, kind colKind) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch kind {
	case kindInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case bool:
			return boolInt(x), nil
		}
	case kindText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case kindBytes:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("unexpected value of type %T", v)
}

// Import inserts rows into this store, which must be migrated to
// schemaVersion and empty, in one transaction: either every row is in or
// none. next returns io.EOF when done. Rows must come parents first, as
// Export gives them.
func (s *Store) Import(ctx context.Context, schemaVersion int, next func() (table string, row []any, err error)) error {
	byName := make(map[string]*tableSpec, len(tables))
	for i := range tables {
		byName[tables[i].name] = &tables[i]
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		v, err := s.schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if v != schemaVersion {
			return fmt.Errorf("the data has schema version %d, the store %d", schemaVersion, v)
		}
		if v != len(s.migrations) {
			return fmt.Errorf("store schema version is %d, this moat imports version %d: migrate first", v, len(s.migrations))
		}
		var n int64
		if err := tx.QueryRowContext(ctx, countAllRows).Scan(&n); err != nil {
			return fmt.Errorf("counting rows: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("the store is not empty (%d rows)", n)
		}
		for count := 1; ; count++ {
			table, row, err := next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading row %d: %w", count, err)
			}
			t, ok := byName[table]
			if !ok {
				return fmt.Errorf("row %d: unknown table %q", count, table)
			}
			if err := checkRow(t, row); err != nil {
				return fmt.Errorf("row %d: %w", count, err)
			}
			if _, err := tx.ExecContext(ctx, t.insert, row...); err != nil { //sqlcheck:ok query from the constant table list
				return fmt.Errorf("row %d: inserting into %s: %w", count, t.name, err)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("importing into store: %w", err)
	}
	return nil
}

// checkRow checks that row has one value of the right type per column.
func checkRow(t *tableSpec, row []any) error {
	if len(row) != len(t.columns) {
		return fmt.Errorf("%s: %d values for %d columns", t.name, len(row), len(t.columns))
	}
	for i, c := range t.columns {
		ok := false
		switch row[i].(type) {
		case nil:
			ok = true
		case int64:
			ok = c.kind == kindInt
		case string:
			ok = c.kind == kindText
		case []byte:
			ok = c.kind == kindBytes
		}
		if !ok {
			return fmt.Errorf("%s.%s: unexpected value of type %T", t.name, c.name, row[i])
		}
	}
	return nil
}

// Wipe deletes every row of every table, children first, in one
// transaction: for a confirmed restore into a store that is not empty.
// The schema and its version stay.
func (s *Store) Wipe(ctx context.Context) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for i := len(tables) - 1; i >= 0; i-- {
			if _, err := tx.ExecContext(ctx, tables[i].deleteAll); err != nil { //sqlcheck:ok query from the constant table list
				return fmt.Errorf("emptying %s: %w", tables[i].name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wiping store: %w", err)
	}
	return nil
}

// foreignKey is a reference Check verifies on PostgreSQL, with the query
// that lists the keys of up to orphanSample+1 orphaned rows.
type foreignKey struct {
	child, parent string
	orphans       string
}

const orphanSample = 10

var foreignKeys = []foreignKey{
	{"credentials", "users", `SELECT c.id FROM credentials c WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id) ORDER BY c.id LIMIT 11`},
	{"identities", "users", `SELECT i.id FROM identities i WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = i.user_id) ORDER BY i.id LIMIT 11`},
	{"sessions", "users", `SELECT s.id_hash FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id) ORDER BY s.id_hash LIMIT 11`},
}

const (
	sqliteIntegrityCheck  = `PRAGMA integrity_check`
	sqliteForeignKeyCheck = `PRAGMA foreign_key_check`
)

// Check verifies the database: on SQLite, PRAGMA integrity_check and
// PRAGMA foreign_key_check; on PostgreSQL, a query per foreign key that
// looks for orphaned rows. On both it checks the applied migrations
// against this build. The error names every problem found.
func (s *Store) Check(ctx context.Context) error {
	var problems []error
	have, err := s.readApplied(ctx, s.db)
	if err != nil {
		return fmt.Errorf("checking store: %w", err)
	}
	if _, err := s.checkApplied(have); err != nil {
		problems = append(problems, err)
	}
	if s.backend == BackendSQLite {
		p, err := s.checkSQLite(ctx)
		if err != nil {
			return fmt.Errorf("checking store: %w", err)
		}
		problems = append(problems, p...)
	} else {
		p, err := s.checkOrphans(ctx)
		if err != nil {
			return fmt.Errorf("checking store: %w", err)
		}
		problems = append(problems, p...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("checking store: %w", errors.Join(problems...))
	}
	return nil
}

func (s *Store) checkSQLite(ctx context.Context) ([]error, error) {
	var problems []error
	rows, err := s.db.QueryContext(ctx, sqliteIntegrityCheck)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			rows.Close()
			return nil, err
		}
		if msg != "ok" {
			problems = append(problems, fmt.Errorf("integrity: %s", msg))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = s.db.QueryContext(ctx, sqliteForeignKeyCheck)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			table, parent string
			rowid         sql.NullInt64
			fkid          int64
		)
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return nil, err
		}
		problems = append(problems, fmt.Errorf("foreign key: %s row %d refers to a missing %s row", table, rowid.Int64, parent))
	}
	return problems, rows.Err()
}

func (s *Store) checkOrphans(ctx context.Context) ([]error, error) {
	var problems []error
	for _, fk := range foreignKeys {
		rows, err := s.db.QueryContext(ctx, fk.orphans) //sqlcheck:ok query from the constant table list
		if err != nil {
			return nil, err
		}
		var keys []string
		for rows.Next() {
			var key []byte
			if err := rows.Scan(&key); err != nil {
				rows.Close()
				return nil, err
			}
			if fk.child == "sessions" {
				keys = append(keys, hex.EncodeToString(key))
			} else {
				keys = append(keys, string(key))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			continue
		}
		more := ""
		if len(keys) > orphanSample {
			keys, more = keys[:orphanSample], " and more"
		}
		problems = append(problems, fmt.Errorf("foreign key: %s rows %q%s refer to missing %s rows", fk.child, keys, more, fk.parent))
	}
	return problems, nil
}
