// Package backup writes, verifies and restores encrypted backups of Moat's
// store, and takes them on a schedule for moat serve.
//
// A backup is one age-encrypted file (to X25519 recipients or a
// passphrase) holding every row of every table in a canonical, typed
// encoding, with a row count and SHA-256 per table. Values the store keeps
// sealed stay sealed inside the backup, and the key ring's data keys are
// included only in their wrapped form, so a restore needs the same master
// key; the master key itself is never in a backup. docs/backup.md
// describes the file format.
//
// Every function streams: a backup of any size is written, verified and
// restored in bounded memory, and a reader of a backup file caps every
// length it reads.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/moatgw/moat/internal/store"
)

// Manifest describes a backup: where it came from and what each table
// holds.
type Manifest struct {
	Format        int             `json:"format"`
	SchemaVersion int             `json:"schema_version"`
	Backend       string          `json:"backend"` // sqlite or postgres
	CreatedAt     time.Time       `json:"created_at"`
	Tables        []TableManifest `json:"tables"`
}

// TableManifest is one table of a backup. Rows and SHA256 are zero for a
// table whose end was never read.
type TableManifest struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    int64    `json:"rows"`
	// SHA256 is the hex SHA-256 of the canonical encodings of the table's
	// rows, in primary key order.
	SHA256 string `json:"sha256"`
}

// TotalRows is the number of rows in every table.
func (m *Manifest) TotalRows() int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

// Create writes an encrypted backup of s to w and returns its manifest.
// The rows are read in one read transaction, so the backup is a consistent
// snapshot even while Moat is serving. On error, what was written to w is
// not a valid backup (age refuses it as truncated).
func Create(ctx context.Context, s *store.Store, w io.Writer, enc Encryption) (*Manifest, error) {
	return create(ctx, s, w, enc, time.Now())
}

func create(ctx context.Context, s *store.Store, w io.Writer, enc Encryption, now time.Time) (*Manifest, error) {
	rcpts, err := enc.recipients()
	if err != nil {
		return nil, err
	}
	version, err := s.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: reading the schema version: %w", err)
	}
	hdr := header{
		Format:        formatVersion,
		SchemaVersion: version,
		Backend:       s.Backend(),
		CreatedAt:     now.UTC().Truncate(time.Second),
	}
	for _, t := range s.Tables() {
		hdr.Tables = append(hdr.Tables, headerTable{Name: t.Name, Columns: t.Columns})
	}
	aw, err := age.Encrypt(w, rcpts...)
	if err != nil {
		return nil, fmt.Errorf("backup: encrypting: %w", err)
	}
	e, err := newEncoder(aw, hdr)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	exported, err := s.Export(ctx, e.row)
	if err != nil {
		return nil, fmt.Errorf("backup: exporting the store: %w", err)
	}
	if exported != version {
		return nil, fmt.Errorf("backup: the store's schema changed from version %d to %d during the backup", version, exported)
	}
	tables, err := e.finish()
	if err != nil {
		return nil, fmt.Errorf("backup: writing: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("backup: writing: %w", err)
	}
	return &Manifest{
		Format:        hdr.Format,
		SchemaVersion: hdr.SchemaVersion,
		Backend:       hdr.Backend,
		CreatedAt:     hdr.CreatedAt,
		Tables:        tables,
	}, nil
}

// CreateFile writes a backup of s to path: first to path.tmp (mode 0600),
// which is synced to disk and then renamed to path, so path never holds a
// partial backup. An existing file at path is replaced.
func CreateFile(ctx context.Context, s *store.Store, path string, enc Encryption) (*Manifest, error) {
	m, _, err := createFile(ctx, s, path, enc, time.Now())
	return m, err
}

// fileInfo is what createFile learns about the file it wrote.
type fileInfo struct {
	Size   int64
	SHA256 string
}

func createFile(ctx context.Context, s *store.Store, path string, enc Encryption, now time.Time) (*Manifest, fileInfo, error) {
	tmp := path + ".tmp"
	// A leftover from a crash may have other permissions: start afresh.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fileInfo{}, fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fileInfo{}, fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	hw := &hashWriter{w: f, h: sha256.New()}
	m, err := create(ctx, s, hw, enc, now)
	if err != nil {
		return nil, fileInfo{}, err
	}
	if err := f.Sync(); err != nil {
		return nil, fileInfo{}, fmt.Errorf("backup: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return nil, fileInfo{}, fmt.Errorf("backup: closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fileInfo{}, fmt.Errorf("backup: %w", err)
	}
	ok = true
	syncDir(filepath.Dir(path))
	return m, fileInfo{Size: hw.n, SHA256: hex.EncodeToString(hw.h.Sum(nil))}, nil
}

// syncDir makes a rename in dir durable, where the system allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}
