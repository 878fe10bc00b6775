package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// signingKeyStore implements SigningKeys. Private is sealed; Public is not
// secret.
type signingKeyStore struct{ s *Store }

const (
	insertSigningKey   = `INSERT INTO signing_keys (id, key_use, alg, private_key, private_key_kid, public_key, created_at, not_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	listSigningKeys    = `SELECT id, key_use, alg, private_key, public_key, created_at, not_after FROM signing_keys ORDER BY created_at, id`
	listSigningKeysFor = `SELECT id, key_use, alg, private_key, public_key, created_at, not_after FROM signing_keys WHERE key_use = $1 ORDER BY created_at, id`
)

// Create stores k: ErrConflict on a taken id.
func (ks signingKeyStore) Create(ctx context.Context, k *SigningKey) error {
	if k.Use == "" || k.Alg == "" {
		return errors.New("creating signing key: use and alg are required")
	}
	id := k.ID
	if id == "" {
		id = newID()
	}
	created := orNow(k.CreatedAt)
	priv, kid, err := ks.s.sealField("signing_keys", "private_key", id, k.Private)
	if err != nil {
		return fmt.Errorf("creating signing key: %w", err)
	}
	_, err = ks.s.exec(ctx, insertSigningKey, id, k.Use, k.Alg, priv, kid, nullBytes(k.Public),
		micros(created), nullMicros(k.NotAfter))
	if err != nil {
		return fmt.Errorf("creating signing key: %w", mapErr(err))
	}
	k.ID, k.CreatedAt = id, created
	return nil
}

// List returns the keys for use ("" for every use), oldest first.
func (ks signingKeyStore) List(ctx context.Context, use string) ([]*SigningKey, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if use == "" {
		rows, err = ks.s.db.QueryContext(ctx, listSigningKeys)
	} else {
		rows, err = ks.s.db.QueryContext(ctx, listSigningKeysFor, use)
	}
	if err != nil {
		return nil, fmt.Errorf("listing signing keys: %w", err)
	}
	defer rows.Close()
	var out []*SigningKey
	for rows.Next() {
		var (
			k                 SigningKey
			priv, pub         []byte
			created, notAfter sql.NullInt64
		)
		if err := rows.Scan(&k.ID, &k.Use, &k.Alg, &priv, &pub, &created, &notAfter); err != nil {
			return nil, fmt.Errorf("listing signing keys: %w", err)
		}
		if k.Private, err = ks.s.openField("signing_keys", "private_key", k.ID, priv); err != nil {
			return nil, fmt.Errorf("listing signing keys: %w", err)
		}
		k.Public = bytesOrNil(pub)
		k.CreatedAt, k.NotAfter = fromMicros(created), fromMicros(notAfter)
		out = append(out, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing signing keys: %w", err)
	}
	return out, nil
}

// secretStore implements Secrets. Value is sealed, bound to the name.
type secretStore struct{ s *Store }

const (
	upsertSecret = `INSERT INTO secrets (name, value, value_kid, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET value = excluded.value, value_kid = excluded.value_kid, updated_at = excluded.updated_at`
	selectSecret = `SELECT name, value, updated_at FROM secrets WHERE name = $1`
	insertSecret = `INSERT INTO secrets (name, value, value_kid, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`
)

// GetOrCreate returns the secret, first inserting size random bytes under
// name unless a secret by that name already exists; the insert never
// replaces one, so concurrent callers all read back the first.
func (ss secretStore) GetOrCreate(ctx context.Context, name string, size int) ([]byte, error) {
	sec, err := ss.Get(ctx, name)
	if err == nil {
		return sec.Value, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	v := make([]byte, size)
	if _, err := rand.Read(v); err != nil {
		return nil, err
	}
	val, kid, err := ss.s.sealField("secrets", "value", name, v)
	if err != nil {
		return nil, fmt.Errorf("storing secret: %w", err)
	}
	if _, err := ss.s.exec(ctx, insertSecret, name, val, kid, micros(time.Now())); err != nil {
		return nil, fmt.Errorf("storing secret: %w", mapErr(err))
	}
	if sec, err = ss.Get(ctx, name); err != nil {
		return nil, err
	}
	return sec.Value, nil
}

// Put creates or replaces the secret; a zero UpdatedAt is now.
func (ss secretStore) Put(ctx context.Context, sec *Secret) error {
	if sec.Name == "" {
		return errors.New("storing secret: empty name")
	}
	updated := orNow(sec.UpdatedAt)
	val, kid, err := ss.s.sealField("secrets", "value", sec.Name, sec.Value)
	if err != nil {
		return fmt.Errorf("storing secret: %w", err)
	}
	if _, err := ss.s.exec(ctx, upsertSecret, sec.Name, val, kid, micros(updated)); err != nil {
		return fmt.Errorf("storing secret: %w", mapErr(err))
	}
	sec.UpdatedAt = updated
	return nil
}

func (ss secretStore) Get(ctx context.Context, name string) (*Secret, error) {
	var (
		sec     Secret
		val     []byte
		updated sql.NullInt64
	)
	err := ss.s.db.QueryRowContext(ctx, selectSecret, name).Scan(&sec.Name, &val, &updated)
	if err != nil {
		return nil, fmt.Errorf("getting secret: %w", notFound(err))
	}
	if sec.Value, err = ss.s.openField("secrets", "value", sec.Name, val); err != nil {
		return nil, fmt.Errorf("getting secret: %w", err)
	}
	sec.UpdatedAt = fromMicros(updated)
	return &sec, nil
}

// dataKeyStore implements DataKeys. Wrapped keys are already encrypted by
// the key-encryption key, so they are stored as they are.
type dataKeyStore struct{ s *Store }

const (
	insertDataKey = `INSERT INTO data_keys (id, wrapped, kek_id, created_at, state) VALUES ($1, $2, $3, $4, $5)`
	listDataKeys  = `SELECT id, wrapped, kek_id, created_at, state FROM data_keys ORDER BY created_at, id`
	updateDataKey = `UPDATE data_keys SET wrapped = $1, kek_id = $2, state = $3 WHERE id = $4`
)

// List returns every data key, oldest first.
func (ds dataKeyStore) List(ctx context.Context) ([]*DataKey, error) {
	rows, err := ds.s.db.QueryContext(ctx, listDataKeys)
	if err != nil {
		return nil, fmt.Errorf("listing data keys: %w", err)
	}
	defer rows.Close()
	var out []*DataKey
	for rows.Next() {
		var (
			k       DataKey
			created sql.NullInt64
		)
		if err := rows.Scan(&k.ID, &k.Wrapped, &k.KEKID, &created, &k.State); err != nil {
			return nil, fmt.Errorf("listing data keys: %w", err)
		}
		k.CreatedAt = fromMicros(created)
		out = append(out, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing data keys: %w", err)
	}
	return out, nil
}

// Create stores k: ErrConflict on a taken id. A zero CreatedAt is now.
func (ds dataKeyStore) Create(ctx context.Context, k *DataKey) error {
	if len(k.Wrapped) == 0 || k.State == "" {
		return errors.New("creating data key: wrapped key and state are required")
	}
	id := k.ID
	if id == "" {
		id = newID()
	}
	created := orNow(k.CreatedAt)
	if _, err := ds.s.exec(ctx, insertDataKey, id, k.Wrapped, k.KEKID, micros(created), k.State); err != nil {
		return fmt.Errorf("creating data key: %w", mapErr(err))
	}
	k.ID, k.CreatedAt = id, created
	return nil
}

func (ds dataKeyStore) Update(ctx context.Context, k *DataKey) error {
	if len(k.Wrapped) == 0 || k.State == "" {
		return errors.New("updating data key: wrapped key and state are required")
	}
	if err := ds.s.execOne(ctx, updateDataKey, k.Wrapped, k.KEKID, k.State, k.ID); err != nil {
		return fmt.Errorf("updating data key: %w", err)
	}
	return nil
}
