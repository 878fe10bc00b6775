// Package mfa implements Moat's second factors other than passkeys: time-based
// one-time passwords for authenticator apps (RFC 6238), the QR code that
// enrolls them, and single-use recovery codes.
//
// Everything here is a pure function of its arguments: the package keeps no
// state, logs nothing and is safe for concurrent use. Storing secrets, the last
// accepted TOTP step and recovery code hashes is the caller's job; no function
// puts a secret into an error.
package mfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// The TOTP parameters Moat uses. They are the ones every authenticator app
// supports; apps that read other values from the key URI are rare enough
// that Moat does not offer them.
const (
	// SecretSize is the length in bytes of a secret from NewTOTPSecret,
	// the size RFC 4226 section 4 recommends for HMAC-SHA-1.
	SecretSize = 20
	// MinSecretSize is the shortest secret Verify accepts (RFC 4226 R6).
	MinSecretSize = 16
	// Digits is the length of a code.
	Digits = 6
	// Period is the time step.
	Period = 30 * time.Second
	// Skew is how many steps either side of the current one Verify accepts,
	// for clock drift and the time a user needs to type the code.
	Skew = 1
)

const (
	periodSeconds = int64(Period / time.Second)
	// maxCodeInput bounds the work done on a submitted code before it is
	// rejected: six digits with generous spacing fit easily.
	maxCodeInput = 32
)

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns SecretSize random bytes from crypto/rand.
func NewTOTPSecret() ([]byte, error) {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("generating totp secret: %w", err)
	}
	return s, nil
}

// EncodeSecret returns secret in unpadded upper-case base32, the form key URIs
// and authenticator apps use.
func EncodeSecret(secret []byte) string {
	return secretEncoding.EncodeToString(secret)
}

// FormatSecret returns EncodeSecret(secret) in groups of four characters
// separated by spaces, for a user who types the secret into an app by hand.
// Apps ignore the spaces.
func FormatSecret(secret []byte) string {
	enc := EncodeSecret(secret)
	var b strings.Builder
	b.Grow(len(enc) + len(enc)/4)
	for i := 0; i < len(enc); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(enc[i:min(i+4, len(enc))])
	}
	return b.String()
}

// KeyURI returns the otpauth:// URI that enrolls secret in an authenticator
// app, in the key URI format apps share: the label is "issuer:account", and
// issuer is repeated as a parameter for apps that read only one of them.
// Both names are percent-encoded (a space becomes %20, a colon %3A), so
// neither can break the label apart or inject a parameter. An empty issuer is
// left out.
//
// The URI contains the secret: show it to its owner once, never log it.
func KeyURI(issuer, account string, secret []byte) string {
	var b strings.Builder
	b.WriteString("otpauth://totp/")
	if issuer != "" {
		b.WriteString(escapeURIComponent(issuer))
		b.WriteByte(':')
	}
	b.WriteString(escapeURIComponent(account))
	b.WriteString("?secret=")
	b.WriteString(EncodeSecret(secret))
	if issuer != "" {
		b.WriteString("&issuer=")
		b.WriteString(escapeURIComponent(issuer))
	}
	b.WriteString("&algorithm=SHA1&digits=")
	b.WriteString(strconv.Itoa(Digits))
	b.WriteString("&period=")
	b.WriteString(strconv.FormatInt(periodSeconds, 10))
	return b.String()
}

// escapeURIComponent percent-encodes every byte of s except the RFC 3986
// unreserved characters and '@', which is legal in a path and keeps e-mail
// addresses readable. It suits both the label and query values, unlike
// url.QueryEscape, whose '+' for a space some apps show literally.
func escapeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '@':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// Step returns the RFC 6238 time step that contains t: the number of whole
// periods since the Unix epoch.
func Step(t time.Time) int64 {
	s := t.Unix()
	step := s / periodSeconds
	if s < 0 && s%periodSeconds != 0 {
		step-- // floor, not truncation, before 1970
	}
	return step
}

// Code returns the code for secret at time t. Moat itself only verifies codes;
// Code exists for tests and tools that stand in for an authenticator app.
func Code(secret []byte, t time.Time) string {
	return fmt.Sprintf("%0*d", Digits, hotp(hmac.New(sha1.New, secret), uint64(Step(t)), Digits))
}

// Verify checks a code typed by a user against secret at time now.
//
// Spaces and tabs anywhere in code are ignored; what remains must be exactly
// Digits ASCII digits. The code is compared in constant time against the
// steps from Skew before to Skew after the current one, and a step is only
// accepted if it is greater than lastStep, the step Verify returned the last
// time it succeeded for this secret (0 if it never has). The caller must store
// the returned step before reporting success: a code is then good once, and
// neither it nor an older one can be replayed.
//
// A wrong, malformed or replayed code, and a secret shorter than
// MinSecretSize, all give ok == false: a bad code is a result, not an error.
func Verify(secret []byte, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	want, valid := parseCode(code)
	if !valid || len(secret) < MinSecretSize {
		return 0, false
	}
	mac := hmac.New(sha1.New, secret)
	cur := Step(now)
	var match int64
	found := 0
	// Every step in the window is computed and compared, whatever matches,
	// so the time taken does not tell which one did. If two steps give the
	// same code the later one wins, which burns more of the window.
	for s := cur - Skew; s <= cur+Skew; s++ {
		eq := subtle.ConstantTimeEq(int32(hotp(mac, uint64(s), Digits)), int32(want))
		eq &= boolToInt(s > lastStep)
		match = int64(eq)*s + int64(1-eq)*match
		found |= eq
	}
	if found == 0 {
		return 0, false
	}
	return match, true
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseCode strips spaces and tabs from code and returns its value if exactly
// Digits ASCII digits remain. Other Unicode digits (Arabic-Indic,
// full-width) are refused; a form that wants to accept them must map them to
// ASCII before calling Verify.
func parseCode(code string) (uint32, bool) {
	if len(code) > maxCodeInput {
		return 0, false
	}
	var v uint32
	n := 0
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c == ' ' || c == '\t':
			continue
		case '0' <= c && c <= '9' && n < Digits:
			v = v*10 + uint32(c-'0')
			n++
		default:
			return 0, false
		}
	}
	return v, n == Digits
}

// hotp is the RFC 4226 HOTP value of counter with digits decimal digits,
// using mac (keyed with the secret), which it resets first.
func hotp(mac hash.Hash, counter uint64, digits int) uint32 {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Reset()
	mac.Write(msg[:])
	var buf [sha1.Size]byte
	sum := mac.Sum(buf[:0])
	// Dynamic truncation, RFC 4226 section 5.3.
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return bin % mod
}
