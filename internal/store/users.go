package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// userStore implements Users. An empty User.ID or CreatedAt is filled in by
// Create; an empty Status is "active". Email is sealed.
type userStore struct{ s *Store }

const (
	insertUser   = `INSERT INTO users (id, username, email, email_kid, display_name, roles, status, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	selectUser   = `SELECT id, username, email, display_name, roles, status, created_at, last_login_at FROM users WHERE id = $1`
	selectUserBy = `SELECT id, username, email, display_name, roles, status, created_at, last_login_at FROM users WHERE username = $1`
	listUsers    = `SELECT id, username, email, display_name, roles, status, created_at, last_login_at FROM users ORDER BY username`
	updateUser   = `UPDATE users SET username = $1, email = $2, email_kid = $3, display_name = $4, roles = $5, status = $6, last_login_at = $7 WHERE id = $8`
	deleteUser   = `DELETE FROM users WHERE id = $1`
	// The API keys a user owns go with the user; its credentials,
	// identities and sessions follow through ON DELETE CASCADE.
	deleteUserAPIKeys = `DELETE FROM api_keys WHERE owner = $1`
)

func (us userStore) Create(ctx context.Context, u *User) error {
	if u.Username == "" {
		return errors.New("creating user: empty username")
	}
	id := u.ID
	if id == "" {
		id = newID()
	}
	created := orNow(u.CreatedAt)
	status := u.Status
	if status == "" {
		status = "active"
	}
	email, kid, err := us.s.sealField("users", "email", id, []byte(u.Email))
	if err != nil {
		return fmt.Errorf("creating user: %w", err)
	}
	_, err = us.s.exec(ctx, insertUser, id, u.Username, email, kid, u.DisplayName,
		encodeList(u.Roles), status, micros(created), nullMicros(u.LastLoginAt))
	if err != nil {
		return fmt.Errorf("creating user: %w", mapErr(err))
	}
	u.ID, u.CreatedAt, u.Status = id, created, status
	return nil
}

func (us userStore) scan(row scanner) (*User, error) {
	var (
		u              User
		email          []byte
		roles          string
		created, login sql.NullInt64
	)
	if err := row.Scan(&u.ID, &u.Username, &email, &u.DisplayName, &roles, &u.Status, &created, &login); err != nil {
		return nil, notFound(err)
	}
	plain, err := us.s.openField("users", "email", u.ID, email)
	if err != nil {
		return nil, err
	}
	u.Email = string(plain)
	if u.Roles, err = decodeList(roles); err != nil {
		return nil, err
	}
	u.CreatedAt, u.LastLoginAt = fromMicros(created), fromMicros(login)
	return &u, nil
}

func (us userStore) Get(ctx context.Context, id string) (*User, error) {
	u, err := us.scan(us.s.db.QueryRowContext(ctx, selectUser, id))
	if err != nil {
		return nil, fmt.Errorf("getting user: %w", err)
	}
	return u, nil
}

func (us userStore) GetByUsername(ctx context.Context, username string) (*User, error) {
	u, err := us.scan(us.s.db.QueryRowContext(ctx, selectUserBy, username))
	if err != nil {
		return nil, fmt.Errorf("getting user: %w", err)
	}
	return u, nil
}

// List returns every user, ordered by username.
func (us userStore) List(ctx context.Context) ([]*User, error) {
	rows, err := us.s.db.QueryContext(ctx, listUsers)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := us.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return out, nil
}

// Update replaces every field of the user but its id and creation time.
func (us userStore) Update(ctx context.Context, u *User) error {
	if u.Username == "" || u.Status == "" {
		return errors.New("updating user: empty username or status")
	}
	email, kid, err := us.s.sealField("users", "email", u.ID, []byte(u.Email))
	if err != nil {
		return fmt.Errorf("updating user: %w", err)
	}
	err = us.s.execOne(ctx, updateUser, u.Username, email, kid, u.DisplayName,
		encodeList(u.Roles), u.Status, nullMicros(u.LastLoginAt), u.ID)
	if err != nil {
		return fmt.Errorf("updating user: %w", err)
	}
	return nil
}

// Delete removes the user with its credentials, identities, sessions and
// the API keys it owns.
func (us userStore) Delete(ctx context.Context, id string) error {
	err := us.s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, deleteUserAPIKeys, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, deleteUser, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting user: %w", err)
	}
	return nil
}

// credentialStore implements Credentials. Secret is sealed; Hash is stored
// as it is (it is already a one-way hash).
type credentialStore struct{ s *Store }

const (
	insertCredential = `INSERT INTO credentials (id, user_id, kind, name, secret, secret_kid, hash, created_at, last_used_at, counter, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	listCredentials  = `SELECT id, user_id, kind, name, secret, hash, created_at, last_used_at, counter, expires_at FROM credentials WHERE user_id = $1 ORDER BY created_at, id`
	touchCredential  = `UPDATE credentials SET last_used_at = $1 WHERE id = $2`
	deleteCredential = `DELETE FROM credentials WHERE id = $1`
	advanceCounter   = `UPDATE credentials SET counter = $1, last_used_at = $2 WHERE id = $3 AND counter < $1`
	credentialExists = `SELECT COUNT(*) FROM credentials WHERE id = $1`
	updateCredSecret = `UPDATE credentials SET secret = $1, secret_kid = $2 WHERE id = $3`
	renameCredential = `UPDATE credentials SET name = $1 WHERE id = $2`
)

// Create stores c; a UserID naming no user is ErrNotFound.
func (cs credentialStore) Create(ctx context.Context, c *Credential) error {
	if c.Kind == "" {
		return errors.New("creating credential: empty kind")
	}
	id := c.ID
	if id == "" {
		id = newID()
	}
	created := orNow(c.CreatedAt)
	secret, kid, err := cs.s.sealField("credentials", "secret", id, c.Secret)
	if err != nil {
		return fmt.Errorf("creating credential: %w", err)
	}
	_, err = cs.s.exec(ctx, insertCredential, id, c.UserID, c.Kind, c.Name, secret, kid, c.Hash,
		micros(created), nullMicros(c.LastUsedAt), c.Counter, nullMicros(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("creating credential: %w", mapErr(err))
	}
	c.ID, c.CreatedAt = id, created
	return nil
}

// ListByUser returns the user's credentials, oldest first.
func (cs credentialStore) ListByUser(ctx context.Context, userID string) ([]*Credential, error) {
	rows, err := cs.s.db.QueryContext(ctx, listCredentials, userID)
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	defer rows.Close()
	var out []*Credential
	for rows.Next() {
		var (
			c                      Credential
			secret                 []byte
			created, used, expires sql.NullInt64
		)
		if err := rows.Scan(&c.ID, &c.UserID, &c.Kind, &c.Name, &secret, &c.Hash, &created, &used, &c.Counter, &expires); err != nil {
			return nil, fmt.Errorf("listing credentials: %w", err)
		}
		if c.Secret, err = cs.s.openField("credentials", "secret", c.ID, secret); err != nil {
			return nil, fmt.Errorf("listing credentials: %w", err)
		}
		c.CreatedAt, c.LastUsedAt, c.ExpiresAt = fromMicros(created), fromMicros(used), fromMicros(expires)
		out = append(out, &c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	return out, nil
}

func (cs credentialStore) Touch(ctx context.Context, id string, at time.Time) error {
	if err := cs.s.execOne(ctx, touchCredential, micros(at), id); err != nil {
		return fmt.Errorf("touching credential: %w", err)
	}
	return nil
}

// AdvanceCounter moves the counter forward; see Credentials.
func (cs credentialStore) AdvanceCounter(ctx context.Context, id string, n int64, at time.Time) error {
	res, err := cs.s.exec(ctx, advanceCounter, n, micros(at), id)
	if err != nil {
		return fmt.Errorf("advancing credential counter: %w", mapErr(err))
	}
	if changed, err := res.RowsAffected(); err == nil && changed == 1 {
		return nil
	}
	var count int
	if err := cs.s.db.QueryRowContext(ctx, credentialExists, id).Scan(&count); err != nil {
		return fmt.Errorf("advancing credential counter: %w", err)
	}
	if count == 0 {
		return fmt.Errorf("advancing credential counter: %w", ErrNotFound)
	}
	return fmt.Errorf("advancing credential counter: %w", ErrConflict)
}

// UpdateSecret seals and replaces the credential's secret.
func (cs credentialStore) UpdateSecret(ctx context.Context, id string, secret []byte) error {
	sealed, kid, err := cs.s.sealField("credentials", "secret", id, secret)
	if err != nil {
		return fmt.Errorf("updating credential: %w", err)
	}
	if err := cs.s.execOne(ctx, updateCredSecret, sealed, kid, id); err != nil {
		return fmt.Errorf("updating credential: %w", err)
	}
	return nil
}

// Rename changes the credential's name.
func (cs credentialStore) Rename(ctx context.Context, id, name string) error {
	if err := cs.s.execOne(ctx, renameCredential, name, id); err != nil {
		return fmt.Errorf("renaming credential: %w", err)
	}
	return nil
}

func (cs credentialStore) Delete(ctx context.Context, id string) error {
	if err := cs.s.execOne(ctx, deleteCredential, id); err != nil {
		return fmt.Errorf("deleting credential: %w", err)
	}
	return nil
}

// identityStore implements Identities. RefreshToken is sealed.
type identityStore struct{ s *Store }

const (
	insertIdentity      = `INSERT INTO identities (id, user_id, issuer, subject, refresh_token, refresh_token_kid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	selectIdentity      = `SELECT id, user_id, issuer, subject, refresh_token, created_at FROM identities WHERE issuer = $1 AND subject = $2`
	updateIdentityToken = `UPDATE identities SET refresh_token = $1, refresh_token_kid = $2 WHERE id = $3`
)

// Create stores i: ErrConflict when the issuer and subject are already
// linked, ErrNotFound when UserID names no user.
func (is identityStore) Create(ctx context.Context, i *Identity) error {
	if i.Issuer == "" || i.Subject == "" {
		return errors.New("creating identity: empty issuer or subject")
	}
	id := i.ID
	if id == "" {
		id = newID()
	}
	created := orNow(i.CreatedAt)
	tok, kid, err := is.s.sealField("identities", "refresh_token", id, i.RefreshToken)
	if err != nil {
		return fmt.Errorf("creating identity: %w", err)
	}
	_, err = is.s.exec(ctx, insertIdentity, id, i.UserID, i.Issuer, i.Subject, tok, kid, micros(created))
	if err != nil {
		return fmt.Errorf("creating identity: %w", mapErr(err))
	}
	i.ID, i.CreatedAt = id, created
	return nil
}

func (is identityStore) Get(ctx context.Context, issuer, subject string) (*Identity, error) {
	var (
		i       Identity
		tok     []byte
		created sql.NullInt64
	)
	err := is.s.db.QueryRowContext(ctx, selectIdentity, issuer, subject).
		Scan(&i.ID, &i.UserID, &i.Issuer, &i.Subject, &tok, &created)
	if err != nil {
		return nil, fmt.Errorf("getting identity: %w", notFound(err))
	}
	if i.RefreshToken, err = is.s.openField("identities", "refresh_token", i.ID, tok); err != nil {
		return nil, fmt.Errorf("getting identity: %w", err)
	}
	i.CreatedAt = fromMicros(created)
	return &i, nil
}

// UpdateRefreshToken replaces the identity's refresh token; an empty token
// clears it.
func (is identityStore) UpdateRefreshToken(ctx context.Context, id string, token []byte) error {
	tok, kid, err := is.s.sealField("identities", "refresh_token", id, token)
	if err != nil {
		return fmt.Errorf("updating refresh token: %w", err)
	}
	if err := is.s.execOne(ctx, updateIdentityToken, tok, kid, id); err != nil {
		return fmt.Errorf("updating refresh token: %w", err)
	}
	return nil
}
