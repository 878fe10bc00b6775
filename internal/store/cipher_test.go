package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
)

// testCipher is a small AES-256-GCM Cipher for the tests, with keys by id
// and a swappable active key. A ciphertext is: one byte of key id length,
// the key id, a 12-byte nonce, then the sealed data.
type testCipher struct {
	mu     sync.Mutex
	keys   map[string]cipher.AEAD
	active string
}

func newTestCipher(t testing.TB, ids ...string) *testCipher {
	t.Helper()
	c := &testCipher{keys: map[string]cipher.AEAD{}}
	for _, id := range ids {
		c.addKey(t, id)
	}
	c.setActive(ids[0])
	return c
}

func (c *testCipher) addKey(t testing.TB, id string) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.keys[id] = aead
	c.mu.Unlock()
}

func (c *testCipher) setActive(id string) {
	c.mu.Lock()
	c.active = id
	c.mu.Unlock()
}

func (c *testCipher) ActiveKeyID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

func (c *testCipher) Seal(plaintext, aad []byte) ([]byte, error) {
	c.mu.Lock()
	id, aead := c.active, c.keys[c.active]
	c.mu.Unlock()
	out := append([]byte{byte(len(id))}, id...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, aad), nil
}

var errBadCiphertext = errors.New("test cipher: malformed ciphertext")

func (c *testCipher) split(ct []byte) (id string, aead cipher.AEAD, rest []byte, err error) {
	if len(ct) < 1 || len(ct) < 1+int(ct[0])+12 {
		return "", nil, nil, errBadCiphertext
	}
	id = string(ct[1 : 1+ct[0]])
	c.mu.Lock()
	aead = c.keys[id]
	c.mu.Unlock()
	return id, aead, ct[1+ct[0]:], nil
}

func (c *testCipher) Open(ct, aad []byte) ([]byte, error) {
	_, aead, rest, err := c.split(ct)
	if err != nil {
		return nil, err
	}
	if aead == nil {
		return nil, errors.New("test cipher: unknown key")
	}
	return aead.Open(nil, rest[:12], rest[12:], aad)
}

func (c *testCipher) KeyID(ct []byte) (string, error) {
	id, _, _, err := c.split(ct)
	return id, err
}

func TestTestCipher(t *testing.T) {
	c := newTestCipher(t, "k1", "k2")
	ct, err := c.Seal([]byte("hello"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.KeyID(ct); err != nil || id != "k1" {
		t.Fatalf("KeyID = %q, %v; want k1", id, err)
	}
	if p, err := c.Open(ct, []byte("aad")); err != nil || string(p) != "hello" {
		t.Fatalf("Open = %q, %v", p, err)
	}
	if _, err := c.Open(ct, []byte("other")); err == nil {
		t.Fatal("Open with other aad succeeded")
	}
}
