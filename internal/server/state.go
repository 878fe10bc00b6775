package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/moatgw/moat/internal/backup"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/store"
)

// State is Moat's durable state, opened and ready: the store, migrated, with
// the key ring as its cipher.
type State struct {
	Store *store.Store
	Ring  *keyring.Ring
}

// Close closes the store.
func (st *State) Close() error { return st.Store.Close() }

// StateOptions tune OpenState.
type StateOptions struct {
	// Migrate applies pending migrations; otherwise a store that is behind
	// is an error.
	Migrate bool
	// MigrateURL opens the store with database.migrate_url instead of database.url.
	MigrateURL bool
	// PreviousMasterKey, when set, also unwraps data keys still wrapped by
	// an older master key (to resume a master key rotation).
	PreviousMasterKey []byte
}

// MasterKey resolves and parses keys.master_key. Its errors never contain
// the key.
func MasterKey(cfg *config.Config) ([]byte, error) {
	if cfg.Keys.MasterKey == "" {
		return nil, errors.New("keys.master_key is not set: Moat refuses to run without encryption at rest; make a key with `moat keys generate`")
	}
	v, err := cfg.Keys.MasterKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("keys.master_key: %w", err)
	}
	k, err := keyring.ParseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("keys.master_key: %w", err)
	}
	return k, nil
}

// DatabaseURL resolves database.url (or migrate_url), which may be a secret
// reference. "" means SQLite in the data directory.
func DatabaseURL(cfg *config.Config, migrate bool) (string, error) {
	u := cfg.Database.URL
	if migrate && cfg.Database.MigrateURL != "" {
		u = cfg.Database.MigrateURL
	}
	if u == "" || !isSecretRef(u) {
		return u, nil
	}
	v, err := config.ResolveSecret(u)
	if err != nil {
		return "", fmt.Errorf("database url: %w", err)
	}
	return v, nil
}

// resolveURL returns a URL from the config, resolving it when it is a
// secret reference (a URL with a password must be one; validation saw to
// that).
func resolveURL(u string) (string, error) {
	if !isSecretRef(u) {
		return u, nil
	}
	return config.ResolveSecret(u)
}

func isSecretRef(s string) bool {
	return len(s) > 4 && (s[:4] == "env:" || len(s) > 5 && s[:5] == "file:")
}

// SQLitePath is where the SQLite database lives for cfg.
func SQLitePath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "moat.db") }

// OpenState opens the store and the key ring for cfg. A missing or wrong
// master key is an error: Moat never runs with its secrets unreadable or
// unencrypted.
func OpenState(ctx context.Context, cfg *config.Config, o StateOptions, logger *slog.Logger) (*State, error) {
	master, err := MasterKey(cfg)
	if err != nil {
		return nil, err
	}
	url, err := DatabaseURL(cfg, o.MigrateURL)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{URL: url, DataDir: cfg.DataDir, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	// Migrate only when something is pending: a least-privileged runtime
	// role cannot even run the idempotent DDL that Migrate starts with.
	pending, err := st.Pending(ctx)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("reading the store's schema version: %w", err)
	}
	switch {
	case len(pending) > 0 && o.Migrate:
		applied, err := st.Migrate(ctx)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("migrating the store (with a least-privileged role, run moat db migrate with database.migrate_url first): %w", err)
		}
		for _, m := range applied {
			logger.Info("database migration applied", "version", m.Version, "name", m.Name)
		}
	case len(pending) > 0:
		st.Close()
		return nil, fmt.Errorf("the store's schema is behind this moat by %d migrations: run moat db migrate", len(pending))
	}
	ring, err := keyring.OpenWithPrevious(ctx, st.DataKeys(), master, o.PreviousMasterKey, logger.With("component", "keyring"))
	if err != nil {
		st.Close()
		return nil, err
	}
	st.SetCipher(ring)
	return &State{Store: st, Ring: ring}, nil
}

// BackupSettings are the config's backup encryption, resolved.
type BackupSettings struct {
	Dir        string
	Encryption backup.Encryption
	Decryption backup.Decryption
	Scratch    backup.ScratchOptions
	CanVerify  bool // the config can decrypt what it encrypts
	JSON       bool // report as JSON (set by the CLI)
}

// BackupCrypto resolves the backup section's secrets. Without a backup
// section there is nothing to encrypt with: an error that says so.
func BackupCrypto(cfg *config.Config) (*BackupSettings, error) {
	b := cfg.Backup
	if b == nil {
		return nil, errors.New("the config has no backup section: add one with recipients or a passphrase (docs/backup.md)")
	}
	bs := &BackupSettings{Dir: b.Dir}
	bs.Encryption.Recipients = b.Recipients
	if b.Passphrase != "" {
		p, err := b.Passphrase.Resolve()
		if err != nil {
			return nil, fmt.Errorf("backup.passphrase: %w", err)
		}
		bs.Encryption.Passphrase, bs.Decryption.Passphrase = p, p
		bs.CanVerify = true
	}
	if b.Identity != "" {
		id, err := b.Identity.Resolve()
		if err != nil {
			return nil, fmt.Errorf("backup.identity: %w", err)
		}
		bs.Decryption.Identities = []string{id}
		bs.CanVerify = true
	}
	// A PostgreSQL backup is verified in a temporary schema, which takes the
	// migration role's privileges when one is configured.
	if u, err := DatabaseURL(cfg, true); err == nil {
		bs.Scratch.PostgresURL = u
	}
	return bs, nil
}
