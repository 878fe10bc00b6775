package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Encryption says whom a new backup is encrypted to: age recipients or a
// passphrase, never both (an age file is encrypted to one or the other).
type Encryption struct {
	// Recipients are age public keys: X25519 (age1...) or hybrid
	// post-quantum (age1pq1...), not mixed.
	Recipients []string
	// Passphrase encrypts the file with age's scrypt recipient.
	Passphrase string

	// scryptLogN overrides age's scrypt work factor; tests only.
	scryptLogN int
}

// Decryption holds what may open a backup; every identity and the
// passphrase are tried.
type Decryption struct {
	// Identities are age identity files' contents: one or more
	// AGE-SECRET-KEY-1... (or AGE-SECRET-KEY-PQ-1...) lines, with optional
	// comment lines starting with "#".
	Identities []string
	Passphrase string
}

func (e Encryption) recipients() ([]age.Recipient, error) {
	switch {
	case len(e.Recipients) > 0 && e.Passphrase != "":
		return nil, errors.New("backup encryption: set recipients or a passphrase, not both: an age file is encrypted to one or the other")
	case len(e.Recipients) == 0 && e.Passphrase == "":
		return nil, errors.New("backup encryption: no recipients and no passphrase: backups are always encrypted")
	case e.Passphrase != "":
		r, err := age.NewScryptRecipient(e.Passphrase)
		if err != nil {
			return nil, fmt.Errorf("backup encryption: %w", err)
		}
		if e.scryptLogN > 0 {
			r.SetWorkFactor(e.scryptLogN)
		}
		return []age.Recipient{r}, nil
	}
	rs := make([]age.Recipient, 0, len(e.Recipients))
	pq := 0
	for i, s := range e.Recipients {
		s = strings.TrimSpace(s)
		var (
			r   age.Recipient
			err error
		)
		if strings.HasPrefix(s, "age1pq1") {
			r, err = age.ParseHybridRecipient(s)
			pq++
		} else {
			r, err = age.ParseX25519Recipient(s)
		}
		if err != nil {
			// Recipients are public keys: quoting one is safe.
			return nil, fmt.Errorf("backup encryption: recipient %d %q is not an age recipient (age1...): %v", i+1, clip(s), err)
		}
		rs = append(rs, r)
	}
	if pq > 0 && pq < len(rs) {
		return nil, errors.New("backup encryption: post-quantum (age1pq1...) and X25519 (age1...) recipients cannot be mixed in one file")
	}
	return rs, nil
}

func (d Decryption) identities() ([]age.Identity, error) {
	var ids []age.Identity
	for i, s := range d.Identities {
		parsed, err := age.ParseIdentities(strings.NewReader(s))
		if err != nil {
			// age's messages never quote key material.
			return nil, fmt.Errorf("backup identity %d: %v", i+1, err)
		}
		ids = append(ids, parsed...)
	}
	if d.Passphrase != "" {
		id, err := age.NewScryptIdentity(d.Passphrase)
		if err != nil {
			return nil, fmt.Errorf("backup passphrase: %w", err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, errors.New("no age identity and no passphrase to decrypt the backup with")
	}
	return ids, nil
}

// Errors that describe what is wrong with a backup file, matched with
// errors.Is. Returned errors wrap them with detail.
var (
	ErrWrongKey    = errors.New("cannot decrypt: wrong identity or passphrase, or the file is damaged")
	ErrTruncated   = errors.New("backup file is truncated")
	ErrDamaged     = errors.New("backup file is damaged or was tampered with")
	ErrNotBackup   = errors.New("not a Moat backup")
	ErrMalformed   = errors.New("backup data is malformed")
	ErrChecksum    = errors.New("checksum mismatch")
	ErrUnsupported = errors.New("backup not supported by this Moat")
	ErrEmptyFile   = errors.New("backup file is empty")
)

// encChunk is the size of a full age payload chunk: padBlock plaintext
// bytes and a 16-byte tag.
const encChunk = padBlock + 16

// counter counts what is read from the backup file and remembers its
// first bytes, its end and any read error, to classify age's errors.
type counter struct {
	r     io.Reader
	n     int64
	first [32]byte
	eof   bool
	err   error
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n < int64(len(c.first)) {
		copy(c.first[c.n:], p[:n])
	}
	c.n += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		c.eof = true
	case err != nil:
		c.err = err
	}
	return n, err
}

// plainReader is the decrypted plaintext of an age file, with age's
// errors turned into the errors above.
type plainReader struct {
	ar    io.Reader
	c     *counter
	start int64 // offset of the first payload chunk in the file
}

// decrypt opens the age file src with dec.
func decrypt(src io.Reader, dec Decryption) (*plainReader, error) {
	ids, err := dec.identities()
	if err != nil {
		return nil, err
	}
	c := &counter{r: src}
	// age reuses a *bufio.Reader it is given, so that what it has consumed
	// is c.n less what is still buffered.
	br := bufio.NewReaderSize(c, encChunk)
	ar, err := age.Decrypt(br, ids...)
	if err != nil {
		return nil, c.headerErr(err)
	}
	return &plainReader{ar: ar, c: c, start: c.n - int64(br.Buffered())}, nil
}

const ageIntro = "age-encryption.org/"

// headerErr classifies an error from reading the age header and nonce.
func (c *counter) headerErr(err error) error {
	var noMatch *age.NoIdentityMatchError
	first := string(c.first[:min(c.n, int64(len(c.first)))])
	msg := err.Error()
	switch {
	case c.err != nil:
		return fmt.Errorf("reading backup file: %w", c.err)
	case errors.As(err, &noMatch):
		return ErrWrongKey
	case c.n == 0:
		return ErrEmptyFile
	case !strings.HasPrefix(first, ageIntro) && !strings.HasPrefix(ageIntro, first):
		return fmt.Errorf("%w: the file is not age-encrypted", ErrNotBackup)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "EOF"):
		return ErrTruncated
	case strings.Contains(msg, "failed to read header"):
		return fmt.Errorf("%w: its age header cannot be read", ErrDamaged)
	default:
		// A header whose MAC does not match: a wrong key or damage.
		return ErrWrongKey
	}
}

func (p *plainReader) Read(b []byte) (int, error) {
	n, err := p.ar.Read(b)
	if err == nil || errors.Is(err, io.EOF) {
		return n, err
	}
	c := p.c
	switch {
	case c.err != nil:
		return n, fmt.Errorf("reading backup file: %w", c.err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, ErrTruncated
	case c.eof && (c.n-p.start)%encChunk != 0:
		// Moat pads every backup so that all chunks are full: a short
		// final chunk means bytes are missing.
		return n, ErrTruncated
	default:
		return n, ErrDamaged
	}
}
