package mfa

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rfcSecret is the SHA-1 seed of RFC 6238 Appendix B and RFC 4226 Appendix D.
var rfcSecret = []byte("12345678901234567890")

func TestRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B, the SHA-1 rows: eight-digit TOTP values.
	tests := []struct {
		unix int64
		step int64
		want string
	}{
		{59, 0x1, "94287082"},
		{1111111109, 0x23523EC, "07081804"},
		{1111111111, 0x23523ED, "14050471"},
		{1234567890, 0x273EF07, "89005924"},
		{2000000000, 0x3F940AA, "69279037"},
		{20000000000, 0x27BC86AA, "65353130"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.unix), func(t *testing.T) {
			now := time.Unix(tt.unix, 0).UTC()
			if got := Step(now); got != tt.step {
				t.Fatalf("Step = %#x, want %#x", got, tt.step)
			}
			got8 := fmt.Sprintf("%08d", hotp(hmac.New(sha1.New, rfcSecret), uint64(tt.step), 8))
			if got8 != tt.want {
				t.Fatalf("8-digit value = %s, want %s", got8, tt.want)
			}
			want6 := tt.want[2:]
			if got := Code(rfcSecret, now); got != want6 {
				t.Fatalf("Code = %s, want %s", got, want6)
			}
			step, ok := Verify(rfcSecret, want6, now, 0)
			if !ok || step != tt.step {
				t.Fatalf("Verify(%s) = %d, %v; want %d, true", want6, step, ok, tt.step)
			}
		})
	}
}

func TestRFC4226Vectors(t *testing.T) {
	// RFC 4226 Appendix D: HOTP values for counters 0 to 9.
	want := []string{"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489"}
	mac := hmac.New(sha1.New, rfcSecret)
	for counter, w := range want {
		if got := fmt.Sprintf("%06d", hotp(mac, uint64(counter), 6)); got != w {
			t.Errorf("counter %d: got %s, want %s", counter, got, w)
		}
	}
}

func TestVerifyWindow(t *testing.T) {
	secret := fixedSecret
	// Mid-step, and both edges of a step, so the window is measured in
	// steps and not in seconds from now.
	for _, now := range []time.Time{
		time.Unix(1_700_000_015, 0),
		time.Unix(1_700_000_010, 0),
		time.Unix(1_700_000_039, 0),
	} {
		cur := Step(now)
		tests := []struct {
			name   string
			offset int64
			ok     bool
		}{
			{"two steps back", -2, false},
			{"one step back", -1, true},
			{"current step", 0, true},
			{"one step ahead", 1, true},
			{"two steps ahead", 2, false},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d/%s", now.Unix(), tt.name), func(t *testing.T) {
				step := cur + tt.offset
				code := Code(secret, time.Unix(step*30, 0))
				// Steps may share a code by chance (1 in a million per
				// pair); with this fixed secret and these times none do.
				got, ok := Verify(secret, code, now, 0)
				if ok != tt.ok {
					t.Fatalf("Verify(code of step %+d) ok = %v, want %v", tt.offset, ok, tt.ok)
				}
				if ok && got != step {
					t.Fatalf("Verify returned step %d, want %d", got, step)
				}
			})
		}
	}
}

func TestVerifyReplay(t *testing.T) {
	secret := fixedSecret
	now := time.Unix(1_700_000_015, 0)
	cur := Step(now)
	codeAt := func(step int64) string { return Code(secret, time.Unix(step*30, 0)) }

	last, ok := Verify(secret, codeAt(cur), now, 0)
	if !ok || last != cur {
		t.Fatalf("first use: got %d, %v", last, ok)
	}
	tests := []struct {
		name string
		code string
		now  time.Time
		ok   bool
	}{
		{"same code again", codeAt(cur), now, false},
		{"same code again, a step later", codeAt(cur), now.Add(30 * time.Second), false},
		{"older code after a newer one", codeAt(cur - 1), now, false},
		{"next code", codeAt(cur + 1), now, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, ok := Verify(secret, tt.code, tt.now, last)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && step <= last {
				t.Fatalf("accepted step %d not after last %d", step, last)
			}
		})
	}

	// The caller keeps the returned step: a newer code moves it forward and
	// the one before it is then refused too.
	next, ok := Verify(secret, codeAt(cur+1), now, last)
	if !ok {
		t.Fatal("next code refused")
	}
	if _, ok := Verify(secret, codeAt(cur), now, next); ok {
		t.Fatal("code of step cur accepted after step cur+1")
	}
}

