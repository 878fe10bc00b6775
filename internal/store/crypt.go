package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// sealField seals plaintext for table.column of record id. An empty value
// is stored as NULL without encryption. It returns the ciphertext and the
// id of the key that sealed it (for the column's *_kid hint), both ready to
// bind.
func (s *Store) sealField(table, column, id string, plaintext []byte) (ct, kid any, err error) {
	if len(plaintext) == 0 {
		return nil, nil, nil
	}
	c := s.currentCipher()
	if c == nil {
		return nil, nil, ErrNoCipher
	}
	sealed, err := c.Seal(plaintext, FieldAAD(table, column, id))
	if err != nil {
		return nil, nil, fmt.Errorf("sealing %s.%s: %w", table, column, err)
	}
	return sealed, keyIDHint(c, sealed), nil
}

// keyIDHint is the key id to store beside a ciphertext, or NULL when the
// cipher cannot tell (rotation then looks at the row).
func keyIDHint(c Cipher, sealed []byte) any {
	k, err := c.KeyID(sealed)
	if err != nil || k == "" {
		return nil
	}
	return k
}

// openField opens the value stored in table.column of record id. NULL or
// empty reads back as nil. A value moved from another row or column, or
// altered, fails to open.
func (s *Store) openField(table, column, id string, ct []byte) ([]byte, error) {
	if len(ct) == 0 {
		return nil, nil
	}
	c := s.currentCipher()
	if c == nil {
		return nil, ErrNoCipher
	}
	p, err := c.Open(ct, FieldAAD(table, column, id))
	if err != nil {
		return nil, fmt.Errorf("opening %s.%s of %q: %w", table, column, id, err)
	}
	return p, nil
}

// encColumn is one encrypted column with the queries key rotation runs on
// it. Each query is written out in full: no SQL is assembled at run time.
type encColumn struct {
	EncryptedColumn
	// stale selects (id, value) of up to $2 rows whose hint is not $1.
	stale string
	// countStale counts the rows whose hint is not $1.
	countStale string
	// page selects (id, value, hint) of up to $2 rows with id > $1.
	page string
	// replace sets value $1 and hint $2 on row $3 if its value is still $4.
	replace string
	// setHint sets hint $1 on row $2 if its value is still $3.
	setHint string
}

var encColumns = []encColumn{
	{
		EncryptedColumn: EncryptedColumn{Table: "users", Column: "email", IDColumn: "id"},
		stale:           `SELECT id, email FROM users WHERE email IS NOT NULL AND (email_kid IS NULL OR email_kid <> $1) ORDER BY id LIMIT $2`,
		countStale:      `SELECT COUNT(*) FROM users WHERE email IS NOT NULL AND (email_kid IS NULL OR email_kid <> $1)`,
		page:            `SELECT id, email, email_kid FROM users WHERE email IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
		replace:         `UPDATE users SET email = $1, email_kid = $2 WHERE id = $3 AND email = $4`,
		setHint:         `UPDATE users SET email_kid = $1 WHERE id = $2 AND email = $3`,
	},
	{
		EncryptedColumn: EncryptedColumn{Table: "credentials", Column: "secret", IDColumn: "id"},
		stale:           `SELECT id, secret FROM credentials WHERE secret IS NOT NULL AND (secret_kid IS NULL OR secret_kid <> $1) ORDER BY id LIMIT $2`,
		countStale:      `SELECT COUNT(*) FROM credentials WHERE secret IS NOT NULL AND (secret_kid IS NULL OR secret_kid <> $1)`,
		page:            `SELECT id, secret, secret_kid FROM credentials WHERE secret IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
		replace:         `UPDATE credentials SET secret = $1, secret_kid = $2 WHERE id = $3 AND secret = $4`,
		setHint:         `UPDATE credentials SET secret_kid = $1 WHERE id = $2 AND secret = $3`,
	},
	{
		EncryptedColumn: EncryptedColumn{Table: "identities", Column: "refresh_token", IDColumn: "id"},
		stale:           `SELECT id, refresh_token FROM identities WHERE refresh_token IS NOT NULL AND (refresh_token_kid IS NULL OR refresh_token_kid <> $1) ORDER BY id LIMIT $2`,
		countStale:      `SELECT COUNT(*) FROM identities WHERE refresh_token IS NOT NULL AND (refresh_token_kid IS NULL OR refresh_token_kid <> $1)`,
		page:            `SELECT id, refresh_token, refresh_token_kid FROM identities WHERE refresh_token IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
		replace:         `UPDATE identities SET refresh_token = $1, refresh_token_kid = $2 WHERE id = $3 AND refresh_token = $4`,
		setHint:         `UPDATE identities SET refresh_token_kid = $1 WHERE id = $2 AND refresh_token = $3`,
	},
	{
		EncryptedColumn: EncryptedColumn{Table: "signing_keys", Column: "private_key", IDColumn: "id"},
		stale:           `SELECT id, private_key FROM signing_keys WHERE private_key IS NOT NULL AND (private_key_kid IS NULL OR private_key_kid <> $1) ORDER BY id LIMIT $2`,
		countStale:      `SELECT COUNT(*) FROM signing_keys WHERE private_key IS NOT NULL AND (private_key_kid IS NULL OR private_key_kid <> $1)`,
		page:            `SELECT id, private_key, private_key_kid FROM signing_keys WHERE private_key IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
		replace:         `UPDATE signing_keys SET private_key = $1, private_key_kid = $2 WHERE id = $3 AND private_key = $4`,
		setHint:         `UPDATE signing_keys SET private_key_kid = $1 WHERE id = $2 AND private_key = $3`,
	},
	{
		EncryptedColumn: EncryptedColumn{Table: "secrets", Column: "value", IDColumn: "name"},
		stale:           `SELECT name, value FROM secrets WHERE value IS NOT NULL AND (value_kid IS NULL OR value_kid <> $1) ORDER BY name LIMIT $2`,
		countStale:      `SELECT COUNT(*) FROM secrets WHERE value IS NOT NULL AND (value_kid IS NULL OR value_kid <> $1)`,
		page:            `SELECT name, value, value_kid FROM secrets WHERE value IS NOT NULL AND name > $1 ORDER BY name LIMIT $2`,
		replace:         `UPDATE secrets SET value = $1, value_kid = $2 WHERE name = $3 AND value = $4`,
		setHint:         `UPDATE secrets SET value_kid = $1 WHERE name = $2 AND value = $3`,
	},
}

