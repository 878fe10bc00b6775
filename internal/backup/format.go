package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"slices"
	"time"
)

// The plaintext inside the age file (docs/backup.md has the full layout):
//
//	magic  "moat-backup\n"
//	frame  kind (1 byte) | payload length (uvarint) | payload
//
// Frames come in this order: one header frame ('H', JSON), then for each
// table in header order a table frame ('T', the table name), its row frames
// ('R') and a table end frame ('E', row count and SHA-256), and finally an
// end frame ('Z', empty). Zero bytes follow the end frame up to a multiple
// of padBlock bytes.
const (
	magic         = "moat-backup\n"
	formatVersion = 1

	kindHeader   = 'H'
	kindTable    = 'T'
	kindRow      = 'R'
	kindTableEnd = 'E'
	kindEnd      = 'Z'

	tagNull   = 0
	tagInt    = 1
	tagString = 2
	tagBytes  = 3

	// Caps on what a reader accepts, so that a damaged or hostile file
	// cannot make it allocate without limit.
	maxHeaderSize = 1 << 20
	maxRowSize    = 16 << 20
	maxTables     = 256
	maxColumns    = 256
	maxNameLen    = 128

	// padBlock is age's chunk size: padding the plaintext to a multiple of
	// it makes every encrypted chunk full, so that a short final chunk
	// always means a truncated file (see plainReader).
	padBlock = 64 << 10
	// readChunk bounds each step of growing a payload buffer: memory grows
	// with the bytes actually present, not with a declared length.
	readChunk = 64 << 10
)

// header is the JSON of the header frame: what is known before the rows
// are read. Row counts and checksums follow each table.
type header struct {
	Format        int           `json:"format"`
	SchemaVersion int           `json:"schema_version"`
	Backend       string        `json:"backend"`
	CreatedAt     time.Time     `json:"created_at"`
	Tables        []headerTable `json:"tables"`
}

type headerTable struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// check reports the first thing wrong with h.
func (h *header) check() error {
	if h.Format != formatVersion {
		return fmt.Errorf("%w: backup format version %d (this Moat reads version %d)", ErrUnsupported, h.Format, formatVersion)
	}
	if h.SchemaVersion < 1 {
		return fmt.Errorf("%w: schema version %d", ErrMalformed, h.SchemaVersion)
	}
	if h.Backend != "sqlite" && h.Backend != "postgres" {
		return fmt.Errorf("%w: unknown backend %q", ErrMalformed, clip(h.Backend))
	}
	if h.CreatedAt.IsZero() {
		return fmt.Errorf("%w: no creation time", ErrMalformed)
	}
	if len(h.Tables) == 0 || len(h.Tables) > maxTables {
		return fmt.Errorf("%w: %d tables (want 1 to %d)", ErrMalformed, len(h.Tables), maxTables)
	}
	seen := make(map[string]bool, len(h.Tables))
	for _, t := range h.Tables {
		if !validName(t.Name) {
			return fmt.Errorf("%w: bad table name %q", ErrMalformed, clip(t.Name))
		}
		if seen[t.Name] {
			return fmt.Errorf("%w: table %s listed twice", ErrMalformed, t.Name)
		}
		seen[t.Name] = true
		if len(t.Columns) == 0 || len(t.Columns) > maxColumns {
			return fmt.Errorf("%w: table %s has %d columns (want 1 to %d)", ErrMalformed, t.Name, len(t.Columns), maxColumns)
		}
		cols := make(map[string]bool, len(t.Columns))
		for _, c := range t.Columns {
			if !validName(c) || cols[c] {
				return fmt.Errorf("%w: table %s: bad or repeated column name %q", ErrMalformed, t.Name, clip(c))
			}
			cols[c] = true
		}
	}
	return nil
}

// validName accepts the lower-case SQL identifiers Moat's schema uses.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// clip shortens a string from a file for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// appendRow appends the canonical encoding of row: the number of values,
// then each value as a tag byte and its bytes. int64 is 8 bytes big
// endian; strings and byte strings carry a uvarint length. A nil []byte is
// encoded as null, which is what a database holds for it.
func appendRow(dst []byte, row []any) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(row)))
	for i, v := range row {
		switch v := v.(type) {
		case nil:
			dst = append(dst, tagNull)
		case int64:
			dst = append(dst, tagInt)
			dst = binary.BigEndian.AppendUint64(dst, uint64(v))
		case string:
			dst = append(dst, tagString)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		case []byte:
			if v == nil {
				dst = append(dst, tagNull)
				continue
			}
			dst = append(dst, tagBytes)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		default:
			return nil, fmt.Errorf("value %d has type %T, which a backup cannot hold", i+1, v)
		}
	}
	return dst, nil
}

