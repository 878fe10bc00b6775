package backup

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// onlyReader hides every method but Read, as a pipe would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestRestore(t *testing.T) {
	src := newSQLite(t)
	populate(t, src, "")
	want := dump(t, src)
	enc, dec := x25519Keys(t)
	file, m := backupBytes(t, src, enc)

	t.Run("into an empty store", func(t *testing.T) {
		dst := newSQLite(t)
		got, err := Restore(t.Context(), dst, bytes.NewReader(file), dec, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.TotalRows() != m.TotalRows() {
			t.Errorf("restored %d rows, the backup has %d", got.TotalRows(), m.TotalRows())
		}
		sameData(t, want, dump(t, dst))
		// The sealed values open with the same key: they were restored
		// byte for byte, bound to the same rows. With another key they
		// do not.
		u, err := dst.Users().GetByUsername(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if u.Email != "alice@example.com" {
			t.Errorf("email = %q", u.Email)
		}
		dst.SetCipher(newTestCipher())
		if u, err := dst.Users().GetByUsername(t.Context(), "alice"); err == nil {
			t.Errorf("email opened with another key: %q", u.Email)
		}
	})

	for _, tt := range []struct {
		name string
		r    func() io.Reader
	}{
		{"with wipe from a file", func() io.Reader { return bytes.NewReader(file) }},
		{"with wipe from a pipe", func() io.Reader { return onlyReader{bytes.NewReader(file)} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := newSQLite(t)
			populate(t, dst, "-other")
			before := dump(t, dst)
			_, err := Restore(t.Context(), dst, tt.r(), dec, false)
			if !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("restore without wipe: err = %v, want ErrNotEmpty", err)
			}
			sameData(t, before, dump(t, dst))
			if _, err := Restore(t.Context(), dst, tt.r(), dec, true); err != nil {
				t.Fatal(err)
			}
			sameData(t, want, dump(t, dst))
		})
	}

	t.Run("a bad backup leaves a non-empty store alone", func(t *testing.T) {
		dst := newSQLite(t)
		populate(t, dst, "-other")
		before := dump(t, dst)
		damaged := bytes.Clone(file)
		damaged[len(damaged)-encChunk/2] ^= 1
		cases := map[string]struct {
			file []byte
			dec  Decryption
			want error
		}{
			"damaged":   {damaged, dec, ErrDamaged},
			"truncated": {file[:len(file)-10], dec, ErrTruncated},
			"wrong key": {file, Decryption{Passphrase: "nope"}, ErrWrongKey},
		}
		for name, c := range cases {
			_, err := Restore(t.Context(), dst, bytes.NewReader(c.file), c.dec, true)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "not changed") {
				t.Errorf("%s: err = %v, want %v and the store not changed", name, err, c.want)
			}
		}
		sameData(t, before, dump(t, dst))
	})

	t.Run("a bad backup leaves an empty store empty", func(t *testing.T) {
		dst := newSQLite(t)
		damaged := bytes.Clone(file)
		damaged[len(damaged)-encChunk/2] ^= 1
		if _, err := Restore(t.Context(), dst, bytes.NewReader(damaged), dec, false); !errors.Is(err, ErrDamaged) {
			t.Fatalf("err = %v, want ErrDamaged", err)
		}
		if rows := dump(t, dst); len(rows) != 0 {
			t.Fatalf("%d rows imported from a damaged backup", len(rows))
		}
	})
}
