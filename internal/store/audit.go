package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// auditStore implements Audit. Records are never updated through the
// store, and deleted only by Prune, which leaves a checkpoint in their place.
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

const (
	lastAuditLink     = `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`
	insertAudit       = `INSERT INTO audit_log (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)`
	firstAuditAt      = `SELECT seq, at, kind, data, prev_hash, hash FROM audit_log WHERE at >= $1 ORDER BY seq LIMIT 1`
	deleteAuditBefore = `DELETE FROM audit_log WHERE seq < $1`
	// PostgreSQL only: a whole batch in one statement.
	insertAuditArrays = `INSERT INTO audit_log (seq, at, kind, data, prev_hash, hash) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[])`
)

// checkBatch checks that recs are numbered and chained in order.
func checkBatch(recs []*AuditRecord) error {
	for i, r := range recs {
		if r.Kind == "" {
			return fmt.Errorf("record %d: empty kind", i)
		}
		if i == 0 {
			if r.Seq < 1 {
				return fmt.Errorf("record 0: seq %d is not positive", r.Seq)
			}
			continue
		}
		if r.Seq != recs[0].Seq+int64(i) {
			return fmt.Errorf("record %d: seq %d, want %d", i, r.Seq, recs[0].Seq+int64(i))
		}
		if !bytes.Equal(r.PrevHash, recs[i-1].Hash) {
			return fmt.Errorf("record %d: previous hash is not the hash of record %d", i, i-1)
		}
	}
	return nil
}

// lockTail takes the appenders' lock (PostgreSQL; on SQLite the write
// transaction holds it) and checks that first follows the last record.
func (as auditStore) lockTail(ctx context.Context, tx *sql.Tx, first *AuditRecord) error {
	if as.s.backend == BackendPostgres {
		if _, err := tx.ExecContext(ctx, lockAuditTable); err != nil {
			return err
		}
	}
	var (
		seq  int64
		hash []byte
	)
	err := tx.QueryRowContext(ctx, lastAuditLink).Scan(&seq, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if first.Seq != seq+1 || !bytes.Equal(first.PrevHash, hash) {
		return fmt.Errorf("%w: the log ends at seq %d, the records follow seq %d", ErrConflict, seq, first.Seq-1)
	}
	return nil
}

// insertAll stores recs: on PostgreSQL in one statement that takes every
// column as an array, on SQLite (in process, no round trips) with one
// prepared statement.
func (as auditStore) insertAll(ctx context.Context, tx *sql.Tx, recs []*AuditRecord) error {
	for _, r := range recs {
		r.Time = orNow(r.Time)
	}
	if as.s.backend == BackendPostgres {
		var (
			seqs  = make([]int64, len(recs))
			ats   = make([]int64, len(recs))
			kinds = make([]string, len(recs))
			data  = make([][]byte, len(recs))
			prevs = make([][]byte, len(recs))
			links = make([][]byte, len(recs))
		)
		for i, r := range recs {
			seqs[i], ats[i], kinds[i] = r.Seq, micros(r.Time), r.Kind
			data[i], prevs[i], links[i] = bytesOrNil(r.Data), bytesOrNil(r.PrevHash), bytesOrNil(r.Hash)
		}
		_, err := tx.ExecContext(ctx, insertAuditArrays, seqs, ats, kinds, data, prevs, links)
		return mapErr(err)
	}
	stmt, err := tx.PrepareContext(ctx, insertAudit)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range recs {
		if _, err := stmt.ExecContext(ctx, r.Seq, micros(r.Time), r.Kind, nullBytes(r.Data),
			nullBytes(r.PrevHash), nullBytes(r.Hash)); err != nil {
			return mapErr(err)
		}
	}
	return nil
}

// AppendBatch stores recs in one transaction if they follow the last
// record; see Audit.
func (as auditStore) AppendBatch(ctx context.Context, recs []*AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if err := checkBatch(recs); err != nil {
		return fmt.Errorf("appending audit records: %w", err)
	}
	err := as.s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := as.lockTail(ctx, tx, recs[0]); err != nil {
			return err
		}
		return as.insertAll(ctx, tx, recs)
	})
	if err != nil {
		return fmt.Errorf("appending audit records: %w", err)
	}
	return nil
}

// FirstAt returns the first record at or after t.
func (as auditStore) FirstAt(ctx context.Context, t time.Time) (*AuditRecord, error) {
	r, err := scanAudit(as.s.db.QueryRowContext(ctx, firstAuditAt, micros(t)))
	if err != nil {
		return nil, fmt.Errorf("seeking audit record: %w", err)
	}
	return r, nil
}

// Prune deletes the records before seq before and appends checkpoint, in
// one transaction; see Audit.
func (as auditStore) Prune(ctx context.Context, before int64, checkpoint *AuditRecord) (int64, error) {
	recs := []*AuditRecord{checkpoint}
	if err := checkBatch(recs); err != nil {
		return 0, fmt.Errorf("pruning audit records: %w", err)
	}
	if before > checkpoint.Seq {
		return 0, fmt.Errorf("pruning audit records: cannot delete up to seq %d, past the checkpoint at %d", before, checkpoint.Seq)
	}
	var n int64
	err := as.s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := as.lockTail(ctx, tx, checkpoint); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, deleteAuditBefore, before)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		return as.insertAll(ctx, tx, recs)
	})
	if err != nil {
		return 0, fmt.Errorf("pruning audit records: %w", err)
	}
	return n, nil
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
