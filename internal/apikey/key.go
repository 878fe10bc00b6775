package apikey

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"hash/crc32"
)

// Prefix starts every Moat API key, so that secret scanners can find
// leaked ones.
const Prefix = "moat_"

// The parts of a key, in characters. See the package documentation for
// the grammar.
const (
	idLen     = 8  // lookup id: 40 random bits in lower-case base32
	secretLen = 43 // 62^43 > 2^256: at least 256 random bits
	checkLen  = 6  // 62^6 > 2^32: a CRC-32
	// keyLen is the length of every well-formed key.
	keyLen = len(Prefix) + idLen + 1 + secretLen + checkLen

	idStart     = len(Prefix)
	sepAt       = idStart + idLen
	secretStart = sepAt + 1
	checkStart  = secretStart + secretLen
)

// base62 is the alphabet of the secret and the checksum, digits first, so
// that a checksum's digits sort like the number they spell.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base32Lower is RFC 4648 base32 in lower case, the alphabet of lookup
// ids.
const base32Lower = "abcdefghijklmnopqrstuvwxyz234567"

var idEncoding = base32.NewEncoding(base32Lower).WithPadding(base32.NoPadding)

// newKey returns a fresh key and its lookup id.
func newKey() (key, id string, err error) {
	var raw [idLen * 5 / 8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("generating api key: %w", err)
	}
	id = idEncoding.EncodeToString(raw[:])

	var b [keyLen]byte
	copy(b[:], Prefix)
	copy(b[idStart:], id)
	b[sepAt] = '_'
	if err := randomBase62(b[secretStart:checkStart]); err != nil {
		return "", "", fmt.Errorf("generating api key: %w", err)
	}
	putChecksum(b[checkStart:], crc32.ChecksumIEEE(b[:checkStart]))
	return string(b[:]), id, nil
}

// randomBase62 fills dst with characters drawn uniformly from base62.
// Random bytes of 248 and above are dropped (248 = 4*62), so that every
// character is equally likely.
func randomBase62(dst []byte) error {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		if _, err := rand.Read(buf[:]); err != nil {
			return err
		}
		for _, c := range buf {
			if c >= 248 {
				continue
			}
			dst[n] = base62[c%62]
			if n++; n == len(dst) {
				break
			}
		}
	}
	return nil
}

// putChecksum writes sum to dst as checkLen base62 digits, most
// significant first, padded with '0'.
func putChecksum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := checkLen - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

// parse checks that key is a well-formed Moat key with a correct
// checksum and returns its lookup id. It fails with errMalformed or
// errChecksum, never anything else, and reads no more than keyLen bytes
// of key whatever its length. It touches no store: a scanner can run the
// same check offline.
func parse(key string) (id string, err error) {
	if len(key) != keyLen || key[:len(Prefix)] != Prefix || key[sepAt] != '_' {
		return "", errMalformed
	}
	for i := idStart; i < sepAt; i++ {
		if !isBase32Lower(key[i]) {
			return "", errMalformed
		}
	}
	for i := secretStart; i < keyLen; i++ {
		if !isBase62(key[i]) {
			return "", errMalformed
		}
	}
	var want [checkLen]byte
	putChecksum(want[:], checksum(key[:checkStart]))
	if string(want[:]) != key[checkStart:] {
		return "", errChecksum
	}
	return key[idStart:sepAt], nil
}

// checksum is crc32.ChecksumIEEE of s, computed on the string itself
// rather than a copy of it.
func checksum(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

func isBase32Lower(c byte) bool {
	return 'a' <= c && c <= 'z' || '2' <= c && c <= '7'
}
