package backup

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestCreateVerify(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	want := tableCounts(t, s)

	xEnc, xDec := x25519Keys(t)
	pEnc, pDec := passphraseKeys("correct horse battery staple")
	other, _ := age.GenerateX25519Identity()
	twoEnc := Encryption{Recipients: []string{other.Recipient().String(), xEnc.Recipients[0]}}

	tests := []struct {
		name string
		enc  Encryption
		dec  Decryption
	}{
		{"x25519", xEnc, xDec},
		{"passphrase", pEnc, pDec},
		{"second of two recipients", twoEnc, xDec},
		{"identity and passphrase both offered", xEnc, Decryption{Identities: xDec.Identities, Passphrase: "unused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, m := backupBytes(t, s, tt.enc)
			if m.Backend != "sqlite" || m.Format != formatVersion || m.SchemaVersion < 1 {
				t.Errorf("manifest = %+v", m)
			}
			if len(b)%encChunk == 0 {
				t.Errorf("file size %d: the age header seems missing", len(b))
			}
			rep := verifyBytes(t, b, tt.dec, ScratchOptions{})
			if !rep.OK {
				t.Fatalf("backup did not verify: %v", rep.Problems)
			}
			if rep.Scratch != "sqlite" {
				t.Errorf("scratch = %q, want sqlite", rep.Scratch)
			}
			if len(rep.Tables) != len(s.Tables()) {
				t.Fatalf("report has %d tables, the store %d", len(rep.Tables), len(s.Tables()))
			}
			for i, tr := range rep.Tables {
				if tr.Rows != int64(want[tr.Name]) || tr.Restored != tr.Rows || !tr.ChecksumOK {
					t.Errorf("table %s: %+v, want %d rows", tr.Name, tr, want[tr.Name])
				}
				if mt := m.Tables[i]; mt.Name != tr.Name || mt.Rows != tr.Rows || len(mt.SHA256) != 64 {
					t.Errorf("manifest table %+v, report %+v", mt, tr)
				}
			}
			if rep.Err() != nil {
				t.Errorf("Err() = %v for a good backup", rep.Err())
			}
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	xEnc, _ := x25519Keys(t)
	_, otherDec := x25519Keys(t)
	pEnc, _ := passphraseKeys("right passphrase")
	xFile, _ := backupBytes(t, s, xEnc)
	pFile, _ := backupBytes(t, s, pEnc)

	tests := []struct {
		name string
		file []byte
		dec  Decryption
	}{
		{"other identity", xFile, otherDec},
		{"passphrase for a recipient file", xFile, Decryption{Passphrase: "right passphrase"}},
		{"wrong passphrase", pFile, Decryption{Passphrase: "wrong passphrase"}},
		{"identity for a passphrase file", pFile, otherDec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verifyBytes(t, tt.file, tt.dec, ScratchOptions{})
			if rep.OK {
				t.Fatal("verified with the wrong key")
			}
			if !errors.Is(rep.Err(), ErrWrongKey) {
				t.Fatalf("Err() = %v, want ErrWrongKey", rep.Err())
			}
			if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "cannot decrypt: wrong identity or passphrase, or the file is damaged") {
				t.Errorf("problems = %q", rep.Problems)
			}
		})
	}
}

func TestVerifyDamaged(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	file, _ := backupBytes(t, s, enc)
	if len(file) < 2*encChunk {
		t.Fatalf("backup of %d bytes: want several age chunks", len(file))
	}
	hdrLen := bytes.Index(file, []byte("\n--- ")) + 1
	if hdrLen <= 0 {
		t.Fatal("no age header end found")
	}

	tests := []struct {
		name string
		at   int
		b64  bool // replace a base64 character by another
		want error
	}{
		{"middle", len(file) / 2, false, ErrDamaged},
		{"first payload byte", bytes.IndexByte(file[hdrLen:], '\n') + hdrLen + 1 + 16, false, ErrDamaged},
		{"nonce", bytes.IndexByte(file[hdrLen:], '\n') + hdrLen + 1, false, ErrDamaged},
		{"last byte", len(file) - 1, false, ErrDamaged},
		{"recipient stanza", bytes.Index(file, []byte("-> X25519 ")) + 15, true, ErrWrongKey},
		{"header MAC", hdrLen + 10, true, ErrWrongKey},
		{"header syntax", hdrLen + 1, false, ErrDamaged},
		{"intro line", 2, false, ErrNotBackup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(file)
			switch {
			case !tt.b64:
				b[tt.at] ^= 0x20
			case b[tt.at] == 'A':
				b[tt.at] = 'B'
			default:
				b[tt.at] = 'A'
			}
			rep := verifyBytes(t, b, dec, ScratchOptions{})
			if rep.OK {
				t.Fatal("a damaged backup verified")
			}
			if !errors.Is(rep.Err(), tt.want) {
				t.Fatalf("Err() = %v, want %v", rep.Err(), tt.want)
			}
		})
	}
}