// EncryptedColumns lists every column that holds sealed values. Each has
// a companion column, named after it with a _kid suffix, holding the id of
// the key that sealed the value: a hint only, as the ciphertext itself
// names its key.
func (s *Store) EncryptedColumns() []EncryptedColumn {
	out := make([]EncryptedColumn, len(encColumns))
	for i, c := range encColumns {
		out[i] = c.EncryptedColumn
	}
	return out
}

// scanPageSize is how many rows a verification pass of Reencrypt reads at once.
const scanPageSize = 256

// Reencrypt moves encrypted values to the cipher's active key, at most
// batch of them per call: it opens each value sealed with another key and
// seals it again with the active one, replacing it only if the row still
// holds the value it read (a concurrent write wins). It returns how many
// values it re-encrypted and how many still need it; calling it until
// remaining is 0 completes a rotation, and an interrupted rotation resumes
// where it stopped.
//
// Stale rows are found through the *_kid hints. Each candidate's key is
// read from the ciphertext itself, and whenever the hints say nothing is
// left, every value is checked against its ciphertext's key id, so a wrong
// hint delays a rotation but never hides a stale value. A value that cannot
// be opened is an error naming its row.
func (s *Store) Reencrypt(ctx context.Context, batch int) (done, remaining int, err error) {
	if batch <= 0 {
		return 0, 0, errors.New("re-encrypting: batch must be positive")
	}
	c := s.currentCipher()
	if c == nil {
		return 0, 0, ErrNoCipher
	}
	active := c.ActiveKeyID()
	done, err = s.reencryptStale(ctx, c, active, batch)
	if err != nil {
		return done, 0, err
	}
	remaining, err = s.countStale(ctx, active)
	if err != nil || remaining > 0 {
		return done, remaining, err
	}
	// The hints say the rotation is complete: make sure of it.
	fixed, err := s.verifyHints(ctx, c)
	if err != nil || fixed == 0 {
		return done, 0, err
	}
	more, err := s.reencryptStale(ctx, c, active, batch-done)
	done += more
	if err != nil {
		return done, 0, err
	}
	remaining, err = s.countStale(ctx, active)
	return done, remaining, err
}

// reencryptStale re-encrypts up to limit values whose hint is not active.
func (s *Store) reencryptStale(ctx context.Context, c Cipher, active string, limit int) (int, error) {
	done := 0
	for _, col := range encColumns {
		for done < limit {
			n, progress, err := s.reencryptRows(ctx, c, col, active, limit-done)
			done += n
			if err != nil {
				return done, err
			}
			if !progress {
				break
			}
		}
	}
	return done, nil
}

type sealedRow struct {
	id  string
	val []byte
}

