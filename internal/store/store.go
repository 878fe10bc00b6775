// Package store gives Moat its durable state through narrow, per-aggregate
// interfaces, on SQLite (the default, one file in the data directory) or
// PostgreSQL. Queries are parameterized only; no SQL text is ever built from
// values. Fields that hold secrets or personal data are sealed with a
// Cipher (the key ring) before they are written, bound to their table,
// column and record id.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	ErrNoCipher = errors.New("store: no cipher set: encrypted fields cannot be read or written")
)

// Cipher seals and opens field values. The key ring implements it. aad
// binds a ciphertext to where it is stored (see FieldAAD), so a value moved
// to another row or column fails to open.
type Cipher interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
	// KeyID returns the id of the data key that sealed ciphertext, without
	// opening it.
	KeyID(ciphertext []byte) (string, error)
	// ActiveKeyID is the id of the key new values are sealed with.
	ActiveKeyID() string
}

// FieldAAD is the additional data an encrypted field is bound to.
func FieldAAD(table, column, id string) []byte {
	return []byte("moat/v1\x00" + table + "\x00" + column + "\x00" + id)
}

// EncryptedColumn names one column that holds sealed values, for key
// rotation and for checks that nothing is stored in plaintext.
type EncryptedColumn struct {
	Table, Column, IDColumn string
}

// User is a local account.
type User struct {
	ID          string
	Username    string
	Email       string // stored encrypted
	DisplayName string
	Roles       []string
	Status      string // active, disabled, locked
	CreatedAt   time.Time
	LastLoginAt time.Time // zero if never
}

// Credential is one authentication factor of a user: a password hash, a
// TOTP secret, a WebAuthn credential or a recovery code.
type Credential struct {
	ID         string
	UserID     string
	Kind       string // password, totp, webauthn, recovery
	Name       string
	Secret     []byte // stored encrypted (TOTP secret, WebAuthn credential data)
	Hash       string // stays a hash (password PHC string, recovery code hash)
	Counter    int64  // last TOTP step accepted, or WebAuthn signature count
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time // zero: never (enrollment tokens expire)
}

// Identity links a user to an account at an external identity provider.
type Identity struct {
	ID           string
	UserID       string
	Issuer       string
	Subject      string
	RefreshToken []byte // stored encrypted
	CreatedAt    time.Time
}

// Session is a login session. Only a hash of the session id is stored.
type Session struct {
	IDHash    []byte
	UserID    string
	Methods   []string // pwd, otp, webauthn, recovery, oidc
	AuthTime  time.Time
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero if not revoked
}

// APIKey is a machine credential. Only an HMAC of the key is stored.
type APIKey struct {
	ID         string
	Name       string
	Owner      string // a user id, or "service"
	Prefix     string // the recognisable, non-secret start of the key
	Hash       []byte
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	RevokedAt  time.Time // zero: not revoked
	LastUsedAt time.Time
}

// SigningKey is a key Moat signs with (identity assertions, audit checkpoints).
type SigningKey struct {
	ID        string
	Use       string // assertion, audit
	Alg       string // EdDSA, ES256
	Private   []byte // stored encrypted
	Public    []byte
	CreatedAt time.Time
	NotAfter  time.Time
}

// Secret is a named secret Moat keeps for itself, such as a webhook signing
// secret.
type Secret struct {
	Name      string
	Value     []byte // stored encrypted
	UpdatedAt time.Time
}

// AuditRecord is one entry of the hash-chained audit log.
type AuditRecord struct {
	Seq      int64
	Time     time.Time
	Kind     string
	Data     []byte // canonical JSON of the event
	PrevHash []byte // Hash of the record before, empty for the first record of a log
	Hash     []byte // set by the writer (internal/audit): SHA-256 of PrevHash followed by Data
}

// BackupRecord remembers a backup Moat took and whether it verified.
type BackupRecord struct {
	ID         string
	CreatedAt  time.Time
	File       string
	Size       int64
	SHA256     string
	VerifiedAt time.Time
	VerifyOK   bool
	Error      string
}

// DataKey is a key-ring data key, wrapped by the key-encryption key.
type DataKey struct {
	ID        string
	Wrapped   []byte
	KEKID     string // fingerprint of the key-encryption key that wrapped it
	CreatedAt time.Time
	State     string // active, retiring, retired
}

// The per-aggregate interfaces. Each is implemented for SQLite and
// PostgreSQL alike, and every method is safe for concurrent use.

