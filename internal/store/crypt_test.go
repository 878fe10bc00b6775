package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
)

// rawColumn reads and writes one encrypted column, and its key id hint,
// behind the store's back.
type rawColumn struct {
	get, set, getHint, setHint string
}

var rawColumns = map[string]rawColumn{
	"users.email": {
		`SELECT email FROM users WHERE id = $1`, `UPDATE users SET email = $1 WHERE id = $2`,
		`SELECT email_kid FROM users WHERE id = $1`, `UPDATE users SET email_kid = $1 WHERE id = $2`,
	},
	"credentials.secret": {
		`SELECT secret FROM credentials WHERE id = $1`, `UPDATE credentials SET secret = $1 WHERE id = $2`,
		`SELECT secret_kid FROM credentials WHERE id = $1`, `UPDATE credentials SET secret_kid = $1 WHERE id = $2`,
	},
	"identities.refresh_token": {
		`SELECT refresh_token FROM identities WHERE id = $1`, `UPDATE identities SET refresh_token = $1 WHERE id = $2`,
		`SELECT refresh_token_kid FROM identities WHERE id = $1`, `UPDATE identities SET refresh_token_kid = $1 WHERE id = $2`,
	},
	"signing_keys.private_key": {
		`SELECT private_key FROM signing_keys WHERE id = $1`, `UPDATE signing_keys SET private_key = $1 WHERE id = $2`,
		`SELECT private_key_kid FROM signing_keys WHERE id = $1`, `UPDATE signing_keys SET private_key_kid = $1 WHERE id = $2`,
	},
	"secrets.value": {
		`SELECT value FROM secrets WHERE name = $1`, `UPDATE secrets SET value = $1 WHERE name = $2`,
		`SELECT value_kid FROM secrets WHERE name = $1`, `UPDATE secrets SET value_kid = $1 WHERE name = $2`,
	},
}

func rawGet(t testing.TB, s *Store, column, id string) []byte {
	t.Helper()
	var v []byte
	if err := s.DB().QueryRow(rawColumns[column].get, id).Scan(&v); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatalf("reading %s of %s: %v", column, id, err)
	}
	return v
}

func rawSet(t testing.TB, s *Store, column, id string, v []byte) {
	t.Helper()
	if _, err := s.DB().Exec(rawColumns[column].set, v, id); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatalf("writing %s of %s: %v", column, id, err)
	}
}

func rawHint(t testing.TB, s *Store, column, id string) string {
	t.Helper()
	var v sql.NullString
	if err := s.DB().QueryRow(rawColumns[column].getHint, id).Scan(&v); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatalf("reading hint of %s of %s: %v", column, id, err)
	}
	return v.String
}

// sealedValue is one encrypted value a fixture stored.
type sealedValue struct {
	column, id string
	plain      []byte
}

// fixture stores n records in each encrypted column and returns what it
// stored.
func fixture(t testing.TB, s *Store, n int) []sealedValue {
	t.Helper()
	ctx := context.Background()
	var out []sealedValue
	for i := range n {
		u := mustUser(t, s, fmt.Sprintf("user%d", i), fmt.Sprintf("user%d@example.com", i))
		out = append(out, sealedValue{"users.email", u.ID, []byte(u.Email)})

		c := &Credential{UserID: u.ID, Kind: "totp", Secret: fmt.Appendf(nil, "totp-secret-%d", i)}
		if err := s.Credentials().Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		out = append(out, sealedValue{"credentials.secret", c.ID, c.Secret})

		id := &Identity{UserID: u.ID, Issuer: "https://idp.example", Subject: u.Username, RefreshToken: fmt.Appendf(nil, "refresh-token-%d", i)}
		if err := s.Identities().Create(ctx, id); err != nil {
			t.Fatal(err)
		}
		out = append(out, sealedValue{"identities.refresh_token", id.ID, id.RefreshToken})

		k := &SigningKey{Use: "assertion", Alg: "EdDSA", Private: fmt.Appendf(nil, "private-key-%d", i), Public: []byte("pub")}
		if err := s.SigningKeys().Create(ctx, k); err != nil {
			t.Fatal(err)
		}
		out = append(out, sealedValue{"signing_keys.private_key", k.ID, k.Private})

		sec := &Secret{Name: fmt.Sprintf("secret%d", i), Value: fmt.Appendf(nil, "secret-value-%d", i)}
		if err := s.Secrets().Put(ctx, sec); err != nil {
			t.Fatal(err)
		}
		out = append(out, sealedValue{"secrets.value", sec.Name, sec.Value})
	}
	return out
}