// reencryptRows handles one selection of up to limit stale rows of col. It
// reports how many values it re-encrypted and whether it changed anything
// (a row whose hint only was wrong counts as progress, not as done).
func (s *Store) reencryptRows(ctx context.Context, c Cipher, col encColumn, active string, limit int) (int, bool, error) {
	rows, err := s.db.QueryContext(ctx, col.stale, active, limit) //sqlcheck:ok query from the constant encrypted-column table
	if err != nil {
		return 0, false, fmt.Errorf("re-encrypting %s.%s: %w", col.Table, col.Column, err)
	}
	var found []sealedRow
	for rows.Next() {
		var r sealedRow
		if err := rows.Scan(&r.id, &r.val); err != nil {
			rows.Close()
			return 0, false, fmt.Errorf("re-encrypting %s.%s: %w", col.Table, col.Column, err)
		}
		found = append(found, r)
	}
	if err := rows.Close(); err != nil {
		return 0, false, err
	}
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	if len(found) == 0 {
		return 0, false, nil
	}

	type change struct {
		query string
		args  []any
		reenc bool
	}
	changes := make([]change, 0, len(found))
	for _, r := range found {
		kid, err := c.KeyID(r.val)
		if err != nil {
			return 0, false, fmt.Errorf("re-encrypting %s.%s of %q: reading key id: %w", col.Table, col.Column, r.id, err)
		}
		if kid == active {
			changes = append(changes, change{query: col.setHint, args: []any{kid, r.id, r.val}})
			continue
		}
		aad := FieldAAD(col.Table, col.Column, r.id)
		plain, err := c.Open(r.val, aad)
		if err != nil {
			return 0, false, fmt.Errorf("re-encrypting %s.%s of %q: %w", col.Table, col.Column, r.id, err)
		}
		sealed, err := c.Seal(plain, aad)
		clear(plain)
		if err != nil {
			return 0, false, fmt.Errorf("re-encrypting %s.%s of %q: %w", col.Table, col.Column, r.id, err)
		}
		changes = append(changes, change{query: col.replace, args: []any{sealed, keyIDHint(c, sealed), r.id, r.val}, reenc: true})
	}

	done, changed := 0, 0
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		for _, ch := range changes {
			res, err := tx.ExecContext(ctx, ch.query, ch.args...) //sqlcheck:ok query from the constant encrypted-column table
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				continue // rewritten meanwhile: the new value stands
			}
			changed++
			if ch.reenc {
				done++
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("re-encrypting %s.%s: %w", col.Table, col.Column, err)
	}
	return done, changed > 0, nil
}

// countStale counts the values whose hint is not the active key.
func (s *Store) countStale(ctx context.Context, active string) (int, error) {
	total := 0
	for _, col := range encColumns {
		var n int
		if err := s.db.QueryRowContext(ctx, col.countStale, active).Scan(&n); err != nil { //sqlcheck:ok query from the constant encrypted-column table
			return 0, fmt.Errorf("counting stale %s.%s: %w", col.Table, col.Column, err)
		}
		total += n
	}
	return total, nil
}

// verifyHints reads every encrypted value, and corrects each hint that does
// not name the key the ciphertext says sealed it. It returns how many it
// corrected.
func (s *Store) verifyHints(ctx context.Context, c Cipher) (int, error) {
	fixed := 0
	for _, col := range encColumns {
		after := ""
		for {
			var wrong [][]any
			rows, err := s.db.QueryContext(ctx, col.page, after, scanPageSize) //sqlcheck:ok query from the constant encrypted-column table
			if err != nil {
				return fixed, fmt.Errorf("verifying %s.%s: %w", col.Table, col.Column, err)
			}
			n := 0
			for rows.Next() {
				var (
					id   string
					val  []byte
					hint sql.NullString
				)
				if err := rows.Scan(&id, &val, &hint); err != nil {
					rows.Close()
					return fixed, fmt.Errorf("verifying %s.%s: %w", col.Table, col.Column, err)
				}
				n++
				after = id
				kid, err := c.KeyID(val)
				if err != nil {
					rows.Close()
					return fixed, fmt.Errorf("verifying %s.%s of %q: reading key id: %w", col.Table, col.Column, id, err)
				}
				if !hint.Valid || hint.String != kid {
					wrong = append(wrong, []any{kid, id, val})
				}
			}
			if err := rows.Close(); err != nil {
				return fixed, err
			}
			if err := rows.Err(); err != nil {
				return fixed, err
			}
			if len(wrong) > 0 {
				err := s.writeTx(ctx, func(tx *sql.Tx) error {
					for _, args := range wrong {
						if _, err := tx.ExecContext(ctx, col.setHint, args...); err != nil { //sqlcheck:ok query from the constant encrypted-column table
							return err
						}
					}
					return nil
				})
				if err != nil {
					return fixed, fmt.Errorf("verifying %s.%s: %w", col.Table, col.Column, err)
				}
				fixed += len(wrong)
			}
			if n < scanPageSize {
				break
			}
		}
	}
	return fixed, nil
}