type Users interface {
	Create(ctx context.Context, u *User) error // ErrConflict on a taken username
	Get(ctx context.Context, id string) (*User, error)
	GetByUsername(ctx context.Context, username string) (*User, error)
	List(ctx context.Context) ([]*User, error)
	Update(ctx context.Context, u *User) error
	Delete(ctx context.Context, id string) error // removes its credentials, identities and sessions
}

type Credentials interface {
	Create(ctx context.Context, c *Credential) error
	ListByUser(ctx context.Context, userID string) ([]*Credential, error)
	// AdvanceCounter sets the counter to n and the last use to at, only if
	// n is greater than the stored counter; otherwise ErrConflict. It makes
	// "each TOTP code once" hold across concurrent logins and instances.
	AdvanceCounter(ctx context.Context, id string, n int64, at time.Time) error
	// UpdateSecret replaces the sealed secret (WebAuthn credential data).
	UpdateSecret(ctx context.Context, id string, secret []byte) error
	// Rename changes the name a user gave a credential.
	Rename(ctx context.Context, id, name string) error
	Touch(ctx context.Context, id string, at time.Time) error
	Delete(ctx context.Context, id string) error
}

type Identities interface {
	Create(ctx context.Context, i *Identity) error
	Get(ctx context.Context, issuer, subject string) (*Identity, error)
	UpdateRefreshToken(ctx context.Context, id string, token []byte) error
}

type Sessions interface {
	Create(ctx context.Context, s *Session) error
	Get(ctx context.Context, idHash []byte) (*Session, error)
	Touch(ctx context.Context, idHash []byte, at time.Time) error
	Revoke(ctx context.Context, idHash []byte, at time.Time) error
	RevokeUser(ctx context.Context, userID string, at time.Time) (int, error)
	ListByUser(ctx context.Context, userID string) ([]*Session, error)
	DeleteExpired(ctx context.Context, before time.Time) (int, error)
}

type APIKeys interface {
	Create(ctx context.Context, k *APIKey) error
	GetByPrefix(ctx context.Context, prefix string) (*APIKey, error)
	List(ctx context.Context) ([]*APIKey, error)
	Revoke(ctx context.Context, id string, at time.Time) error
	Touch(ctx context.Context, id string, at time.Time) error
}

type SigningKeys interface {
	Create(ctx context.Context, k *SigningKey) error
	List(ctx context.Context, use string) ([]*SigningKey, error)
}

type Secrets interface {
	Put(ctx context.Context, s *Secret) error
	Get(ctx context.Context, name string) (*Secret, error)
	// GetOrCreate returns the secret name, storing one of size random
	// bytes first when there is none. Instances racing to create it all
	// end up with the one that was stored first.
	GetOrCreate(ctx context.Context, name string, size int) ([]byte, error)
}

type Audit interface {
	// Append stores r with the next sequence number (set on r) and returns it.
	Append(ctx context.Context, r *AuditRecord) error
	// List returns records with Seq > after, in order, at most limit.
	List(ctx context.Context, after int64, limit int) ([]*AuditRecord, error)
	Last(ctx context.Context) (*AuditRecord, error) // ErrNotFound when empty
	// AppendBatch stores recs in one transaction. The caller numbers and
	// chains them: recs[i].Seq is recs[0].Seq+i and recs[i].PrevHash is
	// recs[i-1].Hash. The batch must follow the last record stored:
	// recs[0].Seq is its Seq plus one and recs[0].PrevHash its Hash (Seq 1
	// and no PrevHash for an empty log). That is checked under the lock
	// appenders take, so appenders sharing a database cannot fork the log;
	// when another appender got there first the result is ErrConflict and
	// nothing is stored. A zero Time is set to now.
	AppendBatch(ctx context.Context, recs []*AuditRecord) error
	// FirstAt returns the record with the lowest Seq whose Time is at or
	// after t; ErrNotFound when there is none.
	FirstAt(ctx context.Context, t time.Time) (*AuditRecord, error)
	// Prune deletes the records with Seq below before and appends
	// checkpoint, in one transaction. checkpoint must follow the last
	// record stored, as in AppendBatch (else ErrConflict), and before must
	// not exceed its Seq, so the log is never left empty. It returns the
	// number of records deleted. It is the only way records are deleted.
	Prune(ctx context.Context, before int64, checkpoint *AuditRecord) (int64, error)
}

type Backups interface {
	Create(ctx context.Context, b *BackupRecord) error
	Update(ctx context.Context, b *BackupRecord) error
	List(ctx context.Context) ([]*BackupRecord, error)
}

type DataKeys interface {
	List(ctx context.Context) ([]*DataKey, error)
	Create(ctx context.Context, k *DataKey) error
	// Update replaces a key's wrapped bytes, KEK id and state.
	Update(ctx context.Context, k *DataKey) error
}
