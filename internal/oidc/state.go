package oidc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// stateCookie holds a sign-in in flight. The __Host- prefix makes browsers
// accept it only with Secure, Path=/ and no Domain. SameSite=Lax, not
// Strict: the provider sends the browser back with a top-level GET from
// its own site, and a Strict cookie would not come with it.
const stateCookie = "__Host-moat_oidc"

// stateTTL is how long a user has at the provider to sign in.
const stateTTL = 10 * time.Minute

// maxStateCookie bounds the cookie's value; a sealed state with the
// longest return address is about 3 KiB.
const maxStateCookie = 4096

// maxStateField bounds each field of a state; the return address is the
// longest (portal.SafeReturn keeps at most 2 KiB).
const maxStateField = 2048

// stateVersion is the first byte of a sealed state's plaintext.
const stateVersion = 1

// Errors of a state cookie. Both mean: start the sign-in again.
var (
	errStateInvalid = errors.New("the sign-in state cookie is malformed or was not sealed with this key")
	errStateExpired = errors.New("the sign-in state cookie expired")
)

// loginState is what the browser carries between start and callback.
type loginState struct {
	Provider string
	State    string // the state parameter
	Nonce    string
	Verifier string // the PKCE code verifier
	ReturnTo string // already passed through portal.SafeReturn
	Expires  time.Time
}

// sealer seals loginStates with AES-256-GCM under a key derived from
// Options.StateKey, with the cookie's name as additional data.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the state key must be 32 bytes, not %d", len(key))
	}
	k, err := hkdf.Key(sha256.New, key, nil, "moat oidc state cookie v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the state cookie key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts st into a cookie value: base64url(nonce || ciphertext).
func (s *sealer) seal(st *loginState) (string, error) {
	plain, err := encodeState(st)
	if err != nil {
		return "", err
	}
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", err
	}
	out = s.aead.Seal(out, out, plain, []byte(stateCookie))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// open decrypts a cookie value and checks its expiry against now. Any
// value that was not made by seal with this key is errStateInvalid. It
// never panics and allocates at most a few times the value's size.
func (s *sealer) open(v string, now time.Time) (*loginState, error) {
	if len(v) > maxStateCookie {
		return nil, errStateInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errStateInvalid
	}
	ns := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(stateCookie))
	if err != nil {
		return nil, errStateInvalid
	}
	st, err := decodeState(plain)
	if err != nil {
		return nil, errStateInvalid
	}
	if !now.Before(st.Expires) {
		return nil, errStateExpired
	}
	return st, nil
}

// encodeState writes st as: version byte, expiry (Unix seconds, 8 bytes
// big-endian), then each field as a 2-byte big-endian length and its bytes.
func encodeState(st *loginState) ([]byte, error) {
	fields := st.fields()
	n := 1 + 8
	for _, f := range fields {
		if len(f) > maxStateField {
			return nil, errors.New("a sign-in state field is too long")
		}
		n += 2 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(st.Expires.Unix()))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// decodeState reads what encodeState wrote, and nothing else: a wrong
// version, a field past the end or bytes left over are errors.
func decodeState(b []byte) (*loginState, error) {
	bad := errors.New("malformed sign-in state")
	if len(b) < 1+8 || b[0] != stateVersion {
		return nil, bad
	}
	exp := binary.BigEndian.Uint64(b[1:9])
	if exp > 1<<40 { // far past any real expiry; keeps time.Unix sane
		return nil, bad
	}
	b = b[9:]
	var fields [5]string
	for i := range fields {
		if len(b) < 2 {
			return nil, bad
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > maxStateField || n > len(b) {
			return nil, bad
		}
		fields[i] = string(b[:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, bad
	}
	return &loginState{Provider: fields[0], State: fields[1], Nonce: fields[2], Verifier: fields[3], ReturnTo: fields[4],
		Expires: time.Unix(int64(exp), 0).UTC()}, nil
}

func (st *loginState) fields() [5]string {
	return [5]string{st.Provider, st.State, st.Nonce, st.Verifier, st.ReturnTo}
}

// setStateCookie sends the sealed state: Secure, HttpOnly, SameSite=Lax,
// Path=/, no Domain, Max-Age stateTTL.
func setStateCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie, Value: value, Path: "/", MaxAge: int(stateTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// clearStateCookie tells the browser to drop the state cookie, with the
// attributes the __Host- prefix requires so the deletion is accepted.
func clearStateCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// stateFromRequest returns the request's state cookie value; "" when it
// has none or several (one of them planted: which is genuine is unknown).
func stateFromRequest(r *http.Request) (value string, several bool) {
	cs := r.CookiesNamed(stateCookie)
	switch len(cs) {
	case 0:
		return "", false
	case 1:
		return cs[0].Value, false
	}
	return "", true
}
