package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var sampleHeader = header{
	Format:        formatVersion,
	SchemaVersion: 3,
	Backend:       "postgres",
	CreatedAt:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	Tables: []headerTable{
		{Name: "users", Columns: []string{"id", "name", "n", "blob"}},
		{Name: "empty_table", Columns: []string{"x"}},
		{Name: "audit_log", Columns: []string{"seq", "data"}},
	},
}

var sampleRows = []exportRow{
	{"users", []any{"u1", "Alice", int64(1), []byte{0, 1, 2}}},
	{"users", []any{"u2", nil, int64(math.MinInt64), []byte{}}},
	{"users", []any{"u3", "\xff\xfe not UTF-8 \x00", int64(math.MaxInt64), nil}},
	{"audit_log", []any{int64(1), []byte(strings.Repeat("x", 70000))}},
	{"audit_log", []any{int64(2), ""}},
}

// samplePlaintext is the plaintext of a backup holding sampleRows.
func samplePlaintext(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	e, err := newEncoder(&buf, sampleHeader)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sampleRows {
		if err := e.row(r.Table, r.Row); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll decodes a whole plaintext.
func readAll(p []byte) ([]exportRow, *decoder, error) {
	d, err := newDecoder(bytes.NewReader(p))
	if err != nil {
		return nil, nil, err
	}
	var rows []exportRow
	for {
		table, row, err := d.next()
		if errors.Is(err, io.EOF) {
			return rows, d, nil
		}
		if err != nil {
			return rows, d, err
		}
		rows = append(rows, exportRow{table, row})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	p := samplePlaintext(t)
	if len(p)%padBlock != 0 {
		t.Errorf("plaintext of %d bytes is not padded to %d", len(p), padBlock)
	}
	rows, d, err := readAll(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(sampleRows) {
		t.Fatalf("%d rows, want %d", len(rows), len(sampleRows))
	}
	for i, r := range rows {
		w := sampleRows[i]
		if r.Table == "users" && i == 2 {
			// A nil []byte is stored as null.
			w = exportRow{"users", []any{"u3", "\xff\xfe not UTF-8 \x00", int64(math.MaxInt64), nil}}
		}
		if !reflect.DeepEqual(r, w) {
			t.Errorf("row %d = %#v, want %#v", i, r, w)
		}
	}
	if b := rows[1].Row[3].([]byte); b == nil {
		t.Error("an empty byte string came back as nil")
	}
	m := d.manifest()
	if m.SchemaVersion != 3 || m.Backend != "postgres" || !m.CreatedAt.Equal(sampleHeader.CreatedAt) {
		t.Errorf("manifest = %+v", m)
	}
	counts := map[string]int64{"users": 3, "empty_table": 0, "audit_log": 2}
	for _, tm := range m.Tables {
		if tm.Rows != counts[tm.Name] || len(tm.SHA256) != 64 {
			t.Errorf("table %+v, want %d rows", tm, counts[tm.Name])
		}
	}
}

// frames builds a plaintext from raw frames, for the decoder's error cases.
type frames struct{ b []byte }

func newFrames(t testing.TB, hdr any) *frames {
	t.Helper()
	f := &frames{b: []byte(magic)}
	js, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	return f.frame(kindHeader, js)
}

func (f *frames) frame(kind byte, p []byte) *frames {
	f.b = append(f.b, kind)
	f.b = binary.AppendUvarint(f.b, uint64(len(p)))
	f.b = append(f.b, p...)
	return f
}

func (f *frames) table(name string, rows ...[]any) *frames {
	f.frame(kindTable, []byte(name))
	h := sha256.New()
	for _, r := range rows {
		enc, err := appendRow(nil, r)
		if err != nil {
			panic(err)
		}
		h.Write(enc)
		f.frame(kindRow, enc)
	}
	return f.frame(kindTableEnd, append(binary.AppendUvarint(nil, uint64(len(rows))), h.Sum(nil)...))
}

func (f *frames) all3() *frames {
	return f.table("users", []any{"u1", "a", int64(1), nil}).table("empty_table").table("audit_log")
}

func (f *frames) end() []byte { return f.frame(kindEnd, nil).b }

func TestDecoderErrors(t *testing.T) {
	type hdrMap = map[string]any
	goodHdr := func() hdrMap {
		return hdrMap{"format": 1, "schema_version": 3, "backend": "sqlite", "created_at": "2025-01-02T03:04:05Z",
			"tables": []hdrMap{{"name": "users", "columns": []string{"id", "name", "n", "blob"}}, {"name": "empty_table", "columns": []string{"x"}}, {"name": "audit_log", "columns": []string{"seq", "data"}}}}
	}
	with := func(k string, v any) hdrMap { h := goodHdr(); h[k] = v; return h }
	sum0 := sha256.Sum256(nil)

	tests := []struct {
		name string
		p    func() []byte
		want error
		msg  string
	}{
		{"good", func() []byte { return newFrames(t, goodHdr()).all3().end() }, nil, ""},
		{"good with padding", func() []byte { return append(newFrames(t, goodHdr()).all3().end(), make([]byte, 100)...) }, nil, ""},
		{"bad magic", func() []byte { return []byte("moat-backup2\n") }, ErrNotBackup, ""},
		{"empty", func() []byte { return nil }, ErrTruncated, ""},
		{"no header frame", func() []byte { return append([]byte(magic), kindTable, 0) }, ErrMalformed, "no header"},
		{"newer format", func() []byte { return newFrames(t, with("format", 2)).end() }, ErrUnsupported, "format version 2"},
		{"unknown header field", func() []byte { return newFrames(t, with("extra", true)).end() }, ErrMalformed, "extra"},
		{"bad backend", func() []byte { return newFrames(t, with("backend", "mysql")).end() }, ErrMalformed, "backend"},
		{"no tables", func() []byte { return newFrames(t, with("tables", []hdrMap{})).end() }, ErrMalformed, "0 tables"},
		{"bad table name", func() []byte {
			return newFrames(t, with("tables", []hdrMap{{"name": "x; DROP", "columns": []string{"a"}}})).end()
		}, ErrMalformed, "table name"},
		{"repeated column", func() []byte {
			return newFrames(t, with("tables", []hdrMap{{"name": "x", "columns": []string{"a", "a"}}})).end()
		}, ErrMalformed, "column"},
		{"table out of order", func() []byte { return newFrames(t, goodHdr()).table("empty_table").end() }, ErrMalformed, "out of order"},
		{"row outside a table", func() []byte {
			return newFrames(t, goodHdr()).frame(kindRow, []byte{1, tagNull}).end()
		}, ErrMalformed, "outside"},
		{"wrong column count", func() []byte {
			return newFrames(t, goodHdr()).table("users", []any{"u1"}).end()
		}, ErrMalformed, "1 values"},
		{"unknown value tag", func() []byte {
			return newFrames(t, goodHdr()).frame(kindTable, []byte("users")).frame(kindRow, []byte{4, 9, 0, 0, 0}).end()
		}, ErrMalformed, "tag"},
		{"non-minimal length", func() []byte {
			return newFrames(t, goodHdr()).frame(kindTable, []byte("users")).frame(kindRow, []byte{0x84, 0x00, 0, 0, 0, 0}).end()
		}, ErrMalformed, "minimal"},
		{"extra bytes in a row", func() []byte {
			return newFrames(t, goodHdr()).frame(kindTable, []byte("users")).frame(kindRow, []byte{4, 0, 0, 0, 0, 0}).end()
		}, ErrMalformed, "extra"},
		{"checksum mismatch", func() []byte {
			f := newFrames(t, goodHdr()).frame(kindTable, []byte("users"))
			enc, _ := appendRow(nil, []any{"u1", "a", int64(1), nil})
			f.frame(kindRow, enc)
			return f.frame(kindTableEnd, append([]byte{1}, sum0[:]...)).end()
		}, ErrChecksum, "table users: checksum mismatch"},
		{"row count mismatch", func() []byte {
			return newFrames(t, goodHdr()).frame(kindTable, []byte("users")).frame(kindTableEnd, append([]byte{2}, sum0[:]...)).end()
		}, ErrChecksum, "0 rows read, 2 recorded"},
		{"end before the last table", func() []byte { return newFrames(t, goodHdr()).table("users", []any{"u1", "a", int64(1), nil}).end() }, ErrMalformed, "end marker"},
		{"no end frame", func() []byte { return newFrames(t, goodHdr()).all3().b }, ErrTruncated, ""},
		{"cut in a row", func() []byte { b := newFrames(t, goodHdr()).all3().b; return b[:len(b)-40] }, ErrTruncated, ""},
		{"data after the end", func() []byte { return append(newFrames(t, goodHdr()).all3().end(), 0, 0, 1) }, ErrMalformed, "after the end"},
		{"too much padding", func() []byte { return append(newFrames(t, goodHdr()).all3().end(), make([]byte, padBlock)...) }, ErrMalformed, "after the end"},
		{"second header", func() []byte { return newFrames(t, goodHdr()).frame(kindHeader, []byte("{}")).end() }, ErrMalformed, "second header"},
		{"unknown frame", func() []byte { return newFrames(t, goodHdr()).frame('X', nil).end() }, ErrMalformed, "unknown frame"},
		{"oversized frame", func() []byte {
			b := append([]byte(magic), kindTable)
			return binary.AppendUvarint(b, maxNameLen+1)
		}, ErrMalformed, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(tt.p())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.msg)
			}
		})
	}
}

func TestEncoderRefuses(t *testing.T) {
	tests := []struct {
		name  string
		table string
		row   []any
		want  string
	}{
		{"unknown table", "nope", []any{int64(1)}, "out of order or from an unknown table"},
		{"wrong width", "users", []any{"a"}, "1 values for 4 columns"},
		{"unsupported type", "users", []any{"a", "b", 1.5, nil}, "float64"},
		{"bool", "users", []any{"a", "b", true, nil}, "bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := newEncoder(io.Discard, sampleHeader)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.row(tt.table, tt.row); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("table already written", func(t *testing.T) {
		e, _ := newEncoder(io.Discard, sampleHeader)
		if err := e.row("audit_log", []any{int64(1), nil}); err != nil {
			t.Fatal(err)
		}
		if err := e.row("users", []any{"a", "b", int64(1), nil}); err == nil {
			t.Fatal("rows of an earlier table accepted")
		}
	})
}

// A length that claims far more than the input holds must not be
// allocated up front.
func TestDecoderBoundedAllocation(t *testing.T) {
	head := newFrames(t, map[string]any{"format": 1, "schema_version": 1, "backend": "sqlite", "created_at": "2025-01-02T03:04:05Z",
		"tables": []map[string]any{{"name": "t", "columns": []string{"c"}}}}).frame(kindTable, []byte("t")).b
	p := append(bytes.Clone(head), kindRow)
	p = binary.AppendUvarint(p, maxRowSize)
	p = append(p, 1, 2, 3)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, _, err := readAll(p); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10<<20 {
		t.Errorf("10 reads allocated %d bytes for a %d byte input", got, len(p))
	}
	// Over the cap: refused before reading.
	p = append(bytes.Clone(head), kindRow)
	p = binary.AppendUvarint(p, maxRowSize+1)
	if _, _, err := readAll(p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

func FuzzDecoder(f *testing.F) {
	good := bytes.TrimRight(samplePlaintext(f), "\x00")
	f.Add(good)
	f.Add(good[:len(good)/2])
	small := newFrames(f, sampleHeader).
		table("users", []any{"u1", "a", int64(1), []byte{1}}, []any{"u2", nil, int64(-1), nil}).
		table("empty_table").
		table("audit_log", []any{int64(7), "x"}).end()
	f.Add(small)
	f.Add(append(small, 0, 0, 0))
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), kindHeader, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := newDecoder(bytes.NewReader(p))
		if err != nil {
			return
		}
		// Each table's count and checksum, recomputed from the rows as
		// decoded, match what the decoder accepted: rows round-trip.
		sums := map[string]*digest{}
		for {
			table, row, err := d.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return
				}
				break
			}
			enc, err := appendRow(nil, row)
			if err != nil {
				t.Fatalf("a decoded row does not encode: %v", err)
			}
			if sums[table] == nil {
				sums[table] = newDigest()
			}
			sums[table].add(enc)
		}
		for _, tm := range d.manifest().Tables {
			g := sums[tm.Name]
			if g == nil {
				g = newDigest()
			}
			if g.rows != tm.Rows || hex.EncodeToString(g.sha256()) != tm.SHA256 {
				t.Fatalf("table %s: accepted %d rows / %s, rows re-encode to %d / %x", tm.Name, tm.Rows, tm.SHA256, g.rows, g.sha256())
			}
		}
	})
}

