package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/moatgw/moat/internal/store"
)

// ErrNotEmpty is returned by Restore into a store that holds data when
// wipe is false.
var ErrNotEmpty = errors.New("the store is not empty: restoring would replace its data")

// Restore imports the backup read from r into s, which must be migrated to
// the backup's schema version. The rows are imported in one transaction:
// a backup that turns out to be damaged part way leaves s as it was.
// Afterwards the store's integrity checks run and every table is read back
// and compared with the manifest.
//
// If s holds data, Restore fails with ErrNotEmpty unless wipe is true.
// With wipe, the whole backup is first read and checked (decryption,
// format, every table's count and checksum) without touching s; only then
// is s wiped and the backup imported. Wiping and importing are two
// transactions: if the import fails after the wipe (the database fails,
// or a row breaks a constraint), s is left empty, and the error says so.
// The backup is read twice: from r itself when it is an io.Seeker (a
// file), otherwise from a temporary copy of the (still encrypted) input.
//
// Run Restore with Moat stopped: rows written by a running server between
// the wipe and the import make the import fail.
func Restore(ctx context.Context, s *store.Store, r io.Reader, dec Decryption, wipe bool) (*Manifest, error) {
	if _, err := dec.identities(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	empty, err := isEmpty(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if !empty && !wipe {
		return nil, fmt.Errorf("restore: %w", ErrNotEmpty)
	}
	if empty {
		m, err := restoreInto(ctx, s, r, dec)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		return m, nil
	}

	rs, done, err := rewindable(r)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer done()
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := scan(ctx, s, rs, dec); err != nil {
		return nil, fmt.Errorf("restore: the store was not changed: %w", err)
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("restore: the store was not changed: %w", err)
	}
	if err := s.Wipe(ctx); err != nil {
		return nil, fmt.Errorf("restore: wiping the store: %w", err)
	}
	m, err := restoreInto(ctx, s, rs, dec)
	if err != nil {
		return nil, fmt.Errorf("restore: the store was wiped but the restore failed, so the store is now empty: restore it again from a good backup: %w", err)
	}
	return m, nil
}

// restoreInto imports the backup in r into the empty store s and checks
// the result.
func restoreInto(ctx context.Context, s *store.Store, r io.Reader, dec Decryption) (*Manifest, error) {
	pr, err := decrypt(r, dec)
	if err != nil {
		return nil, err
	}
	d, err := newDecoder(pr)
	if err != nil {
		return nil, err
	}
	if err := compatible(ctx, s, &d.hdr); err != nil {
		return nil, err
	}
	if err := importRows(ctx, s, d); err != nil {
		return nil, err
	}
	m := d.manifest()
	if err := s.Check(ctx); err != nil {
		return m, fmt.Errorf("the rows were restored, but the store fails its integrity checks: %w", err)
	}
	_, _, problems, err := compareExport(ctx, s, d)
	if err != nil {
		return m, fmt.Errorf("the rows were restored, but reading them back failed: %w", err)
	}
	if len(problems) > 0 {
		return m, fmt.Errorf("the rows were restored, but they differ from the backup: %w", errors.Join(problems...))
	}
	return m, nil
}

// scan reads the whole backup in r, checking that s can take it and that
// every table's count and checksum match, without writing anything.
func scan(ctx context.Context, s *store.Store, r io.Reader, dec Decryption) error {
	pr, err := decrypt(r, dec)
	if err != nil {
		return err
	}
	d, err := newDecoder(pr)
	if err != nil {
		return err
	}
	if err := compatible(ctx, s, &d.hdr); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, _, err := d.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var errStop = errors.New("stop")

// isEmpty reports whether s holds no row at all.
func isEmpty(ctx context.Context, s *store.Store) (bool, error) {
	_, err := s.Export(ctx, func(string, []any) error { return errStop })
	switch {
	case errors.Is(err, errStop):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the store: %w", err)
	}
	return true, nil
}

// rewindable returns r as an io.ReadSeeker: r itself if it can seek,
// otherwise a temporary file holding a copy of it. done removes the copy.
func rewindable(r io.Reader) (io.ReadSeeker, func(), error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		if _, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return rs, func() {}, nil
		}
	}
	f, err := os.CreateTemp("", "moat-restore-*.age")
	if err != nil {
		return nil, nil, fmt.Errorf("copying the backup to a temporary file: %w", err)
	}
	done := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	if _, err := io.Copy(f, r); err != nil {
		done()
		return nil, nil, fmt.Errorf("copying the backup to a temporary file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, err
	}
	return f, done, nil
}
