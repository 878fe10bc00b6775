package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Backend names, as Backend reports them.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// SQLiteFile is the name of the SQLite database in the data directory.
const SQLiteFile = "moat.db"

// sqlitePragmas are applied by the driver to every new connection of the
// pool: write-ahead logging so readers never block the writer, foreign keys
// enforced, a busy timeout so a writer waits for the lock instead of failing,
// and synchronous=NORMAL, durable in WAL mode except for the last
// transactions before a power loss. _txlock=immediate makes every write
// transaction take the write lock at BEGIN, so two transactions never both
// read and then fail to upgrade (read-only transactions still begin
// deferred).
const sqlitePragmas = "_pragma=busy_timeout(5000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_txlock=immediate"

// Connection pool sizes. SQLite readers are cheap but each keeps a page
// cache; PostgreSQL connections are a server resource shared by every Moat
// instance, so a few per instance is enough.
const (
	sqliteMaxConns   = 8
	postgresMaxConns = 10
)

// schemaName is what Options.Schema must look like: a plain lower-case
// PostgreSQL identifier, so it can be put in search_path as it is.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Options says which database to open.
type Options struct {
	// URL selects the backend: empty for SQLite in DataDir, or a
	// postgres:// or postgresql:// connection URL for PostgreSQL.
	URL string
	// DataDir is the directory of the SQLite database (SQLiteFile). It is
	// created 0700 if missing and its mode is tightened to 0700 if looser.
	DataDir string
	// Schema is, for PostgreSQL only, a schema to use instead of public
	// (tests, backup verification). It is created if missing.
	Schema string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Store is Moat's durable state on SQLite or PostgreSQL. Its methods and
// the aggregates it returns are safe for concurrent use.
type Store struct {
	db         *sql.DB
	backend    string
	log        *slog.Logger
	cipher     atomic.Pointer[cipherBox]
	wlock      chan struct{} // SQLite: one writer at a time in this process
	migrations []migration
	schemaKey  int32 // PostgreSQL: second key of the migration advisory lock
}

// cipherBox lets a Cipher interface value sit in an atomic.Pointer.
type cipherBox struct{ c Cipher }

// Open opens the database o describes and checks that it answers. It does
// not migrate: call Migrate for that.
func Open(ctx context.Context, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "store")
	migs, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, err
	}
	s := &Store{log: log, migrations: migs}
	switch {
	case o.URL == "":
		if o.Schema != "" {
			return nil, errors.New("opening store: schema is for PostgreSQL only")
		}
		s.backend = BackendSQLite
		s.wlock = make(chan struct{}, 1)
		s.db, err = openSQLite(ctx, o.DataDir, log)
	case strings.HasPrefix(o.URL, "postgres://"), strings.HasPrefix(o.URL, "postgresql://"):
		s.backend = BackendPostgres
		s.schemaKey = lockKey(o.Schema)
		s.db, err = openPostgres(ctx, o.URL, o.Schema)
	default:
		// The URL is not repeated: it may hold a password.
		return nil, errors.New("opening store: unsupported database url: want empty (SQLite in the data directory) or postgres://")
	}
	if err != nil {
		return nil, err
	}
	log.Debug("store opened", "backend", s.backend)
	return s, nil
}

func openSQLite(ctx context.Context, dataDir string, log *slog.Logger) (*sql.DB, error) {
	if dataDir == "" {
		return nil, errors.New("opening sqlite store: no data directory")
	}
	if strings.ContainsAny(dataDir, "?#") {
		return nil, errors.New("opening sqlite store: data directory path must not contain '?' or '#'")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sqlite store: creating data directory: %w", err)
	}
	if err := tightenMode(dataDir, 0o700, log); err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	path := filepath.Join(dataDir, SQLiteFile)
	// Create the file ourselves so SQLite never creates it with the umask's
	// mode; SQLite gives the -wal and -shm files the mode of the database.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	if err := tightenMode(path, 0o600, log); err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	db.SetMaxOpenConns(sqliteMaxConns)
	db.SetMaxIdleConns(sqliteMaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		if err := tightenMode(side, 0o600, log); err != nil && !errors.Is(err, fs.ErrNotExist) {
			db.Close()
			return nil, fmt.Errorf("opening sqlite store: %w", err)
		}
	}
	return db, nil
}