// decodeRow decodes a row encoded by appendRow that must have exactly
// columns values. The values do not share memory with p.
func decodeRow(p []byte, columns int) ([]any, error) {
	n, k, err := uvarint(p)
	if err != nil {
		return nil, err
	}
	if n != uint64(columns) {
		return nil, fmt.Errorf("row has %d values, the table %d columns", n, columns)
	}
	p = p[k:]
	row := make([]any, columns)
	for i := range row {
		if len(p) == 0 {
			return nil, errors.New("row ends early")
		}
		tag := p[0]
		p = p[1:]
		switch tag {
		case tagNull:
			row[i] = nil
		case tagInt:
			if len(p) < 8 {
				return nil, errors.New("row ends early")
			}
			row[i] = int64(binary.BigEndian.Uint64(p))
			p = p[8:]
		case tagString, tagBytes:
			l, k, err := uvarint(p)
			if err != nil {
				return nil, err
			}
			p = p[k:]
			if l > uint64(len(p)) {
				return nil, errors.New("row ends early")
			}
			if tag == tagString {
				row[i] = string(p[:l])
			} else {
				b := make([]byte, l)
				copy(b, p)
				row[i] = b
			}
			p = p[l:]
		default:
			return nil, fmt.Errorf("unknown value tag %d", tag)
		}
	}
	if len(p) != 0 {
		return nil, errors.New("extra bytes after the row's values")
	}
	return row, nil
}

// uvarint decodes a minimally encoded uvarint from the start of p.
func uvarint(p []byte) (uint64, int, error) {
	v, k := binary.Uvarint(p)
	if k <= 0 {
		return 0, 0, errors.New("bad length")
	}
	if k != uvarintLen(v) {
		return 0, 0, errors.New("length not minimally encoded")
	}
	return v, k, nil
}

func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

// digest accumulates a table's rows two ways: the SHA-256 of their
// encodings in order (what the file records), and an order-independent
// sum of the rows' SHA-256 values modulo 2^256. The second lets a restore
// into a backend that sorts text differently be recognised as the same data.
type digest struct {
	rows    int64
	ordered hash.Hash
	sum     [4]uint64
}

func newDigest() *digest { return &digest{ordered: sha256.New()} }

func (d *digest) add(enc []byte) {
	d.rows++
	d.ordered.Write(enc)
	h := sha256.Sum256(enc)
	var carry uint64
	for i := range 4 {
		w := binary.BigEndian.Uint64(h[24-8*i:])
		d.sum[i], carry = bits.Add64(d.sum[i], w, carry)
	}
}

func (d *digest) sha256() []byte { return d.ordered.Sum(nil) }

// encoder writes the plaintext of a backup.
type encoder struct {
	w      *bufio.Writer
	n      int64 // plaintext bytes written
	hdr    header
	ti     int // index of the open table, or of the last one closed
	open   bool
	d      *digest
	tables []TableManifest
	buf    []byte
}