// readBack reads v through the store's API.
func readBack(s *Store, v sealedValue) ([]byte, error) {
	ctx := context.Background()
	switch v.column {
	case "users.email":
		u, err := s.Users().Get(ctx, v.id)
		if err != nil {
			return nil, err
		}
		return []byte(u.Email), nil
	case "credentials.secret":
		var userID string
		if err := s.DB().QueryRow(`SELECT user_id FROM credentials WHERE id = $1`, v.id).Scan(&userID); err != nil {
			return nil, err
		}
		cs, err := s.Credentials().ListByUser(ctx, userID)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.ID == v.id {
				return c.Secret, nil
			}
		}
	case "identities.refresh_token":
		var iss, sub string
		if err := s.DB().QueryRow(`SELECT issuer, subject FROM identities WHERE id = $1`, v.id).Scan(&iss, &sub); err != nil {
			return nil, err
		}
		i, err := s.Identities().Get(ctx, iss, sub)
		if err != nil {
			return nil, err
		}
		return i.RefreshToken, nil
	case "signing_keys.private_key":
		ks, err := s.SigningKeys().List(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			if k.ID == v.id {
				return k.Private, nil
			}
		}
	case "secrets.value":
		sec, err := s.Secrets().Get(ctx, v.id)
		if err != nil {
			return nil, err
		}
		return sec.Value, nil
	}
	return nil, fmt.Errorf("%s %s not found", v.column, v.id)
}

func checkReadable(t testing.TB, s *Store, vals []sealedValue) {
	t.Helper()
	for _, v := range vals {
		got, err := readBack(s, v)
		if err != nil {
			t.Fatalf("reading %s of %s: %v", v.column, v.id, err)
		}
		if !bytes.Equal(got, v.plain) {
			t.Fatalf("%s of %s = %q, want %q", v.column, v.id, got, v.plain)
		}
	}
}

// checkKeys checks that every value is sealed with key, and that its hint
// says so.
func checkKeys(t testing.TB, s *Store, c Cipher, vals []sealedValue, key string) {
	t.Helper()
	for _, v := range vals {
		kid, err := c.KeyID(rawGet(t, s, v.column, v.id))
		if err != nil || kid != key {
			t.Fatalf("%s of %s sealed with %q (%v), want %q", v.column, v.id, kid, err, key)
		}
		if h := rawHint(t, s, v.column, v.id); h != key {
			t.Fatalf("%s of %s has hint %q, want %q", v.column, v.id, h, key)
		}
	}
}

func testEncryptedAtRest(t *testing.T, b backend) {
	s, c := newStore(t, b)
	vals := fixture(t, s, 1)

	cols := map[string]bool{}
	for _, ec := range s.EncryptedColumns() {
		cols[ec.Table+"."+ec.Column] = true
	}
	for _, v := range vals {
		if !cols[v.column] {
			t.Errorf("EncryptedColumns does not list %s", v.column)
		}
		raw := rawGet(t, s, v.column, v.id)
		if len(raw) == 0 || bytes.Contains(raw, v.plain) {
			t.Errorf("%s holds %q: the plaintext %q is not sealed", v.column, raw, v.plain)
		}
	}
	if len(cols) != len(rawColumns) {
		t.Errorf("EncryptedColumns lists %d columns, the tests know %d", len(cols), len(rawColumns))
	}
	checkKeys(t, s, c, vals, "k1")
	checkReadable(t, s, vals)

	// An empty value is not sealed: it is stored as NULL.
	u := mustUser(t, s, "noemail", "")
	if raw := rawGet(t, s, "users.email", u.ID); raw != nil {
		t.Errorf("empty email stored as %q, want NULL", raw)
	}
}