func TestVerifyMalformed(t *testing.T) {
	secret := fixedSecret
	now := time.Unix(1_700_000_015, 0)
	code := Code(secret, now)
	tests := []struct {
		name string
		code string
		ok   bool
	}{
		{"plain", code, true},
		{"surrounding spaces", "  " + code + " ", true},
		{"grouped as apps show it", code[:3] + " " + code[3:], true},
		{"tab", code[:3] + "\t" + code[3:], true},
		{"empty", "", false},
		{"only spaces", "      ", false},
		{"five digits", code[:5], false},
		{"seven digits", code + "0", false},
		{"seven digits, leading zero", "0" + code, false},
		{"letter", code[:5] + "a", false},
		{"sign", "+" + code[1:], false},
		{"dash", code[:3] + "-" + code[3:], false},
		{"newline", code + "\n", false},
		{"nul", code + "\x00", false},
		{"arabic-indic digits", toDigits(code, '٠'), false},
		{"full-width digits", toDigits(code, '０'), false},
		{"devanagari digits", toDigits(code, '०'), false},
		{"one full-width digit", code[:5] + string(rune('０'+rune(code[5]-'0'))), false},
		{"non-breaking space", code[:3] + "\u00a0" + code[3:], false},
		{"very long spacing", strings.Repeat(" ", 100) + code, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := Verify(secret, tt.code, now, 0); ok != tt.ok {
				t.Fatalf("Verify(%q) ok = %v, want %v", tt.code, ok, tt.ok)
			}
		})
	}
}

func TestVerifyShortSecret(t *testing.T) {
	short := bytes.Repeat([]byte{7}, MinSecretSize-1)
	now := time.Unix(1_700_000_015, 0)
	if _, ok := Verify(short, Code(short, now), now, 0); ok {
		t.Fatal("a secret shorter than MinSecretSize was accepted")
	}
	if _, ok := Verify(nil, "000000", now, 0); ok {
		t.Fatal("a nil secret was accepted")
	}
}

// toDigits rewrites the ASCII digits of s with the digits of another script
// whose zero is zero.
func toDigits(s string, zero rune) string {
	var b strings.Builder
	for _, c := range s {
		b.WriteRune(zero + (c - '0'))
	}
	return b.String()
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix int64
		want int64
	}{
		{0, 0}, {29, 0}, {30, 1}, {59, 1}, {-1, -1}, {-30, -1}, {-31, -2},
	}
	for _, tt := range tests {
		if got := Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Step(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}
}

func TestNewTOTPSecret(t *testing.T) {
	a, err := NewTOTPSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewTOTPSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != SecretSize || len(b) != SecretSize {
		t.Fatalf("lengths %d, %d; want %d", len(a), len(b), SecretSize)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two secrets are equal")
	}
}

