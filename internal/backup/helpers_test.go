package backup

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/moatgw/moat/internal/store"
)

// testCipher is an AES-256-GCM cipher with one random key, standing in for
// the key ring.
type testCipher struct{ aead cipher.AEAD }

func newTestCipher() *testCipher {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return &testCipher{g}
}

// sharedCipher is the key every test store uses, as the stores of one
// deployment share its master key.
var sharedCipher = sync.OnceValue(newTestCipher)

func (c *testCipher) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize())
	rand.Read(nonce)
	return c.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (c *testCipher) Open(ct, aad []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(ct) < n {
		return nil, errors.New("short ciphertext")
	}
	return c.aead.Open(nil, ct[:n], ct[n:], aad)
}

func (c *testCipher) KeyID([]byte) (string, error) { return "test-key", nil }
func (c *testCipher) ActiveKeyID() string          { return "test-key" }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newSQLite opens a migrated SQLite store in a temporary directory.
func newSQLite(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{DataDir: filepath.Join(t.TempDir(), "data"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.SetCipher(sharedCipher())
	return s
}

// postgresURL is the test database, or skips the test (fails it in CI).
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("MOAT_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MOAT_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
		}
		t.Skip("MOAT_TEST_POSTGRES_URL is not set")
	}
	return u
}

// newPostgres opens a migrated store in a fresh schema of the test
// database, dropped at cleanup.
func newPostgres(t testing.TB) *store.Store {
	t.Helper()
	url := postgresURL(t)
	schema := "moat_test_backup_" + randomHex(6)
	s, err := store.Open(t.Context(), store.Options{URL: url, Schema: schema, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dropSchema(context.Background(), s, schema); err != nil {
			t.Error(err)
		}
	})
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.SetCipher(sharedCipher())
	return s
}

// populate puts rows in every table of s, one audit record large enough
// for the backup to span several age chunks, and a name that sorts
// differently under a linguistic collation.
func populate(t testing.TB, s *store.Store, tag string) {
	t.Helper()
	ctx := t.Context()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("populating %s: %v", what, err)
		}
	}
	u := &store.User{Username: "alice" + tag, Email: "alice@example.com", DisplayName: "Alice \u00e9\u4e16", Roles: []string{"admin"}, CreatedAt: at, LastLoginAt: at.Add(time.Hour)}
	must("user", s.Users().Create(ctx, u))
	u2 := &store.User{Username: "bob" + tag, Email: "", Status: "disabled", CreatedAt: at}
	must("user", s.Users().Create(ctx, u2))
	must("credential", s.Credentials().Create(ctx, &store.Credential{UserID: u.ID, Kind: "password", Hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", CreatedAt: at}))
	must("credential", s.Credentials().Create(ctx, &store.Credential{UserID: u.ID, Kind: "totp", Name: "phone", Secret: []byte("JBSWY3DPEHPK3PXP"), CreatedAt: at}))
	must("identity", s.Identities().Create(ctx, &store.Identity{UserID: u.ID, Issuer: "https://idp.example.com", Subject: "sub-1" + tag, RefreshToken: []byte("refresh\x00token"), CreatedAt: at}))
	must("session", s.Sessions().Create(ctx, &store.Session{IDHash: []byte("0123456789abcdef0123456789abcdef" + tag), UserID: u.ID, Methods: []string{"pwd", "otp"}, AuthTime: at, CreatedAt: at, LastSeen: at, ExpiresAt: at.Add(24 * time.Hour)}))
	must("api key", s.APIKeys().Create(ctx, &store.APIKey{Name: "ci", Owner: "service", Prefix: "moat_ci" + tag, Hash: []byte{0, 1, 2, 255}, Scopes: []string{"read"}, CreatedAt: at}))
	must("signing key", s.SigningKeys().Create(ctx, &store.SigningKey{Use: "assertion", Alg: "EdDSA", Private: bytes.Repeat([]byte{7}, 64), Public: bytes.Repeat([]byte{8}, 32), CreatedAt: at, NotAfter: at.Add(90 * 24 * time.Hour)}))
	must("secret", s.Secrets().Put(ctx, &store.Secret{Name: "webhook-b" + tag, Value: []byte("s3cret"), UpdatedAt: at}))
	must("secret", s.Secrets().Put(ctx, &store.Secret{Name: "webhook_a" + tag, Value: []byte("other"), UpdatedAt: at}))
	big := bytes.Repeat([]byte(`{"kind":"request.denied","n":1234567890}`), 4000) // about 160 KiB
	must("audit", s.Audit().Append(ctx, &store.AuditRecord{Time: at, Kind: "request.denied", Data: big, PrevHash: make([]byte, 32), Hash: bytes.Repeat([]byte{1}, 32)}))
	must("audit", s.Audit().Append(ctx, &store.AuditRecord{Time: at, Kind: "login", Data: []byte(`{}`), PrevHash: bytes.Repeat([]byte{1}, 32), Hash: bytes.Repeat([]byte{2}, 32)}))
	must("backup record", s.Backups().Create(ctx, &store.BackupRecord{CreatedAt: at, File: "/var/backups/old.age", Size: 1234, SHA256: strings.Repeat("ab", 32), VerifiedAt: at, VerifyOK: true}))
	must("data key", s.DataKeys().Create(ctx, &store.DataKey{ID: "dk1" + tag, Wrapped: bytes.Repeat([]byte{9}, 60), KEKID: "kek-1", CreatedAt: at, State: "active"}))

	counts := tableCounts(t, s)
	for _, tbl := range s.Tables() {
		if counts[tbl.Name] == 0 {
			t.Fatalf("populate leaves table %s empty: add a row for it", tbl.Name)
		}
	}
}

// exportRow is one row from Store.Export.
type exportRow struct {
	Table string
	Row   []any
}

// dump is the whole content of s, as Export gives it.
func dump(t testing.TB, s *store.Store) []exportRow {
	t.Helper()
	var rows []exportRow
	if _, err := s.Export(t.Context(), func(table string, row []any) error {
		rows = append(rows, exportRow{table, append([]any(nil), row...)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

func tableCounts(t testing.TB, s *store.Store) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range dump(t, s) {
		n[r.Table]++
	}
	return n
}

// sameData fails t unless a and b hold the same rows in the same order.
func sameData(t testing.TB, a, b []exportRow) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d rows, want %d", len(b), len(a))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("row %d differs:\n got %s\nwant %s", i, fmtRow(b[i]), fmtRow(a[i]))
		}
	}
}

func fmtRow(r exportRow) string {
	s := fmt.Sprintf("%s %#v", r.Table, r.Row)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// testKeys is an X25519 identity and the encryption and decryption made
// from it.
func x25519Keys(t testing.TB) (Encryption, Decryption) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return Encryption{Recipients: []string{id.Recipient().String()}}, Decryption{Identities: []string{id.String()}}
}

// passphraseKeys uses a low scrypt work factor to keep tests fast.
func passphraseKeys(pass string) (Encryption, Decryption) {
	return Encryption{Passphrase: pass, scryptLogN: 10}, Decryption{Passphrase: pass}
}

// backupBytes backs s up into memory.
func backupBytes(t testing.TB, s *store.Store, enc Encryption) ([]byte, *Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Create(t.Context(), s, &buf, enc)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

func verifyBytes(t testing.TB, b []byte, dec Decryption, o ScratchOptions) *Report {
	t.Helper()
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	rep, err := Verify(t.Context(), bytes.NewReader(b), dec, o)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}
