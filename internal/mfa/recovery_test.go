package mfa

import (
	"bytes"
	"encoding/base64"
	"math"
	"regexp"
	"strings"
	"testing"
)

var testPepper = bytes.Repeat([]byte("pepper!!"), 4)

func TestRecoveryAlphabet(t *testing.T) {
	if len(recoveryAlphabet) != 32 {
		t.Fatalf("alphabet has %d symbols, want 32", len(recoveryAlphabet))
	}
	seen := map[rune]bool{}
	for _, c := range recoveryAlphabet {
		if seen[c] {
			t.Fatalf("symbol %q twice", c)
		}
		seen[c] = true
	}
	if strings.ContainsAny(recoveryAlphabet, "0Oo1lI") {
		t.Fatalf("alphabet %q has an ambiguous symbol", recoveryAlphabet)
	}
	if bits := float64(RecoveryCodeLength) * math.Log2(float64(len(recoveryAlphabet))); bits < 50 {
		t.Fatalf("%.1f bits per code, want at least 50", bits)
	}
}

func TestNewRecoveryCodes(t *testing.T) {
	format := regexp.MustCompile(`^[` + recoveryAlphabet + `]{5}-[` + recoveryAlphabet + `]{5}$`)
	const batches, per = 1000, 10
	seen := make(map[string]bool, batches*per)
	counts := map[rune]int{}
	for range batches {
		codes, err := NewRecoveryCodes(per)
		if err != nil {
			t.Fatal(err)
		}
		if len(codes) != per {
			t.Fatalf("got %d codes, want %d", len(codes), per)
		}
		for _, c := range codes {
			if !format.MatchString(c) {
				t.Fatalf("code %q is not xxxxx-xxxxx over the alphabet", c)
			}
			if seen[c] {
				t.Fatalf("code %q generated twice", c)
			}
			seen[c] = true
			for _, r := range strings.ReplaceAll(c, "-", "") {
				counts[r]++
			}
		}
	}
	// 100,000 symbols: each of the 32 is expected 3125 times with a
	// standard deviation of about 55. A bias such as a modulo over the
	// wrong size shows far outside 15%.
	const expect = batches * per * RecoveryCodeLength / 32
	for _, r := range recoveryAlphabet {
		if n := counts[r]; n < expect*85/100 || n > expect*115/100 {
			t.Errorf("symbol %q drawn %d times, expected about %d", r, n, expect)
		}
	}

	t.Run("count bounds", func(t *testing.T) {
		for _, n := range []int{-1, 0, MaxRecoveryCodes + 1} {
			if codes, err := NewRecoveryCodes(n); err == nil {
				t.Errorf("NewRecoveryCodes(%d) gave %d codes, want an error", n, len(codes))
			}
		}
		codes, err := NewRecoveryCodes(MaxRecoveryCodes)
		if err != nil || len(codes) != MaxRecoveryCodes {
			t.Fatalf("NewRecoveryCodes(%d): %d codes, %v", MaxRecoveryCodes, len(codes), err)
		}
	})
}