// tightenMode makes sure path grants nothing beyond want, fixing it (and
// saying so) when it does.
func tightenMode(path string, want fs.FileMode, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^want == 0 {
		return nil
	}
	log.Warn("tightening permissions of the database path", "path", path, "was", fi.Mode().Perm().String(), "now", want.String())
	if err := os.Chmod(path, want); err != nil {
		return fmt.Errorf("restricting permissions of %s: %w", path, err)
	}
	return nil
}

func openPostgres(ctx context.Context, url, schema string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	if schema != "" {
		if !schemaName.MatchString(schema) {
			return nil, fmt.Errorf("opening postgres store: invalid schema name %q: want lower-case letters, digits and _", schema)
		}
		if err := createSchema(ctx, cfg.Copy(), schema); err != nil {
			return nil, err
		}
		cfg.RuntimeParams["search_path"] = schema
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	return db, nil
}

const schemaExists = `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`

// createSchema creates schema on a connection of its own, so no pooled
// connection has seen its search_path before the schema existed. Several
// processes may race to create it; losing that race is fine.
func createSchema(ctx context.Context, cfg *pgx.ConnConfig, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("opening postgres store: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, schemaExists, schema).Scan(&exists); err != nil {
		return fmt.Errorf("opening postgres store: looking up schema: %w", err)
	}
	if exists {
		return nil
	}
	// The one statement with a name in it: validated above, and quoted.
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()) //sqlcheck:ok schema name validated and quoted with pgx.Identifier
	if err != nil {
		if qerr := conn.QueryRow(ctx, schemaExists, schema).Scan(&exists); qerr == nil && exists {
			return nil
		}
		return fmt.Errorf("opening postgres store: creating schema: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Backend is BackendSQLite or BackendPostgres.
func (s *Store) Backend() string { return s.backend }

// DB is the underlying database, for checks that need raw access (such as
// the privileges of the database role). Writes through it bypass the
// store's encryption and its write serialisation.
func (s *Store) DB() *sql.DB { return s.db }

// SetCipher sets the cipher that seals and opens encrypted fields; nil
// unsets it. Until one is set, reading or writing a non-empty encrypted
// field fails with ErrNoCipher. Safe to call while the store is in use.
func (s *Store) SetCipher(c Cipher) {
	if c == nil {
		s.cipher.Store(nil)
		return
	}
	s.cipher.Store(&cipherBox{c})
}

func (s *Store) currentCipher() Cipher {
	if b := s.cipher.Load(); b != nil {
		return b.c
	}
	return nil
}

// Users returns the users aggregate.
func (s *Store) Users() Users { return userStore{s} }

// Credentials returns the credentials aggregate.
func (s *Store) Credentials() Credentials { return credentialStore{s} }

// Identities returns the external identities aggregate.
func (s *Store) Identities() Identities { return identityStore{s} }

// Sessions returns the sessions aggregate.
func (s *Store) Sessions() Sessions { return sessionStore{s} }

// APIKeys returns the API keys aggregate.
func (s *Store) APIKeys() APIKeys { return apiKeyStore{s} }

// SigningKeys returns the signing keys aggregate.
func (s *Store) SigningKeys() SigningKeys { return signingKeyStore{s} }

// Secrets returns the named secrets aggregate.
func (s *Store) Secrets() Secrets { return secretStore{s} }

// Audit returns the audit log.
func (s *Store) Audit() Audit { return auditStore{s} }

// Backups returns the backup records aggregate.
func (s *Store) Backups() Backups { return backupStore{s} }

// DataKeys returns the key ring's wrapped data keys.
func (s *Store) DataKeys() DataKeys { return dataKeyStore{s} }