func testMovedCiphertext(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	alice := mustUser(t, s, "alice", "alice@example.com")
	bob := mustUser(t, s, "bob", "bob@example.com")

	// Swap the two users' sealed emails: each is bound to its row.
	ea, eb := rawGet(t, s, "users.email", alice.ID), rawGet(t, s, "users.email", bob.ID)
	rawSet(t, s, "users.email", alice.ID, eb)
	rawSet(t, s, "users.email", bob.ID, ea)
	for _, u := range []*User{alice, bob} {
		got, err := s.Users().Get(ctx, u.ID)
		if err == nil {
			t.Fatalf("Get(%s) after swapping emails returned %q, want an error", u.Username, got.Email)
		}
	}
	if _, err := s.Users().List(ctx); err == nil {
		t.Fatal("List after swapping emails succeeded")
	}

	// Move a sealed email into another column: bound to its column too.
	if err := s.Secrets().Put(ctx, &Secret{Name: alice.ID, Value: []byte("webhook")}); err != nil {
		t.Fatal(err)
	}
	rawSet(t, s, "secrets.value", alice.ID, ea)
	if got, err := s.Secrets().Get(ctx, alice.ID); err == nil {
		t.Fatalf("Get of a secret holding an email ciphertext returned %q, want an error", got.Value)
	}
}

func testTamperedCiphertext(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	vals := fixture(t, s, 1)
	for _, v := range vals {
		raw := rawGet(t, s, v.column, v.id)
		raw[len(raw)-3] ^= 0x01
		rawSet(t, s, v.column, v.id, raw)
		if got, err := readBack(s, v); err == nil {
			t.Errorf("%s: a tampered ciphertext opened to %q", v.column, got)
		}
	}
}

func testNoCipher(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	vals := fixture(t, s, 1)
	s.SetCipher(nil)

	for _, v := range vals {
		_, err := readBack(s, v)
		wantErr(t, "reading "+v.column+" with no cipher", err, ErrNoCipher)
	}
	err := s.Users().Create(ctx, &User{Username: "carol", Email: "carol@example.com"})
	wantErr(t, "Create with an email and no cipher", err, ErrNoCipher)
	_, err = s.Users().GetByUsername(ctx, "carol")
	wantErr(t, "the user whose Create failed", err, ErrNotFound)
	err = s.Secrets().Put(ctx, &Secret{Name: "x", Value: []byte("y")})
	wantErr(t, "Put with no cipher", err, ErrNoCipher)
	_, _, err = s.Reencrypt(ctx, 10)
	wantErr(t, "Reencrypt with no cipher", err, ErrNoCipher)

	// A record with nothing to seal needs no cipher.
	dave := &User{Username: "dave"}
	if err := s.Users().Create(ctx, dave); err != nil {
		t.Fatalf("Create without an email and no cipher: %v", err)
	}
	if _, err := s.Users().Get(ctx, dave.ID); err != nil {
		t.Fatalf("Get of a user without an email and no cipher: %v", err)
	}
}

// rotate adds key k2 to c and makes it active.
func rotate(t testing.TB, c *testCipher) {
	c.addKey(t, "k2")
	c.setActive("k2")
}