// newEncoder writes the magic and the header frame to w.
func newEncoder(w io.Writer, hdr header) (*encoder, error) {
	if err := hdr.check(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	if len(js) > maxHeaderSize {
		return nil, errors.New("backup header too large")
	}
	e := &encoder{w: bufio.NewWriterSize(w, padBlock), hdr: hdr, ti: -1}
	if err := e.write([]byte(magic)); err != nil {
		return nil, err
	}
	if err := e.frame(kindHeader, js); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *encoder) write(p []byte) error {
	n, err := e.w.Write(p)
	e.n += int64(n)
	return err
}

func (e *encoder) frame(kind byte, payload []byte) error {
	var lb [1 + binary.MaxVarintLen64]byte
	lb[0] = kind
	k := binary.PutUvarint(lb[1:], uint64(len(payload)))
	if err := e.write(lb[:1+k]); err != nil {
		return err
	}
	return e.write(payload)
}

// row writes one row of table. Rows must come table by table in header
// order; tables without rows are written empty.
func (e *encoder) row(table string, row []any) error {
	if !e.open || e.hdr.Tables[e.ti].Name != table {
		i := slices.IndexFunc(e.hdr.Tables, func(t headerTable) bool { return t.Name == table })
		if i < 0 || i <= e.ti {
			return fmt.Errorf("rows of table %q came out of order or from an unknown table", table)
		}
		if err := e.advance(i); err != nil {
			return err
		}
	}
	t := e.hdr.Tables[e.ti]
	if len(row) != len(t.Columns) {
		return fmt.Errorf("table %s: a row has %d values for %d columns", table, len(row), len(t.Columns))
	}
	var err error
	e.buf, err = appendRow(e.buf[:0], row)
	if err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	if len(e.buf) > maxRowSize {
		return fmt.Errorf("table %s: a row of %d bytes is over the %d byte limit", table, len(e.buf), maxRowSize)
	}
	e.d.add(e.buf)
	return e.frame(kindRow, e.buf)
}

// advance closes the open table and every table before index i, and opens
// table i.
func (e *encoder) advance(i int) error {
	for e.ti < i {
		if e.open {
			if err := e.closeTable(); err != nil {
				return err
			}
		}
		e.ti++
		e.open = true
		e.d = newDigest()
		if err := e.frame(kindTable, []byte(e.hdr.Tables[e.ti].Name)); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) closeTable() error {
	sum := e.d.sha256()
	p := binary.AppendUvarint(nil, uint64(e.d.rows))
	p = append(p, sum...)
	t := e.hdr.Tables[e.ti]
	e.tables = append(e.tables, TableManifest{
		Name:    t.Name,
		Columns: t.Columns,
		Rows:    e.d.rows,
		SHA256:  hex.EncodeToString(sum),
	})
	e.open = false
	return e.frame(kindTableEnd, p)
}

// finish writes the remaining (empty) tables, the end frame and the
// padding, and flushes.
func (e *encoder) finish() ([]TableManifest, error) {
	if err := e.advance(len(e.hdr.Tables) - 1); err != nil {
		return nil, err
	}
	if e.open {
		if err := e.closeTable(); err != nil {
			return nil, err
		}
	}
	if err := e.frame(kindEnd, nil); err != nil {
		return nil, err
	}
	if pad := (padBlock - e.n%padBlock) % padBlock; pad > 0 {
		if err := e.write(make([]byte, pad)); err != nil {
			return nil, err
		}
	}
	return e.tables, e.w.Flush()
}

// decoder reads the plaintext of a backup, checking each table's row count
// and checksum as it ends. Memory stays bounded by the caps above whatever
// the input.
type decoder struct {
	r       *bufio.Reader
	hdr     header
	ti      int
	open    bool
	d       *digest
	tables  []TableManifest
	digests []*digest // per table, for comparing a re-export
	buf     []byte
	done    bool
	err     error // sticky
}

// newDecoder reads the magic and the header frame.
func newDecoder(r io.Reader) (*decoder, error) {
	d := &decoder{r: bufio.NewReaderSize(r, readChunk), ti: -1}
	var m [len(magic)]byte
	n, err := io.ReadFull(d.r, m[:])
	if string(m[:n]) != magic[:n] {
		return nil, fmt.Errorf("%w: the file decrypts but does not hold a Moat backup", ErrNotBackup)
	}
	if err != nil {
		return nil, d.readErr(err)
	}
	kind, p, err := d.frame()
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, fmt.Errorf("%w: no header", ErrMalformed)
	}
	// Read the format first, so that a newer format is named as such
	// rather than as unknown fields.
	var v struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(p, &v); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if v.Format != formatVersion {
		return nil, fmt.Errorf("%w: backup format version %d (this Moat reads version %d)", ErrUnsupported, v.Format, formatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: header: data after the JSON object", ErrMalformed)
	}
	if err := d.hdr.check(); err != nil {
		return nil, err
	}
	return d, nil
}

// readErr turns an end of the plaintext into ErrTruncated; other errors
// (already classified by plainReader) pass through.
func (d *decoder) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the backup data ends before its end marker", ErrTruncated)
	}
	return err
}

// frame reads one frame. The payload is valid until the next call.
func (d *decoder) frame() (byte, []byte, error) {
	kind, err := d.r.ReadByte()
	if err != nil {
		return 0, nil, d.readErr(err)
	}
	var limit uint64
	switch kind {
	case kindHeader:
		limit = maxHeaderSize
	case kindTable:
		limit = maxNameLen
	case kindRow:
		limit = maxRowSize
	case kindTableEnd:
		limit = binary.MaxVarintLen64 + sha256.Size
	case kindEnd:
		limit = 0
	default:
		return 0, nil, fmt.Errorf("%w: unknown frame kind 0x%02x", ErrMalformed, kind)
	}
	n, err := binary.ReadUvarint(d.r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, d.readErr(err)
		}
		return 0, nil, fmt.Errorf("%w: bad frame length", ErrMalformed)
	}
	if n > limit {
		return 0, nil, fmt.Errorf("%w: a frame of %d bytes is over its %d byte limit", ErrMalformed, n, limit)
	}
	d.buf = d.buf[:0]
	for uint64(len(d.buf)) < n {
		step := min(int(n)-len(d.buf), readChunk)
		d.buf = slices.Grow(d.buf, step)
		m, err := io.ReadFull(d.r, d.buf[len(d.buf):len(d.buf)+step])
		d.buf = d.buf[:len(d.buf)+m]
		if err != nil {
			return 0, nil, d.readErr(err)
		}
	}
	return kind, d.buf, nil
}

