package mfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Recovery code parameters. See NewRecoveryCodes for the format and
// HashRecoveryCode for how codes are stored.
const (
	// RecoveryCodeLength is the number of symbols in a code, dash excluded.
	RecoveryCodeLength = 10
	// MaxRecoveryCodes bounds one NewRecoveryCodes call.
	MaxRecoveryCodes = 100
	// MinPepperSize is the shortest pepper HashRecoveryCode accepts.
	MinPepperSize = 32

	recoveryAlphabet  = "23456789abcdefghijkmnpqrstuvwxyz"
	recoveryHashV1    = "v1$"
	recoverySaltSize  = 16
	maxRecoveryInput  = 64
	recoveryGroupSize = 5
)

// NewRecoveryCodes returns n distinct recovery codes, for
// 1 <= n <= MaxRecoveryCodes. Each lets a user who lost their authenticator
// sign in once. Show them to the user once and store only their hashes.
//
// A code is RecoveryCodeLength symbols drawn uniformly by crypto/rand from a
// 32-symbol alphabet, 50 bits, shown as xxxxx-xxxxx. The alphabet is the
// digits 2-9 and the lower-case letters except l and o, so none of 0/O/o and
// 1/l/I can be misread; input is normalised (dashes, spaces and tabs dropped,
// letters lower-cased) before it is checked.
func NewRecoveryCodes(n int) ([]string, error) {
	if n < 1 || n > MaxRecoveryCodes {
		return nil, fmt.Errorf("generating recovery codes: count %d out of range 1..%d", n, MaxRecoveryCodes)
	}
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	var raw [RecoveryCodeLength]byte
	for len(codes) < n {
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("generating recovery codes: %w", err)
		}
		var c [RecoveryCodeLength + 1]byte
		j := 0
		for i, r := range raw {
			if i == recoveryGroupSize {
				c[j] = '-'
				j++
			}
			// 256 is a multiple of 32, so the low five bits are uniform.
			c[j] = recoveryAlphabet[r&31]
			j++
		}
		code := string(c[:])
		if seen[code] {
			continue
		}
		seen[code] = true
		codes = append(codes, code)
	}
	clear(raw[:])
	return codes, nil
}

// HashRecoveryCode returns the form of code to store: HMAC-SHA-256 keyed with
// pepper over a random per-code salt and the normalised code, written
// "v1$" + base64(salt || mac) in unpadded standard base64. It fails if
// pepper is shorter than MinPepperSize or code is not a well-formed recovery
// code; the error never quotes the code.
//
// Why this construction:
//   - No slow password hash such as argon2id. Those make guessing a
//     low-entropy password expensive; a 50-bit random code is already beyond
//     offline guessing, and a slow hash would be paid on every online
//     attempt, handing anyone who submits codes a lever on Moat's CPU and
//     memory.
//   - The pepper lives outside the database (a secret reference in config),
//     so a leaked table alone cannot be tested against any guess.
//   - The salt stops someone holding both the table and the pepper from
//     testing one guess against every stored code at once: with a million
//     accounts' codes, the 2^50 search would otherwise shrink a
//     millionfold. Hashes are therefore not deterministic, and the caller
//     checks a submitted code with VerifyRecoveryCode against the few unused
//     hashes of the one account signing in.
func HashRecoveryCode(pepper []byte, code string) (string, error) {
	if len(pepper) < MinPepperSize {
		return "", fmt.Errorf("hashing recovery code: pepper is %d bytes, want at least %d", len(pepper), MinPepperSize)
	}
	norm, ok := normalizeRecoveryCode(code)
	if !ok {
		return "", errors.New("hashing recovery code: not a well-formed recovery code")
	}
	var buf [recoverySaltSize + sha256.Size]byte
	salt := buf[:recoverySaltSize]
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing recovery code: %w", err)
	}
	mac := recoveryMAC(pepper, salt, norm)
	copy(buf[recoverySaltSize:], mac)
	return recoveryHashV1 + base64.RawStdEncoding.EncodeToString(buf[:]), nil
}

// VerifyRecoveryCode reports whether code, as a user typed it, is the one
// hash was made from with this pepper. The MAC is compared in constant time.
// A malformed code or hash, or a pepper shorter than MinPepperSize, gives
// false. The caller must delete or mark the hash used before it reports
// success, so each code works once.
func VerifyRecoveryCode(pepper []byte, code, hash string) bool {
	if len(pepper) < MinPepperSize {
		return false
	}
	// The length check also refuses the CR and LF the decoder would skip,
	// so exactly one string is accepted for each salt and MAC.
	enc, ok := strings.CutPrefix(hash, recoveryHashV1)
	if !ok || len(enc) != base64.RawStdEncoding.EncodedLen(recoverySaltSize+sha256.Size) {
		return false
	}
	raw, err := base64.RawStdEncoding.Strict().DecodeString(enc)
	if err != nil || len(raw) != recoverySaltSize+sha256.Size {
		return false
	}
	norm, ok := normalizeRecoveryCode(code)
	if !ok {
		return false
	}
	mac := recoveryMAC(pepper, raw[:recoverySaltSize], norm)
	return subtle.ConstantTimeCompare(mac, raw[recoverySaltSize:]) == 1
}

// recoveryMAC is HMAC-SHA-256(pepper, salt || code).
func recoveryMAC(pepper, salt []byte, norm [RecoveryCodeLength]byte) []byte {
	h := hmac.New(sha256.New, pepper)
	h.Write(salt)
	h.Write(norm[:])
	return h.Sum(nil)
}

// normalizeRecoveryCode drops dashes and spaces, lower-cases ASCII letters and
// accepts the result only if it is RecoveryCodeLength alphabet symbols.
func normalizeRecoveryCode(code string) (norm [RecoveryCodeLength]byte, ok bool) {
	if len(code) > maxRecoveryInput {
		return norm, false
	}
	n := 0
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c == '-' || c == ' ' || c == '\t' {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if n == RecoveryCodeLength || strings.IndexByte(recoveryAlphabet, c) < 0 {
			return norm, false
		}
		norm[n] = c
		n++
	}
	return norm, n == RecoveryCodeLength
}
