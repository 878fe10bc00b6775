package portal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// FlashCookie carries newly made recovery codes from the request that made
// them to the page that shows them (GET PathRecoveryCodes), when that
// request cannot show them itself: a passkey registration answers with
// JSON, and a regeneration redirects so that reloading the page does not
// regenerate again. The codes are sealed with AES-256-GCM under
// HandlerOptions.FlashKey, bound to the SHA-256 of the session token they
// were made for, and expire after ten minutes; they are never kept on the
// server nor put in a URL, so any instance sharing the key can show them.
// Like the session cookie it is Secure, HttpOnly, host-only and Path=/, and
// it is SameSite=Strict.
const FlashCookie = "__Host-moat_flash"

const (
	// flashTTL bounds how long sealed codes can be opened, both in the
	// sealed payload and as the cookie's Max-Age.
	flashTTL = 10 * time.Minute
	// flashKeySize is the size of an AES-256 key.
	flashKeySize = 32
	// maxFlashBytes bounds the cookie value opened; ten recovery codes
	// seal to a few hundred bytes.
	maxFlashBytes = 4096
	// flashLabel separates this use of the key from any other, and
	// recovery codes from anything else a flash may carry one day.
	flashLabel = "moat portal flash v1\x00recovery-codes\x00"
)

// flashPayload is what a flash cookie seals.
type flashPayload struct {
	Expires int64    `json:"exp"` // Unix seconds
	Codes   []string `json:"codes"`
}

// flasher seals and opens flash cookies. It is safe for concurrent use.
type flasher struct {
	aead cipher.AEAD
}

func newFlasher(key []byte) (*flasher, error) {
	if len(key) != flashKeySize {
		return nil, fmt.Errorf("flash key is %d bytes, want %d", len(key), flashKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("flash key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("flash key: %w", err)
	}
	return &flasher{aead: aead}, nil
}

// seal returns the cookie value carrying codes for the session whose token
// is token, valid until now plus flashTTL.
func (f *flasher) seal(token string, codes []string, now time.Time) (string, error) {
	if token == "" {
		return "", errors.New("sealing recovery codes: no session")
	}
	plain, err := json.Marshal(flashPayload{Expires: now.Add(flashTTL).Unix(), Codes: codes})
	if err != nil {
		return "", fmt.Errorf("sealing recovery codes: %w", err)
	}
	nonce := make([]byte, f.aead.NonceSize(), f.aead.NonceSize()+len(plain)+f.aead.Overhead())
	_, _ = rand.Read(nonce) // never fails
	sealed := f.aead.Seal(nonce, nonce, plain, flashAD(token))
	if v := b64.EncodeToString(sealed); len(v) <= maxFlashBytes {
		return v, nil
	}
	return "", errors.New("sealing recovery codes: too many to carry in a cookie")
}

// open returns the codes sealed in value for the session whose token is
// token, or ok false when value was not sealed for it with this key, was
// tampered with, or has expired.
func (f *flasher) open(value, token string, now time.Time) (codes []string, ok bool) {
	if value == "" || token == "" || len(value) > maxFlashBytes {
		return nil, false
	}
	sealed, err := b64.DecodeString(value)
	if err != nil || len(sealed) < f.aead.NonceSize()+f.aead.Overhead() {
		return nil, false
	}
	ns := f.aead.NonceSize()
	plain, err := f.aead.Open(nil, sealed[:ns], sealed[ns:], flashAD(token))
	if err != nil {
		return nil, false
	}
	var p flashPayload
	if err := json.Unmarshal(plain, &p); err != nil || len(p.Codes) == 0 {
		return nil, false
	}
	// The cookie's Max-Age already ends it in the browser; the sealed
	// expiry also ends a copy of it kept elsewhere.
	if !now.Before(time.Unix(p.Expires, 0)) {
		return nil, false
	}
	return p.Codes, true
}

// flashAD is the additional data that binds a flash to one session.
func flashAD(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return append([]byte(flashLabel), sum[:]...)
}

// setFlashCookie sends a sealed flash.
func setFlashCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: FlashCookie, Value: value, Path: "/", MaxAge: int(flashTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// clearFlashCookie tells the browser to drop the flash cookie.
func clearFlashCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: FlashCookie, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// flashFromRequest returns the flash cookie's value, or "" when the request
// has none.
func flashFromRequest(r *http.Request) string {
	ck, err := r.Cookie(FlashCookie)
	if err != nil {
		return ""
	}
	return ck.Value
}
