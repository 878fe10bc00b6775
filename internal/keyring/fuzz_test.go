package keyring

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// FuzzOpen feeds arbitrary bytes to Ring.Open and Ring.KeyID: neither may
// panic, and Open must refuse anything Seal did not produce.
func FuzzOpen(f *testing.F) {
	keys := newMemKeys()
	master := make([]byte, MasterKeySize)
	r, err := Open(context.Background(), keys, master, nil)
	if err != nil {
		f.Fatal(err)
	}
	aad := store.FieldAAD("users", "email", "u_1")
	var valid [][]byte
	for _, p := range []string{"", "a", "alice@example.com", string(make([]byte, 300))} {
		ct, err := r.Seal([]byte(p), aad)
		if err != nil {
			f.Fatal(err)
		}
		valid = append(valid, ct)
		f.Add(ct)
		f.Add(ct[:len(ct)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{sealVersion, 3, 'd', 'k', '_'})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, idErr := r.KeyID(data)
		got, err := r.Open(data, aad)
		if err != nil {
			if got != nil {
				t.Fatalf("Open returned %q along with %v", got, err)
			}
			if !errors.Is(err, ErrInvalidCiphertext) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Open error %v is neither ErrInvalidCiphertext nor ErrUnknownKey", err)
			}
			return
		}
		for _, v := range valid {
			if bytes.Equal(v, data) {
				if idErr != nil || id != r.ActiveKeyID() {
					t.Fatalf("KeyID of a valid value = %q, %v", id, idErr)
				}
				return
			}
		}
		t.Fatalf("Open accepted %x, which Seal did not produce, giving %q", data, got)
	})
}