func TestEncodeSecret(t *testing.T) {
	enc := EncodeSecret(rfcSecret)
	if want := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; enc != want {
		t.Fatalf("EncodeSecret = %s, want %s", enc, want)
	}
	odd := []byte{0xff, 0x00, 0x10}
	if got := EncodeSecret(odd); strings.Contains(got, "=") {
		t.Fatalf("padding in %q", got)
	}
	dec, err := secretEncoding.DecodeString(EncodeSecret(odd))
	if err != nil || !bytes.Equal(dec, odd) {
		t.Fatalf("round trip: %x, %v", dec, err)
	}

	tests := []struct {
		name   string
		secret []byte
		want   string
	}{
		{"rfc seed", rfcSecret, "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"},
		{"partial last group", []byte{0xff, 0x00, 0x10}, "74AB A"},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatSecret(tt.secret); got != tt.want {
				t.Fatalf("FormatSecret = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKeyURI(t *testing.T) {
	secret := rfcSecret
	tests := []struct {
		name, issuer, account string
	}{
		{"plain", "Moat", "alice@example.com"},
		{"spaces", "Acme Corp", "alice smith"},
		{"colons", "Ex:ample", "bob:admin"},
		{"unicode", "Müller GmbH", "josé@exämple.com"},
		{"parameter injection", "a&issuer=evil", "x?secret=AAAA#frag"},
		{"slash and percent", "a/b%20", "c/../d"},
		{"plus", "a+b", "c+d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := KeyURI(tt.issuer, tt.account, secret)
			if strings.ContainsAny(raw, " +#") {
				t.Fatalf("unescaped space, plus or hash in %q", raw)
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if u.Scheme != "otpauth" || u.Host != "totp" {
				t.Fatalf("scheme %q host %q", u.Scheme, u.Host)
			}
			label, ok := strings.CutPrefix(u.EscapedPath(), "/")
			if !ok {
				t.Fatalf("path %q", u.EscapedPath())
			}
			parts := strings.Split(label, ":")
			if len(parts) != 2 {
				t.Fatalf("label %q does not split into issuer:account", label)
			}
			for i, want := range []string{tt.issuer, tt.account} {
				got, err := url.PathUnescape(parts[i])
				if err != nil || got != want {
					t.Fatalf("label part %d = %q (%v), want %q", i, got, err, want)
				}
			}
			q := u.Query()
			want := url.Values{
				"secret":    {EncodeSecret(secret)},
				"issuer":    {tt.issuer},
				"algorithm": {"SHA1"},
				"digits":    {"6"},
				"period":    {"30"},
			}
			if q.Encode() != want.Encode() {
				t.Fatalf("query = %v, want %v", q, want)
			}
			if u.Fragment != "" {
				t.Fatalf("fragment %q", u.Fragment)
			}
		})
	}

	t.Run("no issuer", func(t *testing.T) {
		raw := KeyURI("", "alice", secret)
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if u.Path != "/alice" || u.Query().Has("issuer") {
			t.Fatalf("got %q", raw)
		}
	})
}

// FuzzVerifyCode checks that no input panics and that a code is accepted
// exactly when, without spaces and tabs, it is six ASCII digits equal to a
// code in the window.
func FuzzVerifyCode(f *testing.F) {
	secret := rfcSecret
	now := time.Unix(1_700_000_015, 0)
	cur := Step(now)
	window := map[string]int64{}
	for s := cur - Skew; s <= cur+Skew; s++ {
		window[Code(secret, time.Unix(s*30, 0))] = s
	}
	for c := range window {
		f.Add(c)
		f.Add(" " + c[:3] + " " + c[3:])
	}
	for _, s := range []string{"", "000000", "12345", "1234567", "١٢٣٤٥٦", "１２３４５６", "12 34 5", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		step, ok := Verify(secret, code, now, 0)
		stripped := strings.NewReplacer(" ", "", "\t", "").Replace(code)
		wantStep, inWindow := window[stripped]
		want := inWindow && len(code) <= maxCodeInput
		if ok != want {
			t.Fatalf("Verify(%q) ok = %v, want %v", code, ok, want)
		}
		if !ok {
			return
		}
		if len(stripped) != 6 || strings.Trim(stripped, "0123456789") != "" {
			t.Fatalf("accepted %q, which is not six ASCII digits", code)
		}
		if step != wantStep {
			t.Fatalf("step %d, want %d", step, wantStep)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	secret := rfcSecret
	now := time.Unix(1_700_000_015, 0)
	code := Code(secret, now.Add(30*time.Second)) // matched last: the window is always fully computed
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Verify(secret, code, now, 0); !ok {
			b.Fatal("refused")
		}
	}
}

// fixedSecret keeps the window tests deterministic: with a random secret,
// two steps of the window would share a code about once in 300,000 runs.
var fixedSecret = []byte("moat-totp-test-secret")
