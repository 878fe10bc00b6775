package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// sessionStore implements Sessions. Sessions are keyed by the hash of
// their id; nothing in a session row is secret, so nothing is sealed.
type sessionStore struct{ s *Store }

const (
	insertSession      = `INSERT INTO sessions (id_hash, user_id, methods, auth_time, created_at, last_seen, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	selectSession      = `SELECT id_hash, user_id, methods, auth_time, created_at, last_seen, expires_at, revoked_at FROM sessions WHERE id_hash = $1`
	listSessions       = `SELECT id_hash, user_id, methods, auth_time, created_at, last_seen, expires_at, revoked_at FROM sessions WHERE user_id = $1 ORDER BY created_at, id_hash`
	touchSession       = `UPDATE sessions SET last_seen = $1 WHERE id_hash = $2`
	revokeSession      = `UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id_hash = $2`
	revokeUserSessions = `UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`
	deleteExpired      = `DELETE FROM sessions WHERE expires_at < $1`
)

// Create stores a session: ErrConflict on a taken id hash, ErrNotFound when
// UserID names no user. ExpiresAt is required; a zero CreatedAt is now and
// a zero AuthTime is CreatedAt.
func (ss sessionStore) Create(ctx context.Context, s *Session) error {
	if len(s.IDHash) == 0 || s.ExpiresAt.IsZero() {
		return errors.New("creating session: id hash and expiry are required")
	}
	created := orNow(s.CreatedAt)
	auth := s.AuthTime
	if auth.IsZero() {
		auth = created
	}
	_, err := ss.s.exec(ctx, insertSession, s.IDHash, s.UserID, encodeList(s.Methods), micros(auth),
		micros(created), nullMicros(s.LastSeen), micros(s.ExpiresAt), nullMicros(s.RevokedAt))
	if err != nil {
		return fmt.Errorf("creating session: %w", mapErr(err))
	}
	s.CreatedAt, s.AuthTime = created, auth
	return nil
}

func scanSession(row scanner) (*Session, error) {
	var (
		s                             Session
		methods                       string
		auth, created, seen, exp, rev sql.NullInt64
	)
	if err := row.Scan(&s.IDHash, &s.UserID, &methods, &auth, &created, &seen, &exp, &rev); err != nil {
		return nil, notFound(err)
	}
	var err error
	if s.Methods, err = decodeList(methods); err != nil {
		return nil, err
	}
	s.AuthTime, s.CreatedAt, s.LastSeen = fromMicros(auth), fromMicros(created), fromMicros(seen)
	s.ExpiresAt, s.RevokedAt = fromMicros(exp), fromMicros(rev)
	return &s, nil
}

// Get returns the session, revoked or expired ones included: the caller
// decides.
func (ss sessionStore) Get(ctx context.Context, idHash []byte) (*Session, error) {
	s, err := scanSession(ss.s.db.QueryRowContext(ctx, selectSession, idHash))
	if err != nil {
		return nil, fmt.Errorf("getting session: %w", err)
	}
	return s, nil
}

func (ss sessionStore) Touch(ctx context.Context, idHash []byte, at time.Time) error {
	if err := ss.s.execOne(ctx, touchSession, micros(at), idHash); err != nil {
		return fmt.Errorf("touching session: %w", err)
	}
	return nil
}

// Revoke marks the session revoked at at; revoking it again keeps the
// first time.
func (ss sessionStore) Revoke(ctx context.Context, idHash []byte, at time.Time) error {
	if err := ss.s.execOne(ctx, revokeSession, micros(at), idHash); err != nil {
		return fmt.Errorf("revoking session: %w", err)
	}
	return nil
}

// RevokeUser revokes every session of the user not revoked yet, and
// returns how many it revoked.
func (ss sessionStore) RevokeUser(ctx context.Context, userID string, at time.Time) (int, error) {
	res, err := ss.s.exec(ctx, revokeUserSessions, micros(at), userID)
	if err != nil {
		return 0, fmt.Errorf("revoking sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoking sessions: %w", err)
	}
	return int(n), nil
}

// ListByUser returns the user's sessions, oldest first.
func (ss sessionStore) ListByUser(ctx context.Context, userID string) ([]*Session, error) {
	rows, err := ss.s.db.QueryContext(ctx, listSessions, userID)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	defer rows.Close()
	var out []*Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	return out, nil
}

// DeleteExpired deletes the sessions that expired before before, and
// returns how many.
func (ss sessionStore) DeleteExpired(ctx context.Context, before time.Time) (int, error) {
	res, err := ss.s.exec(ctx, deleteExpired, micros(before))
	if err != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", err)
	}
	return int(n), nil
}

// apiKeyStore implements APIKeys. Only an HMAC of each key is stored, so
// nothing is sealed.
type apiKeyStore struct{ s *Store }

const (
	insertAPIKey   = `INSERT INTO api_keys (id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	selectAPIKeyBy = `SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_keys WHERE prefix = $1`
	listAPIKeys    = `SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at, id`
	revokeAPIKey   = `UPDATE api_keys SET revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > $1 THEN $1 ELSE revoked_at END WHERE id = $2`
	touchAPIKey    = `UPDATE api_keys SET last_used_at = $1 WHERE id = $2`
)

// Create stores k: ErrConflict on a taken id or prefix.
func (as apiKeyStore) Create(ctx context.Context, k *APIKey) error {
	if k.Prefix == "" || len(k.Hash) == 0 || k.Owner == "" {
		return errors.New("creating api key: prefix, hash and owner are required")
	}
	id := k.ID
	if id == "" {
		id = newID()
	}
	created := orNow(k.CreatedAt)
	_, err := as.s.exec(ctx, insertAPIKey, id, k.Name, k.Owner, k.Prefix, k.Hash, encodeList(k.Scopes),
		micros(created), nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), nullMicros(k.LastUsedAt))
	if err != nil {
		return fmt.Errorf("creating api key: %w", mapErr(err))
	}
	k.ID, k.CreatedAt = id, created
	return nil
}

