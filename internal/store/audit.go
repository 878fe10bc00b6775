package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// auditStore implements Audit. Records are never updated or deleted
// through the store.
type auditStore struct{ s *Store }

const (
	// The sequence number is the last one plus one, taken in the same
	// statement, under the write lock (SQLite) or a table lock that lets
	// readers in but one appender at a time (PostgreSQL): gap-free and
	// strictly increasing whatever the number of appenders.
	appendAudit    = `INSERT INTO audit_log (seq, at, kind, data, prev_hash, hash) VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log), $1, $2, $3, $4, $5) RETURNING seq`
	lockAuditTable = `LOCK TABLE audit_log IN EXCLUSIVE MODE`
	listAudit      = `SELECT seq, at, kind, data, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`
	lastAudit      = `SELECT seq, at, kind, data, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1`
)

// Append stores r with the next sequence number and sets r.Seq (and
// r.Time, if it was zero).
func (as auditStore) Append(ctx context.Context, r *AuditRecord) error {
	if r.Kind == "" {
		return errors.New("appending audit record: empty kind")
	}
	at := orNow(r.Time)
	var seq int64
	err := as.s.writeTx(ctx, func(tx *sql.Tx) error {
		if as.s.backend == BackendPostgres {
			if _, err := tx.ExecContext(ctx, lockAuditTable); err != nil {
				return err
			}
		}
		return tx.QueryRowContext(ctx, appendAudit, micros(at), r.Kind, nullBytes(r.Data),
			nullBytes(r.PrevHash), nullBytes(r.Hash)).Scan(&seq)
	})
	if err != nil {
		return fmt.Errorf("appending audit record: %w", mapErr(err))
	}
	r.Seq, r.Time = seq, at
	return nil
}

func scanAudit(row scanner) (*AuditRecord, error) {
	var (
		r  AuditRecord
		at sql.NullInt64
	)
	if err := row.Scan(&r.Seq, &at, &r.Kind, &r.Data, &r.PrevHash, &r.Hash); err != nil {
		return nil, notFound(err)
	}
	r.Time = fromMicros(at)
	r.Data, r.PrevHash, r.Hash = bytesOrNil(r.Data), bytesOrNil(r.PrevHash), bytesOrNil(r.Hash)
	return &r, nil
}

// List returns up to limit records with Seq > after, in order. limit must
// be positive.
func (as auditStore) List(ctx context.Context, after int64, limit int) ([]*AuditRecord, error) {
	if limit <= 0 {
		return nil, errors.New("listing audit records: limit must be positive")
	}
	rows, err := as.s.db.QueryContext(ctx, listAudit, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing audit records: %w", err)
	}
	defer rows.Close()
	var out []*AuditRecord
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("listing audit records: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit records: %w", err)
	}
	return out, nil
}

func (as auditStore) Last(ctx context.Context) (*AuditRecord, error) {
	r, err := scanAudit(as.s.db.QueryRowContext(ctx, lastAudit))
	if err != nil {
		return nil, fmt.Errorf("reading last audit record: %w", err)
	}
	return r, nil
}

// backupStore implements Backups.
type backupStore struct{ s *Store }

const (
	insertBackup = `INSERT INTO backups (id, created_at, file, size, sha256, verified_at, verify_ok, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	updateBackup = `UPDATE backups SET file = $1, size = $2, sha256 = $3, verified_at = $4, verify_ok = $5, error = $6 WHERE id = $7`
	listBackups  = `SELECT id, created_at, file, size, sha256, verified_at, verify_ok, error FROM backups ORDER BY created_at DESC, id DESC`
)

// Create stores b: ErrConflict on a taken id. A zero CreatedAt is now.
func (bs backupStore) Create(ctx context.Context, b *BackupRecord) error {
	id := b.ID
	if id == "" {
		id = newID()
	}
	created := orNow(b.CreatedAt)
	_, err := bs.s.exec(ctx, insertBackup, id, micros(created), b.File, b.Size, b.SHA256,
		nullMicros(b.VerifiedAt), boolInt(b.VerifyOK), b.Error)
	if err != nil {
		return fmt.Errorf("creating backup record: %w", mapErr(err))
	}
	b.ID, b.CreatedAt = id, created
	return nil
}

// Update replaces every field of the record but its id and creation time.
func (bs backupStore) Update(ctx context.Context, b *BackupRecord) error {
	err := bs.s.execOne(ctx, updateBackup, b.File, b.Size, b.SHA256, nullMicros(b.VerifiedAt),
		boolInt(b.VerifyOK), b.Error, b.ID)
	if err != nil {
		return fmt.Errorf("updating backup record: %w", err)
	}
	return nil
}

// List returns every backup record, newest first.
func (bs backupStore) List(ctx context.Context) ([]*BackupRecord, error) {
	rows, err := bs.s.db.QueryContext(ctx, listBackups)
	if err != nil {
		return nil, fmt.Errorf("listing backup records: %w", err)
	}
	defer rows.Close()
	var out []*BackupRecord
	for rows.Next() {
		var (
			b                 BackupRecord
			created, verified sql.NullInt64
			ok                int64
		)
		if err := rows.Scan(&b.ID, &created, &b.File, &b.Size, &b.SHA256, &verified, &ok, &b.Error); err != nil {
			return nil, fmt.Errorf("listing backup records: %w", err)
		}
		b.CreatedAt, b.VerifiedAt, b.VerifyOK = fromMicros(created), fromMicros(verified), ok == 1
		out = append(out, &b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing backup records: %w", err)
	}
	return out, nil
}
