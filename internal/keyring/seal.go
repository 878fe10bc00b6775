package keyring

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// A sealed value describes itself:
//
//	version (1 byte) | id length n (1 byte) | key id (n bytes) |
//	nonce (12 bytes) | AES-256-GCM ciphertext and tag (16 bytes)
//
// The GCM additional data is the header (version, length and key id)
// followed by the caller's aad, so every byte is authenticated: the header
// as additional data, the nonce through the key stream, the rest by the
// tag.
const (
	sealVersion = 1
	nonceSize   = 12
	tagSize     = 16
)

// Errors of Open and KeyID, matched with errors.Is.
var (
	// ErrInvalidCiphertext means a value is not one Seal produced with
	// this aad: it is malformed, truncated, altered, or bound to another
	// table, column or record.
	ErrInvalidCiphertext = errors.New("invalid ciphertext")
	// ErrUnknownKey means a value was sealed with a data key the ring does
	// not hold.
	ErrUnknownKey = errors.New("unknown data key")
)

// Seal encrypts plaintext with the active data key, bound to aad (see
// store.FieldAAD). Each call draws a fresh random nonce, so sealing the
// same value twice gives different results. It is safe for concurrent use.
func (r *Ring) Seal(plaintext, aad []byte) ([]byte, error) {
	k := r.set.Load().active
	hdr := 2 + len(k.id)
	out := make([]byte, hdr+nonceSize, hdr+nonceSize+len(plaintext)+tagSize)
	out[0] = sealVersion
	out[1] = byte(len(k.id))
	copy(out[2:], k.id)
	nonce := out[hdr : hdr+nonceSize]
	rand.Read(nonce) // never fails since Go 1.24
	return k.aead.Seal(out, nonce, plaintext, additionalData(out[:hdr], aad)), nil
}

// Open decrypts a value made by Seal with the same aad. It fails with
// ErrUnknownKey if the data key that sealed it is not in the ring, and
// with ErrInvalidCiphertext if the value was altered, truncated or moved to
// another field: it never returns unauthenticated bytes. It is safe for
// concurrent use.
func (r *Ring) Open(ciphertext, aad []byte) ([]byte, error) {
	id, hdr, err := parseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	k := r.set.Load().byID[string(id)]
	if k == nil {
		return nil, fmt.Errorf("%w %s", ErrUnknownKey, id)
	}
	nonce := ciphertext[hdr : hdr+nonceSize]
	plaintext, err := k.aead.Open(nil, nonce, ciphertext[hdr+nonceSize:], additionalData(ciphertext[:hdr], aad))
	if err != nil {
		return nil, fmt.Errorf("%w: it does not authenticate under data key %s (altered, or bound to another field)", ErrInvalidCiphertext, id)
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// KeyID returns the id of the data key that sealed ciphertext, without
// opening it (a well-formed header does not prove the value authentic).
func (r *Ring) KeyID(ciphertext []byte) (string, error) {
	id, _, err := parseHeader(ciphertext)
	if err != nil {
		return "", err
	}
	return string(id), nil
}

// ActiveKeyID returns the id of the data key new values are sealed with.
func (r *Ring) ActiveKeyID() string { return r.set.Load().active.id }

// parseHeader checks the framing of a sealed value and returns its key id
// and the length of its header.
func parseHeader(b []byte) (id []byte, hdr int, err error) {
	if len(b) < 2 {
		return nil, 0, fmt.Errorf("%w: too short", ErrInvalidCiphertext)
	}
	if b[0] != sealVersion {
		return nil, 0, fmt.Errorf("%w: unknown format version %d", ErrInvalidCiphertext, b[0])
	}
	hdr = 2 + int(b[1])
	if len(b) < hdr+nonceSize+tagSize {
		return nil, 0, fmt.Errorf("%w: truncated", ErrInvalidCiphertext)
	}
	id = b[2:hdr]
	if !validKeyID(id) {
		return nil, 0, fmt.Errorf("%w: malformed key id", ErrInvalidCiphertext)
	}
	return id, hdr, nil
}

// additionalData is the GCM additional data of a sealed value.
func additionalData(header, aad []byte) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	return append(append(ad, header...), aad...)
}