func TestVerifyTruncated(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	file, _ := backupBytes(t, s, enc)
	payload := bytes.Index(file, []byte("\n--- ")) + 1
	payload += bytes.IndexByte(file[payload:], '\n') + 1 + 16 // header end, nonce

	tests := []struct {
		name string
		n    int
		want error
	}{
		{"empty", 0, ErrEmptyFile},
		{"in the intro", 10, ErrTruncated},
		{"in the header", payload / 2, ErrTruncated},
		{"in the nonce", payload - 8, ErrTruncated},
		{"before the payload", payload, ErrTruncated},
		{"in the first chunk", payload + 1000, ErrTruncated},
		{"at a chunk boundary", payload + encChunk, ErrTruncated},
		{"just after a chunk boundary", payload + encChunk + 16, ErrTruncated},
		{"in the last chunk", len(file) - 100, ErrTruncated},
		{"last byte missing", len(file) - 1, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verifyBytes(t, file[:tt.n], dec, ScratchOptions{})
			if rep.OK {
				t.Fatal("a truncated backup verified")
			}
			if !errors.Is(rep.Err(), tt.want) {
				t.Fatalf("Err() = %v, want %v", rep.Err(), tt.want)
			}
			if tt.want == ErrTruncated && !strings.Contains(rep.Problems[0], "backup file is truncated") {
				t.Errorf("problem = %q", rep.Problems[0])
			}
		})
	}
}

func TestVerifyNotAge(t *testing.T) {
	_, dec := x25519Keys(t)
	rep := verifyBytes(t, []byte("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n"), dec, ScratchOptions{})
	if !errors.Is(rep.Err(), ErrNotBackup) {
		t.Fatalf("Err() = %v, want ErrNotBackup", rep.Err())
	}
	// An age file that does not hold a Moat backup.
	enc, dec := x25519Keys(t)
	rcpt, _ := age.ParseX25519Recipient(enc.Recipients[0])
	var buf bytes.Buffer
	w, _ := age.Encrypt(&buf, rcpt)
	io.WriteString(w, "just some text\n")
	w.Close()
	rep = verifyBytes(t, buf.Bytes(), dec, ScratchOptions{})
	if !errors.Is(rep.Err(), ErrNotBackup) {
		t.Fatalf("Err() = %v, want ErrNotBackup", rep.Err())
	}
}