func testReencrypt(t *testing.T, b backend) {
	ctx := context.Background()
	s, c := newStore(t, b)
	vals := fixture(t, s, 3)
	rotate(t, c)

	done, remaining, err := s.Reencrypt(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if done != len(vals) || remaining != 0 {
		t.Fatalf("Reencrypt = %d done, %d remaining; want %d, 0", done, remaining, len(vals))
	}
	checkKeys(t, s, c, vals, "k2")

	// Nothing depends on the old key any more.
	c.mu.Lock()
	delete(c.keys, "k1")
	c.mu.Unlock()
	checkReadable(t, s, vals)

	done, remaining, err = s.Reencrypt(ctx, 1000)
	if err != nil || done != 0 || remaining != 0 {
		t.Fatalf("Reencrypt after the rotation = %d, %d, %v; want 0, 0, nil", done, remaining, err)
	}
}

func testReencryptResumes(t *testing.T, b backend) {
	ctx := context.Background()
	s, c := newStore(t, b)
	vals := fixture(t, s, 2)
	rotate(t, c)

	total := 0
	for i := range len(vals) / 2 {
		done, remaining, err := s.Reencrypt(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if done != 1 || remaining != len(vals)-i-1 {
			t.Fatalf("call %d: Reencrypt = %d done, %d remaining; want 1, %d", i, done, remaining, len(vals)-i-1)
		}
		total += done
	}
	// Half-way, with values under both keys, everything reads.
	checkReadable(t, s, vals)

	// Stop, and resume from another instance of the store.
	s2 := b.reopen(t, s)
	s2.SetCipher(c)
	for calls := 0; ; calls++ {
		if calls > len(vals) {
			t.Fatal("Reencrypt does not converge")
		}
		done, remaining, err := s2.Reencrypt(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		total += done
		if remaining == 0 {
			break
		}
	}
	if total != len(vals) {
		t.Fatalf("re-encrypted %d values in all, want %d", total, len(vals))
	}
	checkKeys(t, s2, c, vals, "k2")
	checkReadable(t, s2, vals)
}

func testReencryptWrongHint(t *testing.T, b backend) {
	ctx := context.Background()
	s, c := newStore(t, b)
	vals := fixture(t, s, 1)
	rotate(t, c)

	// A hint claims a value is already under the new key; another has none.
	if _, err := s.DB().Exec(rawColumns["users.email"].setHint, "k2", vals[0].id); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(rawColumns["secrets.value"].setHint, nil, vals[4].id); err != nil { //sqlcheck:ok test: table and column names are constants of the test
		t.Fatal(err)
	}
	total := 0
	for calls := 0; ; calls++ {
		if calls > 3 {
			t.Fatal("Reencrypt does not converge")
		}
		done, remaining, err := s.Reencrypt(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		total += done
		if remaining == 0 {
			break
		}
	}
	if total != len(vals) {
		t.Fatalf("re-encrypted %d values, want %d", total, len(vals))
	}
	checkKeys(t, s, c, vals, "k2")
	checkReadable(t, s, vals)
}

func TestReencryptRejectsBadBatch(t *testing.T) {
	s, _ := newStore(t, sqliteBackend)
	if _, _, err := s.Reencrypt(context.Background(), 0); err == nil || errors.Is(err, ErrNoCipher) {
		t.Fatalf("Reencrypt(0) = %v, want a batch error", err)
	}
}

// hookCipher runs hook, once, when asked to open the value bound to aad.
type hookCipher struct {
	*testCipher
	aad  []byte
	hook func()
}

func (h *hookCipher) Open(ct, aad []byte) ([]byte, error) {
	if h.hook != nil && bytes.Equal(aad, h.aad) {
		hook := h.hook
		h.hook = nil
		hook()
	}
	return h.testCipher.Open(ct, aad)
}

// testReencryptConcurrentWrite writes a value while Reencrypt is between
// reading it and replacing it: the new value must stand.
func testReencryptConcurrentWrite(t *testing.T, b backend) {
	ctx := context.Background()
	s, c := newStore(t, b)
	alice := mustUser(t, s, "alice", "old@example.com")
	rotate(t, c)

	h := &hookCipher{testCipher: c, aad: FieldAAD("users", "email", alice.ID)}
	h.hook = func() {
		u := *alice
		u.Email = "new@example.com"
		if err := s.Users().Update(ctx, &u); err != nil {
			t.Errorf("concurrent Update: %v", err)
		}
	}
	s.SetCipher(h)
	done, remaining, err := s.Reencrypt(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if h.hook != nil {
		t.Fatal("the concurrent write did not happen")
	}
	if done != 0 || remaining != 0 {
		t.Fatalf("Reencrypt = %d done, %d remaining; want 0, 0 (the concurrent write re-sealed the value)", done, remaining)
	}
	got, err := s.Users().Get(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != "new@example.com" {
		t.Fatalf("email = %q: Reencrypt overwrote a concurrent write", got.Email)
	}
}
