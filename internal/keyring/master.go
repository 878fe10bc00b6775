package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MasterKeySize is the length in bytes of a master key.
const MasterKeySize = 32

// Labels that separate the uses of the master key. Changing one makes
// every existing key ring unreadable.
const (
	kekInfo    = "moat key-encryption key v1"
	kekIDLabel = "moat kek id"
	wrapAAD    = "moat data key\x00"
)

// GenerateMasterKey returns a new master key: 32 bytes from crypto/rand in
// standard base64, 44 characters. It is what `moat keys generate` prints.
func GenerateMasterKey() (string, error) {
	b := make([]byte, MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating master key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ParseMasterKey decodes a master key written by GenerateMasterKey.
// Surrounding white space (such as a file's trailing newline) is ignored.
// The errors describe what is wrong but never quote s, which may be a
// secret with a typo in it.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("master key is empty: make one with moat keys generate")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// err would give the offset of the bad character, which is harmless,
		// but is left out so that nothing of s can ever leak through it.
		return nil, fmt.Errorf("master key is not standard base64 (%d characters; want the %d made by moat keys generate)",
			len(s), base64.StdEncoding.EncodedLen(MasterKeySize))
	}
	if len(b) != MasterKeySize {
		return nil, fmt.Errorf("master key decodes to %d bytes, want %d: make one with moat keys generate", len(b), MasterKeySize)
	}
	return b, nil
}

// MasterKeyID returns the fingerprint of a master key: 16 hex characters
// that name the key-encryption key derived from it, stored with each
// wrapped data key. The fingerprint is a MAC computed under the master
// key, separate from the key derivation, so it reveals nothing about the
// key-encryption key.
func MasterKeyID(master []byte) string {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(kekIDLabel))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// kek is a key-encryption key: it wraps and unwraps data keys.
type kek struct {
	id   string
	aead cipher.AEAD
}

// newKEK derives the key-encryption key from a master key with HKDF-SHA-256.
func newKEK(master []byte) (*kek, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	key, err := hkdf.Key(sha256.New, master, nil, kekInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving key-encryption key: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &kek{id: MasterKeyID(master), aead: aead}, nil
}

// Wrapped data keys are a version byte, a random nonce and the AES-256-GCM
// sealed key, whose additional data binds it to its key id.
const wrapVersion = 1

func (k *kek) wrap(id string, material []byte) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(material)+k.aead.Overhead())
	out[0] = wrapVersion
	rand.Read(out[1:]) // never fails since Go 1.24
	return k.aead.Seal(out, out[1:1+ns], material, []byte(wrapAAD+id))
}

func (k *kek) unwrap(id string, wrapped []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(wrapped) < 1+ns+k.aead.Overhead() || wrapped[0] != wrapVersion {
		return nil, errors.New("malformed wrapped key")
	}
	material, err := k.aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], []byte(wrapAAD+id))
	if err != nil {
		return nil, err
	}
	if len(material) != dataKeySize {
		return nil, fmt.Errorf("unwrapped key is %d bytes, want %d", len(material), dataKeySize)
	}
	return material, nil
}

// newAEAD returns AES-256-GCM with a 96-bit nonce under key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}
	return aead, nil
}