func TestEncryptionErrors(t *testing.T) {
	xEnc, _ := x25519Keys(t)
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		enc  Encryption
		want string
	}{
		{"nothing", Encryption{}, "backups are always encrypted"},
		{"both", Encryption{Recipients: xEnc.Recipients, Passphrase: "p"}, "not both"},
		{"bad recipient", Encryption{Recipients: []string{"age1notakey"}}, `recipient 1 "age1notakey"`},
		{"mixed post-quantum", Encryption{Recipients: []string{pq.Recipient().String(), xEnc.Recipients[0]}}, "cannot be mixed"},
	}
	s := newSQLite(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Create(t.Context(), s, io.Discard, tt.enc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("post-quantum recipients", func(t *testing.T) {
		var buf bytes.Buffer
		if _, err := Create(t.Context(), s, &buf, Encryption{Recipients: []string{pq.Recipient().String()}}); err != nil {
			t.Fatal(err)
		}
		rep := verifyBytes(t, buf.Bytes(), Decryption{Identities: []string{"# comment\n" + pq.String() + "\n"}}, ScratchOptions{})
		if !rep.OK {
			t.Fatal(rep.Problems)
		}
	})
	t.Run("bad identity", func(t *testing.T) {
		_, err := Verify(t.Context(), bytes.NewReader(nil), Decryption{Identities: []string{"AGE-SECRET-KEY-1NOTAKEY"}}, ScratchOptions{})
		if err == nil || strings.Contains(err.Error(), "NOTAKEY") {
			t.Fatalf("err = %v, want an error that does not quote the key", err)
		}
	})
}

func TestCreateFile(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "b.age")
	// A stale temporary file with loose permissions is replaced.
	if err := os.WriteFile(path+".tmp", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := CreateFile(t.Context(), s, path, enc)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(t.Context(), f, dec, ScratchOptions{TempDir: t.TempDir()})
	if err != nil || !rep.OK {
		t.Fatalf("Verify = %v, %v", rep, err)
	}
	if rep.Manifest.TotalRows() != m.TotalRows() || m.TotalRows() == 0 {
		t.Errorf("rows: report %d, manifest %d", rep.Manifest.TotalRows(), m.TotalRows())
	}

	t.Run("failure leaves nothing", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.age")
		if _, err := CreateFile(t.Context(), s, bad, Encryption{}); err == nil {
			t.Fatal("no error")
		}
		for _, p := range []string{bad, bad + ".tmp"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %v", p, err)
			}
		}
	})
}

// The backup holds sealed values as they are stored: the plaintext inside
// the age file never contains them in the clear.
func TestSealedValuesStaySealed(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	file, _ := backupBytes(t, s, enc)
	pr, err := decrypt(bytes.NewReader(file), dec)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(plain, []byte(magic)) || !bytes.Contains(plain, []byte("alice")) {
		t.Fatal("the plaintext does not look like this store's backup")
	}
	for _, secret := range []string{"alice@example.com", "JBSWY3DPEHPK3PXP", "refresh\x00token", "s3cret"} {
		if bytes.Contains(plain, []byte(secret)) {
			t.Errorf("the backup holds %q in the clear", secret)
		}
	}
}

// sealPlaintext encrypts a hand-made plaintext as Create would.
func sealPlaintext(t *testing.T, enc Encryption, p []byte) []byte {
	t.Helper()
	rs, err := enc.recipients()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestVerifyIncompatible(t *testing.T) {
	s := newSQLite(t)
	version, err := s.SchemaVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tables := func(mutate func([]map[string]any)) []map[string]any {
		var ts []map[string]any
		for _, ti := range s.Tables() {
			ts = append(ts, map[string]any{"name": ti.Name, "columns": ti.Columns})
		}
		if mutate != nil {
			mutate(ts)
		}
		return ts
	}
	hdr := func(v int, ts []map[string]any) map[string]any {
		return map[string]any{"format": 1, "schema_version": v, "backend": "sqlite", "created_at": "2025-01-02T03:04:05Z", "tables": ts}
	}
	enc, dec := x25519Keys(t)
	tests := []struct {
		name string
		hdr  map[string]any
		want error
		msg  string
	}{
		{"newer schema", hdr(version+1, tables(nil)), ErrUnsupported, "newer than this Moat's"},
		{"other columns", hdr(version, tables(func(ts []map[string]any) { ts[0]["columns"] = []string{"id"} })), ErrMalformed, "table users does not match"},
	}
	if version > 1 {
		tests = append(tests, struct {
			name string
			hdr  map[string]any
			want error
			msg  string
		}{"older schema", hdr(version-1, tables(nil)), ErrUnsupported, "restore it with the Moat release that made it"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFrames(t, tt.hdr).end()
			rep := verifyBytes(t, sealPlaintext(t, enc, p), dec, ScratchOptions{})
			if !errors.Is(rep.Err(), tt.want) || !strings.Contains(rep.Err().Error(), tt.msg) {
				t.Fatalf("Err() = %v, want %v mentioning %q", rep.Err(), tt.want, tt.msg)
			}
			dst := newSQLite(t)
			if _, err := Restore(t.Context(), dst, bytes.NewReader(sealPlaintext(t, enc, p)), dec, false); !errors.Is(err, tt.want) {
				t.Errorf("Restore: err = %v, want %v", err, tt.want)
			}
		})
	}
}
