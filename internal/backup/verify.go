package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// ScratchOptions says where Verify restores a backup to check it.
type ScratchOptions struct {
	// PostgresURL is a database in which a backup of a PostgreSQL store is
	// restored into a temporary schema (created and dropped by Verify; the
	// role needs CREATE on the database). Empty: such backups are restored
	// into a scratch SQLite file instead, and the report says so.
	PostgresURL string
	// TempDir is where the scratch SQLite directory is made; empty means
	// the system's temporary directory.
	TempDir string
	// Logger is given to the scratch store; nil discards.
	Logger *slog.Logger
}

// Report is the outcome of verifying a backup.
type Report struct {
	OK       bool      `json:"ok"`
	Manifest *Manifest `json:"manifest,omitempty"` // nil when the file could not be opened
	// Scratch is where the backup was restored: "sqlite" or "postgres".
	Scratch  string        `json:"scratch,omitempty"`
	Tables   []TableReport `json:"tables,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
	Problems []string      `json:"problems,omitempty"`
	Duration time.Duration `json:"duration"`

	errs []error
}

// TableReport compares one table of the backup with what a restore of it
// holds.
type TableReport struct {
	Name       string `json:"name"`
	Rows       int64  `json:"rows"`     // in the backup
	Restored   int64  `json:"restored"` // read back after restoring
	ChecksumOK bool   `json:"checksum_ok"`
}

// Err is nil for a backup that verified, and otherwise an error joining
// every problem found; it matches the package's sentinel errors
// (ErrWrongKey, ErrTruncated, ErrChecksum, ...) with errors.Is.
func (r *Report) Err() error {
	if r.OK {
		return nil
	}
	if len(r.errs) == 0 {
		return errors.New("backup did not verify")
	}
	return errors.Join(r.errs...)
}

func (r *Report) fail(err error) {
	r.errs = append(r.errs, err)
	r.Problems = append(r.Problems, err.Error())
}

// fileProblem reports whether err says something about the backup file
// rather than about the means to check it.
func fileProblem(err error) bool {
	for _, e := range []error{ErrWrongKey, ErrTruncated, ErrDamaged, ErrNotBackup, ErrMalformed, ErrChecksum, ErrUnsupported, ErrEmptyFile} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Verify proves that the backup read from r can be restored: it decrypts
// it, restores it into a scratch database (see ScratchOptions) migrated to
// the backup's schema version, runs the store's integrity checks, reads
// every table back and compares row counts and checksums with the
// manifest. The scratch database is removed afterwards.
//
// A backup that is wrong in any way (wrong key, damaged, truncated,
// tampered, failing checks) gives a Report with OK false and the problems
// found; Verify returns an error only when it could not carry out the
// check (no identity given, scratch database unavailable, ctx done).
func Verify(ctx context.Context, r io.Reader, dec Decryption, scratch ScratchOptions) (*Report, error) {
	start := time.Now()
	rep := &Report{}
	err := verify(ctx, r, dec, scratch, rep)
	rep.Duration = time.Since(start)
	if err != nil {
		return nil, err
	}
	rep.OK = len(rep.errs) == 0
	return rep, nil
}

func verify(ctx context.Context, r io.Reader, dec Decryption, o ScratchOptions, rep *Report) error {
	pr, err := decrypt(r, dec)
	if err != nil {
		if fileProblem(err) {
			rep.fail(err)
			return nil
		}
		return fmt.Errorf("verifying backup: %w", err)
	}
	d, err := newDecoder(pr)
	if err != nil {
		if fileProblem(err) {
			rep.fail(err)
			return nil
		}
		return fmt.Errorf("verifying backup: %w", err)
	}
	rep.Manifest = d.manifest()
	sc, err := openScratch(ctx, d.hdr.Backend, o)
	if err != nil {
		return fmt.Errorf("verifying backup: %w", err)
	}
	defer func() {
		if err := sc.cleanup(); err != nil {
			rep.Notes = append(rep.Notes, "removing the scratch database: "+err.Error())
		}
	}()
	rep.Scratch = sc.kind
	if sc.note != "" {
		rep.Notes = append(rep.Notes, sc.note)
	}
	if _, err := sc.s.Migrate(ctx); err != nil {
		return fmt.Errorf("verifying backup: migrating the scratch database: %w", err)
	}
	if err := compatible(ctx, sc.s, &d.hdr); err != nil {
		if fileProblem(err) {
			rep.fail(err)
			return nil
		}
		return fmt.Errorf("verifying backup: %w", err)
	}
	if err := importRows(ctx, sc.s, d); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.fail(err)
		return nil
	}
	rep.Manifest = d.manifest()
	if err := sc.s.Check(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.fail(fmt.Errorf("the restored data fails the store's integrity checks: %w", err))
	}
	tables, notes, problems, err := compareExport(ctx, sc.s, d)
	if err != nil {
		return fmt.Errorf("verifying backup: reading the scratch database back: %w", err)
	}
	rep.Tables = tables
	rep.Notes = append(rep.Notes, notes...)
	for _, p := range problems {
		rep.fail(p)
	}
	return nil
}

// compatible checks that s, migrated, can take the rows of hdr: same
// schema version, same tables and columns.
func compatible(ctx context.Context, s *store.Store, hdr *header) error {
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	switch {
	case hdr.SchemaVersion > v:
		return fmt.Errorf("%w: the backup is at schema version %d, newer than this Moat's %d: use a Moat release at least as new as the one that made it", ErrUnsupported, hdr.SchemaVersion, v)
	case hdr.SchemaVersion < v:
		return fmt.Errorf("%w: the backup is at schema version %d and the store at %d: restore it with the Moat release that made it, then upgrade", ErrUnsupported, hdr.SchemaVersion, v)
	}
	have := s.Tables()
	if len(have) != len(hdr.Tables) {
		return fmt.Errorf("%w: the backup has %d tables, schema version %d has %d", ErrMalformed, len(hdr.Tables), v, len(have))
	}
	for i, t := range have {
		if t.Name != hdr.Tables[i].Name || !slices.Equal(t.Columns, hdr.Tables[i].Columns) {
			return fmt.Errorf("%w: table %s does not match schema version %d", ErrMalformed, hdr.Tables[i].Name, v)
		}
	}
	return nil
}

// importRows imports what d holds into s. When the file is at fault the
// error is the decoder's, not the store's wrapping of it.
func importRows(ctx context.Context, s *store.Store, d *decoder) error {
	err := s.Import(ctx, d.hdr.SchemaVersion, d.next)
	if d.err != nil && !errors.Is(d.err, io.EOF) {
		return d.err
	}
	if err != nil {
		return fmt.Errorf("importing the rows: %w", err)
	}
	if !d.done {
		return errors.New("importing the rows: the store stopped before the end of the backup")
	}
	return nil
}

// compareExport reads s back and compares each table with what d read
// from the backup file.
func compareExport(ctx context.Context, s *store.Store, d *decoder) (tables []TableReport, notes []string, problems []error, err error) {
	got, err := exportDigests(ctx, s)
	if err != nil {
		return nil, nil, nil, err
	}
	tables, notes, problems = compareDigests(d.tables, d.digests, got)
	return tables, notes, problems, nil
}

// exportDigests digests every table of s.
func exportDigests(ctx context.Context, s *store.Store) (map[string]*digest, error) {
	got := map[string]*digest{}
	var buf []byte
	_, err := s.Export(ctx, func(table string, row []any) error {
		dg := got[table]
		if dg == nil {
			dg = newDigest()
			got[table] = dg
		}
		var err error
		if buf, err = appendRow(buf[:0], row); err != nil {
			return fmt.Errorf("table %s: %w", table, err)
		}
		dg.add(buf)
		return nil
	})
	return got, err
}

// compareDigests compares the tables of a backup (with their digests as
// read from the file) with the digests of the same tables read back from
// a store.
func compareDigests(want []TableManifest, read []*digest, got map[string]*digest) (tables []TableReport, notes []string, problems []error) {
	for i, t := range want {
		g := got[t.Name]
		if g == nil {
			g = newDigest()
		}
		tr := TableReport{Name: t.Name, Rows: t.Rows, Restored: g.rows}
		switch {
		case g.rows != t.Rows:
			problems = append(problems, fmt.Errorf("table %s: %w: %d rows in the backup, %d after restoring", t.Name, ErrChecksum, t.Rows, g.rows))
		case hex.EncodeToString(g.sha256()) == t.SHA256:
			tr.ChecksumOK = true
		case g.sum == read[i].sum:
			tr.ChecksumOK = true
			notes = append(notes, fmt.Sprintf("table %s: the rows came back in another order (the databases sort text differently); their contents match", t.Name))
		default:
			problems = append(problems, fmt.Errorf("table %s: %w after restoring: the data read back differs from the backup", t.Name, ErrChecksum))
		}
		tables = append(tables, tr)
	}
	return tables, notes, problems
}

// scratchDB is a temporary, empty store.
type scratchDB struct {
	s       *store.Store
	kind    string // sqlite or postgres
	note    string
	cleanup func() error
}

func openScratch(ctx context.Context, backend string, o ScratchOptions) (*scratchDB, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	note := "a PostgreSQL backup verified in a scratch SQLite database, as no PostgreSQL URL was given"
	if backend == "postgres" && o.PostgresURL != "" {
		schema := "moat_verify_" + randomHex(8)
		s, err := store.Open(ctx, store.Options{URL: o.PostgresURL, Schema: schema, Logger: logger})
		if err == nil {
			return &scratchDB{s: s, kind: "postgres", cleanup: func() error {
				return dropSchema(ctx, s, schema)
			}}, nil
		}
		// A least-privileged role may not create schemas: verify in SQLite
		// rather than not at all, and say so.
		logger.Warn("cannot make a scratch PostgreSQL schema; verifying in a scratch SQLite database", "err", err)
		note = "a PostgreSQL backup verified in a scratch SQLite database, as the PostgreSQL role could not create a scratch schema"
	}
	dir, err := os.MkdirTemp(o.TempDir, "moat-verify-")
	if err != nil {
		return nil, fmt.Errorf("making a scratch directory: %w", err)
	}
	s, err := store.Open(ctx, store.Options{DataDir: dir, Logger: logger})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("opening a scratch SQLite database: %w", err)
	}
	sc := &scratchDB{s: s, kind: "sqlite", cleanup: func() error {
		return errors.Join(s.Close(), os.RemoveAll(dir))
	}}
	if backend == "postgres" {
		sc.note = note
	}
	return sc, nil
}

// dropSchema drops the scratch schema, even when ctx is done, and closes s.
func dropSchema(ctx context.Context, s *store.Store, schema string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// An identifier cannot be a query parameter; schema is made by
	// randomHex above, never taken from input.
	_, err := s.DB().ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) //sqlcheck:ok the schema name is made here: moat_verify_ and random hex
	if err != nil {
		err = fmt.Errorf("dropping scratch schema %s: %w", schema, err)
	}
	return errors.Join(err, s.Close())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