func scanAPIKey(row scanner) (*APIKey, error) {
	var (
		k                       APIKey
		scopes                  string
		created, exp, rev, used sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Name, &k.Owner, &k.Prefix, &k.Hash, &scopes, &created, &exp, &rev, &used); err != nil {
		return nil, notFound(err)
	}
	var err error
	if k.Scopes, err = decodeList(scopes); err != nil {
		return nil, err
	}
	k.CreatedAt, k.ExpiresAt = fromMicros(created), fromMicros(exp)
	k.RevokedAt, k.LastUsedAt = fromMicros(rev), fromMicros(used)
	return &k, nil
}

// GetByPrefix returns the key with the prefix, revoked or expired ones
// included: the caller decides.
func (as apiKeyStore) GetByPrefix(ctx context.Context, prefix string) (*APIKey, error) {
	k, err := scanAPIKey(as.s.db.QueryRowContext(ctx, selectAPIKeyBy, prefix))
	if err != nil {
		return nil, fmt.Errorf("getting api key: %w", err)
	}
	return k, nil
}

// List returns every key, oldest first.
func (as apiKeyStore) List(ctx context.Context) ([]*APIKey, error) {
	rows, err := as.s.db.QueryContext(ctx, listAPIKeys)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	defer rows.Close()
	var out []*APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return out, nil
}

// Revoke marks the key revoked from at on, which may be in the future (a
// rotated key's grace period); revoking it again keeps the earlier time,
// so a revocation can be brought forward but never put off.
func (as apiKeyStore) Revoke(ctx context.Context, id string, at time.Time) error {
	if err := as.s.execOne(ctx, revokeAPIKey, micros(at), id); err != nil {
		return fmt.Errorf("revoking api key: %w", err)
	}
	return nil
}

func (as apiKeyStore) Touch(ctx context.Context, id string, at time.Time) error {
	if err := as.s.execOne(ctx, touchAPIKey, micros(at), id); err != nil {
		return fmt.Errorf("touching api key: %w", err)
	}
	return nil
}
