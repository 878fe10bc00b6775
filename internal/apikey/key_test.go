package apikey

import (
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

// grammar is the key grammar of the package documentation, written out.
var grammar = regexp.MustCompile(`^moat_([a-z2-7]{8})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$`)

// scannerCheck is what a secret scanner does with a candidate, from the
// package documentation alone: match the grammar, read the checksum as a
// base62 number and compare it with the CRC-32 of what precedes it.
func scannerCheck(s string) bool {
	m := grammar.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	var n uint64
	for _, c := range m[3] {
		n = n*62 + uint64(strings.IndexRune(base62Digits, c))
	}
	return n == uint64(crc32.ChecksumIEEE([]byte(s[:len(s)-6])))
}

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func TestNewKeyFormat(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	const n = 200
	for range n {
		key, id, err := newKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != 63 || !strings.HasPrefix(key, Prefix) {
			t.Fatalf("key %q: want 63 characters starting with %q", key, Prefix)
		}
		if !scannerCheck(key) {
			t.Fatalf("key %q fails the documented grammar or checksum", key)
		}
		got, err := parse(key)
		if err != nil || got != id {
			t.Fatalf("parse(%q) = %q, %v; want %q", key, got, err, id)
		}
		if seen[key] || seen[id] {
			t.Fatalf("key or id repeated after %d keys", len(seen))
		}
		seen[key], seen[id] = true, true
		for _, c := range key[secretStart:checkStart] {
			counts[c]++
		}
	}
	// 200 secrets of 43 characters: each of the 62 should turn up about
	// 139 times. Far fewer distinct characters means a broken generator.
	if len(counts) < 60 {
		t.Errorf("only %d distinct characters in %d secrets", len(counts), n)
	}
}

func TestChecksumEncoding(t *testing.T) {
	tests := []struct {
		name string
		sum  uint32
		want string
	}{
		{"zero", 0, "000000"},
		{"one", 1, "000001"},
		{"61", 61, "00000z"},
		{"62", 62, "000010"},
		{"max", 0xffffffff, "4gfFC3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b [checkLen]byte
			putChecksum(b[:], tc.sum)
			if string(b[:]) != tc.want {
				t.Errorf("got %q, want %q", b[:], tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	key, id, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	body := key[:checkStart]
	secret := key[secretStart:checkStart]
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	otherID := "a"
	if id[0] == 'a' {
		otherID = "b"
	}
	tests := []struct {
		name   string
		key    string
		reason string // "" for a key that parses
	}{
		{"valid", key, ""},
		{"fixed example", withChecksum("moat_abcdefgh_" + strings.Repeat("A", 43)), ""},
		{"empty", "", "malformed"},
		{"prefix only", Prefix, "malformed"},
		{"truncated by one", key[:len(key)-1], "malformed"},
		{"truncated to the id", key[:sepAt+1], "malformed"},
		{"one character too many", key + "A", "malformed"},
		{"upper-case prefix", "MOAT_" + key[len(Prefix):], "malformed"},
		{"another prefix", "ghp_x" + key[len(Prefix):], "malformed"},
		{"upper-case id", withChecksum(Prefix + strings.ToUpper(id) + "_" + secret), "malformed"},
		{"base32 digit 1 in id", withChecksum(Prefix + "1" + id[1:] + "_" + secret), "malformed"},
		{"no separator", withChecksum(Prefix + id + "-" + secret), "malformed"},
		{"symbol in secret", withChecksum(body[:secretStart] + "+" + secret[1:]), "malformed"},
		{"space in checksum", body + " " + key[checkStart+1:], "malformed"},
		{"non-ASCII", strings.Replace(key, key[20:22], "é", 1), "malformed"},
		{"tampered secret", flip(key, secretStart+5), "checksum"},
		{"tampered id", body[:idStart] + otherID + key[idStart+1:], "checksum"},
		{"wrong checksum", flip(key, checkStart+2), "checksum"},
		{"checksum of another key", body + "000000", "checksum"},
		{"swapped characters", key[:secretStart] + secret[1:2] + secret[:1] + key[secretStart+2:], "checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "swapped characters" && secret[0] == secret[1] {
				t.Skip("the first two characters of this secret are the same")
			}
			got, err := parse(tc.key)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				if got != tc.key[idStart:sepAt] {
					t.Errorf("id %q, want %q", got, tc.key[idStart:sepAt])
				}
				if !scannerCheck(tc.key) {
					t.Error("parse accepts a key the documented check refuses")
				}
				return
			}
			wantReason(t, err, tc.reason)
			if scannerCheck(tc.key) {
				t.Error("parse refuses a key the documented check accepts")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	key, _, _ := newKey()
	f.Add(key)
	f.Add(key[:40])
	f.Add(withChecksum("moat_abcdefgh_" + strings.Repeat("z", 43)))
	f.Add("moat_")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.sig")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parse(s)
		if err != nil {
			if r := Reason(err); r != "malformed" && r != "checksum" {
				t.Fatalf("parse(%q): reason %q (%v)", s, r, err)
			}
			if scannerCheck(s) {
				t.Fatalf("parse refuses %q, which the documented check accepts", s)
			}
			return
		}
		if !scannerCheck(s) {
			t.Fatalf("parse accepts %q, which the documented check refuses", s)
		}
		if id != s[5:13] {
			t.Fatalf("parse(%q) = id %q", s, id)
		}
	})
}

func FuzzChecksum(f *testing.F) {
	f.Add("")
	f.Add("moat_abcdefgh_")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := checksum(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("checksum(%q) = %#x, want CRC-32 %#x", s, got, want)
		}
	})
}