func TestRecoveryCodeHashRoundTrip(t *testing.T) {
	codes, err := NewRecoveryCodes(2)
	if err != nil {
		t.Fatal(err)
	}
	code, other := codes[0], codes[1]
	hash, err := HashRecoveryCode(testPepper, code)
	if err != nil {
		t.Fatal(err)
	}
	enc, ok := strings.CutPrefix(hash, "v1$")
	if !ok {
		t.Fatalf("hash %q lacks the v1$ prefix", hash)
	}
	if raw, err := base64.RawStdEncoding.DecodeString(enc); err != nil || len(raw) != 48 {
		t.Fatalf("hash body: %d bytes, %v; want 48 (salt and mac)", len(raw), err)
	}
	if strings.Contains(hash, code) || strings.Contains(hash, strings.ReplaceAll(code, "-", "")) {
		t.Fatal("hash contains the code")
	}
	again, err := HashRecoveryCode(testPepper, code)
	if err != nil {
		t.Fatal(err)
	}
	if again == hash {
		t.Fatal("two hashes of one code are equal: no salt")
	}

	flat := strings.ReplaceAll(code, "-", "")
	otherPepper := bytes.Clone(testPepper)
	otherPepper[0] ^= 1
	tests := []struct {
		name   string
		pepper []byte
		code   string
		hash   string
		want   bool
	}{
		{"as shown", testPepper, code, hash, true},
		{"second hash of the same code", testPepper, code, again, true},
		{"upper case", testPepper, strings.ToUpper(code), hash, true},
		{"no dash", testPepper, flat, hash, true},
		{"spaces instead of dash", testPepper, flat[:5] + " " + flat[5:], hash, true},
		{"surrounding spaces", testPepper, "  " + code + " ", hash, true},
		{"spaced out", testPepper, strings.Join(strings.Split(flat, ""), " "), hash, true},
		{"extra dashes", testPepper, flat[:2] + "-" + flat[2:7] + "--" + flat[7:], hash, true},
		{"mixed case with spaces", testPepper, " " + strings.ToUpper(flat[:5]) + " - " + flat[5:], hash, true},
		{"another code", testPepper, other, hash, false},
		{"one symbol changed", testPepper, changeSymbol(code), hash, false},
		{"one symbol short", testPepper, code[:len(code)-1], hash, false},
		{"one symbol more", testPepper, code + "a", hash, false},
		{"symbol outside the alphabet", testPepper, code[:len(code)-1] + "0", hash, false},
		{"empty code", testPepper, "", hash, false},
		{"wrong pepper", otherPepper, code, hash, false},
		{"short pepper", testPepper[:MinPepperSize-1], code, hash, false},
		{"empty hash", testPepper, code, "", false},
		{"unknown version", testPepper, code, "v2$" + enc, false},
		{"truncated hash", testPepper, code, hash[:len(hash)-1], false},
		{"padded hash", testPepper, code, hash + "=", false},
		{"line break in hash", testPepper, code, hash[:40] + "\r\n" + hash[40:], false},
		{"trailing newline", testPepper, code, hash + "\n", false},
		{"tampered mac", testPepper, code, hash[:len(hash)-2] + flipBase64(hash[len(hash)-2]) + hash[len(hash)-1:], false},
		{"tampered salt", testPepper, code, "v1$" + flipBase64(enc[0]) + enc[1:], false},
		{"not base64", testPepper, code, "v1$" + strings.Repeat("*", len(enc)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyRecoveryCode(tt.pepper, tt.code, tt.hash); got != tt.want {
				t.Fatalf("VerifyRecoveryCode(%q) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

func TestHashRecoveryCodeErrors(t *testing.T) {
	const code = "abcde-fghij"
	tests := []struct {
		name   string
		pepper []byte
		code   string
	}{
		{"nil pepper", nil, code},
		{"short pepper", testPepper[:MinPepperSize-1], code},
		{"empty code", testPepper, ""},
		{"too short", testPepper, "abcde-fghi"},
		{"too long", testPepper, "abcde-fghijk"},
		{"ambiguous symbol", testPepper, "abcde-fghi1"},
		{"non-ascii", testPepper, "abcdé-fghij"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := HashRecoveryCode(tt.pepper, tt.code)
			if err == nil {
				t.Fatalf("no error, hash %q", h)
			}
			if tt.code != "" && strings.Contains(err.Error(), tt.code) {
				t.Fatalf("error quotes the code: %v", err)
			}
		})
	}
}

// FuzzVerifyRecoveryCode feeds arbitrary user input and stored hashes to
// VerifyRecoveryCode: no input panics, and a code is only accepted if it
// normalises to the real one.
func FuzzVerifyRecoveryCode(f *testing.F) {
	// The salt is fixed so that every fuzz worker sees the same hash.
	const code = "k7m2p-x9qrt"
	norm, _ := normalizeRecoveryCode(code)
	salt := bytes.Repeat([]byte{0x5a}, recoverySaltSize)
	hash := "v1$" + base64.RawStdEncoding.EncodeToString(append(salt, recoveryMAC(testPepper, salt, norm)...))
	if !VerifyRecoveryCode(testPepper, code, hash) {
		f.Fatal("fixed-salt hash does not verify")
	}
	f.Add(code, hash)
	f.Add("K7M2P X9QRT", hash)
	f.Add("k7m2px9qrt", "v1$")
	f.Add("", "")
	f.Add("k7m2p-x9qr", hash)
	f.Add("ｋ7m2p-x9qrt", hash)
	f.Fuzz(func(t *testing.T, input, stored string) {
		if !VerifyRecoveryCode(testPepper, input, stored) {
			return
		}
		if stored != hash {
			t.Fatalf("accepted against stored value %q", stored)
		}
		norm := strings.ToLower(strings.NewReplacer("-", "", " ", "", "\t", "").Replace(input))
		if norm != "k7m2px9qrt" || len(input) > maxRecoveryInput {
			t.Fatalf("accepted %q", input)
		}
	})
}

func BenchmarkVerifyRecoveryCode(b *testing.B) {
	hash, err := HashRecoveryCode(testPepper, "k7m2p-x9qrt")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyRecoveryCode(testPepper, "K7M2P-X9QRT", hash) {
			b.Fatal("refused")
		}
	}
}

// changeSymbol replaces the last symbol of code with the next one in the
// alphabet.
func changeSymbol(code string) string {
	last := code[len(code)-1]
	i := strings.IndexByte(recoveryAlphabet, last)
	return code[:len(code)-1] + string(recoveryAlphabet[(i+1)%len(recoveryAlphabet)])
}

// flipBase64 returns a different base64 symbol than c.
func flipBase64(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