func TestCompareDigests(t *testing.T) {
	rows := [][]byte{[]byte("row a"), []byte("row b"), []byte("row c")}
	digestOf := func(rs ...[]byte) *digest {
		d := newDigest()
		for _, r := range rs {
			d.add(r)
		}
		return d
	}
	read := digestOf(rows...)
	want := []TableManifest{{Name: "t", Rows: 3, SHA256: hex.EncodeToString(read.sha256())}}

	tests := []struct {
		name    string
		got     *digest
		ok      bool
		note    bool
		problem string
	}{
		{"same order", digestOf(rows[0], rows[1], rows[2]), true, false, ""},
		{"another order", digestOf(rows[2], rows[0], rows[1]), true, true, ""},
		{"a row changed", digestOf(rows[0], rows[1], []byte("row C")), false, false, "table t: checksum mismatch after restoring"},
		{"a row repeated", digestOf(rows[0], rows[0], rows[2]), false, false, "checksum mismatch"},
		{"a row missing", digestOf(rows[0], rows[1]), false, false, "3 rows in the backup, 2 after restoring"},
		{"table missing", nil, false, false, "0 after restoring"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]*digest{}
			if tt.got != nil {
				got["t"] = tt.got
			}
			tables, notes, problems := compareDigests(want, []*digest{read}, got)
			if len(tables) != 1 || tables[0].ChecksumOK != tt.ok {
				t.Fatalf("tables = %+v, want ChecksumOK %v", tables, tt.ok)
			}
			if (len(notes) > 0) != tt.note {
				t.Errorf("notes = %q", notes)
			}
			if tt.problem == "" && len(problems) > 0 || tt.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0].Error(), tt.problem)) {
				t.Errorf("problems = %v, want %q", problems, tt.problem)
			}
			if tt.problem != "" && !errors.Is(problems[0], ErrChecksum) {
				t.Errorf("problem %v is not ErrChecksum", problems[0])
			}
		})
	}
}
