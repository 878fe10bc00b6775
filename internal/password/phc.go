package password

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Params are the Argon2id cost parameters of a hash.
type Params struct {
	Memory  uint32 // memory in KiB
	Time    uint32 // passes over the memory
	Threads uint8  // lanes (parallelism)
	SaltLen uint32 // salt length in bytes
	KeyLen  uint32 // derived key length in bytes
}

// DefaultParams returns the OWASP minimum for Argon2id: m=19 MiB, t=2, p=1,
// with a 16-byte salt and a 32-byte key.
func DefaultParams() Params {
	return Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Limits on what a stored hash may ask for. They bound the work one Verify
// can be made to do by a tampered hash; Validate keeps new hashes within them.
const (
	maxMemory  = 1 << 20 // KiB: 1 GiB
	maxTime    = 10
	maxThreads = 16
	minSaltLen = 8 // the Argon2 minimum
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64
	// maxPHCLen bounds the whole string: the fixed parts, three numbers of
	// at most 7 digits and two base64 fields of at most 86 characters.
	maxPHCLen = 256
)

// phcPrefix opens every hash this package writes or reads: the algorithm and
// the only version accepted, 0x13.
const phcPrefix = "$argon2id$v=19$"

// Validate reports whether p is at least as strong as DefaultParams in every
// dimension and within the limits that stored hashes are held to.
func (p Params) Validate() error {
	floor := DefaultParams()
	var errs []error
	if p.Memory < floor.Memory || p.Memory > maxMemory {
		errs = append(errs, fmt.Errorf("argon2id memory %d KiB: want %d to %d", p.Memory, floor.Memory, maxMemory))
	}
	if p.Time < floor.Time || p.Time > maxTime {
		errs = append(errs, fmt.Errorf("argon2id time %d: want %d to %d", p.Time, floor.Time, maxTime))
	}
	if p.Threads < floor.Threads || p.Threads > maxThreads {
		errs = append(errs, fmt.Errorf("argon2id threads %d: want %d to %d", p.Threads, floor.Threads, maxThreads))
	}
	if p.SaltLen < floor.SaltLen || p.SaltLen > maxSaltLen {
		errs = append(errs, fmt.Errorf("argon2id salt length %d: want %d to %d bytes", p.SaltLen, floor.SaltLen, maxSaltLen))
	}
	if p.KeyLen < floor.KeyLen || p.KeyLen > maxKeyLen {
		errs = append(errs, fmt.Errorf("argon2id key length %d: want %d to %d bytes", p.KeyLen, floor.KeyLen, maxKeyLen))
	}
	return errors.Join(errs...)
}

// memoryBytes is what one Argon2id computation with p holds while it runs.
func (p Params) memoryBytes() int64 { return int64(p.Memory) * 1024 }

// ErrInvalidHash is returned, wrapped, for a stored hash that is not a
// well-formed Argon2id PHC string within this package's limits. The message
// never repeats the hash.
var ErrInvalidHash = errors.New("invalid password hash")

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidHash, reason) }

// phc is a parsed hash.
type phc struct {
	params Params // SaltLen and KeyLen are those of salt and key
	salt   []byte
	key    []byte
}

var b64 = base64.RawStdEncoding.Strict()

// encodePHC writes the PHC string of a hash.
func encodePHC(p Params, salt, key []byte) string {
	return phcPrefix + "m=" + strconv.FormatUint(uint64(p.Memory), 10) +
		",t=" + strconv.FormatUint(uint64(p.Time), 10) +
		",p=" + strconv.FormatUint(uint64(p.Threads), 10) +
		"$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
}

// parsePHC parses an Argon2id PHC string strictly: exactly the layout that
// encodePHC writes, so that every accepted string re-encodes to itself.
func parsePHC(s string) (phc, error) {
	var h phc
	if len(s) > maxPHCLen {
		return h, invalid("too long")
	}
	rest, ok := strings.CutPrefix(s, phcPrefix)
	if !ok {
		return h, invalid("not an argon2id version 19 hash")
	}
	params, rest, ok := strings.Cut(rest, "$")
	if !ok {
		return h, invalid("missing salt")
	}
	salt, key, ok := strings.Cut(rest, "$")
	if !ok {
		return h, invalid("missing key")
	}

	m, rest, ok1 := cutField(params, "m=")
	t, rest, ok2 := cutField(rest, "t=")
	p, rest, ok3 := cutField(rest, "p=")
	if !ok1 || !ok2 || !ok3 || rest != "" {
		return h, invalid("parameters must be m=<memory>,t=<time>,p=<threads>")
	}
	var err error
	if h.params.Threads, err = parseThreads(p); err != nil {
		return h, err
	}
	if h.params.Memory, err = parseNumber(m, 8*uint32(h.params.Threads), maxMemory, "memory"); err != nil {
		return h, err
	}
	if h.params.Time, err = parseNumber(t, 1, maxTime, "time"); err != nil {
		return h, err
	}

	if h.salt, err = decodeField(salt, minSaltLen, maxSaltLen, "salt"); err != nil {
		return h, err
	}
	if h.key, err = decodeField(key, minKeyLen, maxKeyLen, "key"); err != nil {
		return h, err
	}
	h.params.SaltLen = uint32(len(h.salt))
	h.params.KeyLen = uint32(len(h.key))
	return h, nil
}

// cutField takes "name=value" off the front of a comma-separated list.
func cutField(s, name string) (value, rest string, ok bool) {
	s, ok = strings.CutPrefix(s, name)
	if !ok {
		return "", "", false
	}
	value, rest, found := strings.Cut(s, ",")
	if found && rest == "" {
		return "", "", false // a trailing comma
	}
	return value, rest, true
}

func parseThreads(s string) (uint8, error) {
	n, err := parseNumber(s, 1, maxThreads, "threads")
	return uint8(n), err
}

// parseNumber parses a PHC decimal: digits only, no sign, no leading zero,
// within [lo, hi].
func parseNumber(s string, lo, hi uint32, name string) (uint32, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, invalid(name + " is not a canonical decimal")
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, invalid(name + " is not a canonical decimal")
		}
		n = n*10 + uint64(c-'0')
	}
	if n < uint64(lo) || n > uint64(hi) {
		return 0, invalid(fmt.Sprintf("%s %d out of range %d to %d", name, n, lo, hi))
	}
	return uint32(n), nil
}

// decodeField decodes canonical unpadded standard base64 of lo to hi bytes.
// The decoder skips CR and LF, so they are refused first.
func decodeField(s string, lo, hi int, name string) ([]byte, error) {
	if len(s) < b64.EncodedLen(lo) || len(s) > b64.EncodedLen(hi) {
		return nil, invalid(fmt.Sprintf("%s length out of range %d to %d bytes", name, lo, hi))
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, invalid(name + " is not canonical unpadded base64")
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, invalid(name + " is not canonical unpadded base64")
	}
	return b, nil
}
