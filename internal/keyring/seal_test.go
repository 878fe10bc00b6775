package keyring

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// The ring must satisfy the store's contract.
var _ store.Cipher = (*Ring)(nil)

func TestSealOpenRoundTrip(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	aad := store.FieldAAD("credentials", "secret", "cr_1")
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"empty", []byte{}},
		{"one byte", []byte{0}},
		{"totp secret", []byte("JBSWY3DPEHPK3PXP")},
		{"32 bytes", bytes.Repeat([]byte{0xa5}, 32)},
		{"1 KiB", bytes.Repeat([]byte("0123456789abcdef"), 64)},
		{"64 KiB", bytes.Repeat([]byte{1, 2, 3, 0}, 16<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := r.Seal(tt.plaintext, aad)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.plaintext) >= 8 && bytes.Contains(ct, tt.plaintext) {
				t.Error("the sealed value contains the plaintext")
			}
			if want := 2 + len(r.ActiveKeyID()) + nonceSize + len(tt.plaintext) + tagSize; len(ct) != want {
				t.Errorf("sealed length = %d, want %d", len(ct), want)
			}
			got, err := r.Open(ct, aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.plaintext) || got == nil {
				t.Errorf("Open = %x, want %x", got, tt.plaintext)
			}
			id, err := r.KeyID(ct)
			if err != nil || id != r.ActiveKeyID() {
				t.Errorf("KeyID = %q, %v; want %q", id, err, r.ActiveKeyID())
			}
			again, _ := r.Seal(tt.plaintext, aad)
			if bytes.Equal(again, ct) {
				t.Error("sealing the same value twice gave the same bytes: nonces repeat")
			}
		})
	}
}

func TestOpenWrongAAD(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	ct := seal(t, r, "alice@example.com", store.FieldAAD("users", "email", "u_1"))
	tests := []struct {
		name string
		aad  []byte
	}{
		{"another record", store.FieldAAD("users", "email", "u_2")},
		{"another column", store.FieldAAD("users", "display_name", "u_1")},
		{"another table", store.FieldAAD("identities", "email", "u_1")},
		{"shifted separator", store.FieldAAD("users", "emailu", "_1")},
		{"no aad", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Open(ct, tt.aad)
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("Open = %q, %v; want ErrInvalidCiphertext", got, err)
			}
			if got != nil {
				t.Errorf("Open returned %q along with an error", got)
			}
		})
	}
}

func TestOpenTampered(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	aad := store.FieldAAD("secrets", "value", "webhook")
	ct := seal(t, r, "whsec_0123456789abcdef0123456789ab", aad)
	for i := range ct {
		for bit := range 8 {
			bad := bytes.Clone(ct)
			bad[i] ^= 1 << bit
			if got, err := r.Open(bad, aad); err == nil {
				t.Fatalf("byte %d bit %d flipped: Open = %q, want an error", i, bit, got)
			}
		}
	}
}

func TestOpenTruncatedOrExtended(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	aad := store.FieldAAD("identities", "refresh_token", "id_1")
	ct := seal(t, r, "refresh-token-value", aad)
	for n := range len(ct) {
		if got, err := r.Open(ct[:n], aad); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("first %d of %d bytes: Open = %q, %v; want ErrInvalidCiphertext", n, len(ct), got, err)
		}
	}
	if _, err := r.Open(append(bytes.Clone(ct), 0), aad); !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("a byte appended: Open error = %v, want ErrInvalidCiphertext", err)
	}
}

func TestOpenUnknownKey(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	other := openRing(t, newMemKeys(), newMaster(t))
	aad := store.FieldAAD("users", "email", "u_1")
	ct := seal(t, other, "bob@example.com", aad)
	got, err := r.Open(ct, aad)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open = %q, %v; want ErrUnknownKey", got, err)
	}
	if !strings.Contains(err.Error(), other.ActiveKeyID()) {
		t.Errorf("error %q does not name the key id %s", err, other.ActiveKeyID())
	}
	if id, err := r.KeyID(ct); err != nil || id != other.ActiveKeyID() {
		t.Errorf("KeyID = %q, %v; want %q", id, err, other.ActiveKeyID())
	}
}

func TestKeyIDMalformed(t *testing.T) {
	r := openRing(t, newMemKeys(), newMaster(t))
	valid := seal(t, r, "x", nil)
	body := make([]byte, nonceSize+tagSize)
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"version only", []byte{sealVersion}},
		{"unknown version", append([]byte{2}, valid[1:]...)},
		{"version zero", append([]byte{0}, valid[1:]...)},
		{"empty key id", append([]byte{sealVersion, 0}, body...)},
		{"key id with a space", append([]byte{sealVersion, 4, 'd', 'k', ' ', 'x'}, body...)},
		{"key id with a newline", append([]byte{sealVersion, 4, 'd', 'k', '\n', 'x'}, body...)},
		{"key id too long", append(append([]byte{sealVersion, 65}, bytes.Repeat([]byte("a"), 65)...), body...)},
		{"length beyond the end", []byte{sealVersion, 200, 'a', 'b'}},
		{"no room for the tag", valid[:len(valid)-len("x")-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := r.KeyID(tt.in); !errors.Is(err, ErrInvalidCiphertext) {
				t.Errorf("KeyID = %q, %v; want ErrInvalidCiphertext", id, err)
			}
			if got, err := r.Open(tt.in, nil); !errors.Is(err, ErrInvalidCiphertext) {
				t.Errorf("Open = %q, %v; want ErrInvalidCiphertext", got, err)
			}
		})
	}
}

// Written by this package with the master key 00 01 ... 1f and the data key
// c0 c1 ... df, and checked against an independent AES-GCM and HKDF
// implementation.
const (
	compatWrapped = "01c49a1eebcaa682747ed977958c59f6fcf898d9b2a2823e8656f0972f3dfc81495e672cc2134e8023520cdb2bf7eb85e469cfa0d72dd30081c33198ce"
	compatSealed  = "010d646b5f636f6d706174303030316c3296e2cfcb75d554e2085ea909947e821b4d610f0c306e98999fdeb823991dcdce1bc3dd2c10ed708cfed295"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCompatibility opens a data key record and a sealed value written by
// an earlier build: a change to the key derivation, the wrapping or the
// format that breaks stored data fails here.
func TestCompatibility(t *testing.T) {
	master := make([]byte, MasterKeySize)
	for i := range master {
		master[i] = byte(i)
	}
	const kekID = "d8add5c1ec73a1f3"
	if got := MasterKeyID(master); got != kekID {
		t.Fatalf("MasterKeyID = %s, want %s", got, kekID)
	}
	keys := newMemKeys()
	keys.keys = append(keys.keys, &store.DataKey{
		ID:      "dk_compat0001",
		Wrapped: unhex(t, compatWrapped),
		KEKID:   kekID,
		State:   StateActive,
	})
	r := openRing(t, keys, master)
	mustOpen(t, r, unhex(t, compatSealed), store.FieldAAD("users", "email", "u_1"), "alice@example.com")
}