// next returns the next row and its table. It returns io.EOF after the end
// frame and the padding, once every table's count and checksum matched.
// Any other error is final.
func (d *decoder) next() (string, []any, error) {
	if d.err != nil {
		return "", nil, d.err
	}
	table, row, err := d.step()
	if err != nil {
		d.err = err
	}
	return table, row, err
}

func (d *decoder) step() (string, []any, error) {
	for {
		kind, p, err := d.frame()
		if err != nil {
			return "", nil, err
		}
		switch kind {
		case kindTable:
			if d.open || d.ti+1 >= len(d.hdr.Tables) || string(p) != d.hdr.Tables[d.ti+1].Name {
				return "", nil, fmt.Errorf("%w: table %q out of order", ErrMalformed, clip(string(p)))
			}
			d.ti++
			d.open = true
			d.d = newDigest()
		case kindRow:
			if !d.open {
				return "", nil, fmt.Errorf("%w: a row outside any table", ErrMalformed)
			}
			t := d.hdr.Tables[d.ti]
			row, err := decodeRow(p, len(t.Columns))
			if err != nil {
				return "", nil, fmt.Errorf("%w: table %s, row %d: %v", ErrMalformed, t.Name, d.d.rows+1, err)
			}
			d.d.add(p)
			return t.Name, row, nil
		case kindTableEnd:
			if err := d.closeTable(p); err != nil {
				return "", nil, err
			}
		case kindHeader:
			return "", nil, fmt.Errorf("%w: a second header", ErrMalformed)
		case kindEnd:
			if d.open || d.ti != len(d.hdr.Tables)-1 {
				return "", nil, fmt.Errorf("%w: end marker before the last table", ErrMalformed)
			}
			if err := d.padding(); err != nil {
				return "", nil, err
			}
			d.done = true
			return "", nil, io.EOF
		}
	}
}

func (d *decoder) closeTable(p []byte) error {
	if !d.open {
		return fmt.Errorf("%w: a table end outside any table", ErrMalformed)
	}
	t := d.hdr.Tables[d.ti]
	rows, k, err := uvarint(p)
	if err != nil || len(p)-k != sha256.Size {
		return fmt.Errorf("%w: table %s: bad table end", ErrMalformed, t.Name)
	}
	if rows != uint64(d.d.rows) {
		return fmt.Errorf("table %s: %w: %d rows read, %d recorded", t.Name, ErrChecksum, d.d.rows, rows)
	}
	sum := d.d.sha256()
	if !bytes.Equal(sum, p[k:]) {
		return fmt.Errorf("table %s: %w", t.Name, ErrChecksum)
	}
	d.tables = append(d.tables, TableManifest{Name: t.Name, Columns: t.Columns, Rows: d.d.rows, SHA256: hex.EncodeToString(sum)})
	d.digests = append(d.digests, d.d)
	d.open = false
	return nil
}

// padding reads what follows the end frame: fewer than padBlock zero
// bytes, then the end of the plaintext.
func (d *decoder) padding() error {
	var n int
	for {
		b, err := d.r.ReadByte()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if b != 0 || n >= padBlock {
			return fmt.Errorf("%w: data after the end marker", ErrMalformed)
		}
	}
}

// manifest is the complete manifest once next has returned io.EOF.
func (d *decoder) manifest() *Manifest {
	m := &Manifest{
		Format:        d.hdr.Format,
		SchemaVersion: d.hdr.SchemaVersion,
		Backend:       d.hdr.Backend,
		CreatedAt:     d.hdr.CreatedAt,
	}
	if d.done {
		m.Tables = slices.Clone(d.tables)
	} else {
		for _, t := range d.hdr.Tables {
			m.Tables = append(m.Tables, TableManifest{Name: t.Name, Columns: t.Columns})
		}
	}
	return m
}
