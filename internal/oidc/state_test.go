package oidc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func newTestSealer(t testing.TB, key []byte) *sealer {
	t.Helper()
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func sampleState() *loginState {
	return &loginState{Provider: "example", State: "s-123", Nonce: "n-456", Verifier: "v-789",
		ReturnTo: "/app?x=1", Expires: t0.Add(stateTTL)}
}

func TestStateRoundTrip(t *testing.T) {
	s := newTestSealer(t, testKey(1))
	v, err := s.seal(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.open(v, t0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if *got != *sampleState() {
		t.Errorf("opened %+v, want %+v", got, sampleState())
	}
	v2, _ := s.seal(sampleState())
	if v == v2 {
		t.Error("two seals of the same state are identical: the GCM nonce is not random")
	}
	long := sampleState()
	long.ReturnTo = "/" + strings.Repeat("a", maxStateField-1)
	lv, err := s.seal(long)
	if err != nil {
		t.Fatalf("sealing the longest return address: %v", err)
	}
	if len(lv) > maxStateCookie {
		t.Errorf("the longest state seals to %d bytes, more than a cookie of %d", len(lv), maxStateCookie)
	}
	long.ReturnTo += "a"
	if _, err := s.seal(long); err == nil {
		t.Error("a field past maxStateField was sealed")
	}
}

func TestStateRefused(t *testing.T) {
	s := newTestSealer(t, testKey(1))
	good, _ := s.seal(sampleState())
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := newTestSealer(t, testKey(2)).seal(sampleState())
	tests := []struct {
		name  string
		value string
		now   time.Time
		want  error
	}{
		{"empty", "", t0, errStateInvalid},
		{"not base64", "!!!!", t0, errStateInvalid},
		{"too short", base64.RawURLEncoding.EncodeToString(raw[:20]), t0, errStateInvalid},
		{"a bit flipped in the GCM nonce", flip(0), t0, errStateInvalid},
		{"a bit flipped in the ciphertext", flip(len(raw) / 2), t0, errStateInvalid},
		{"a bit flipped in the tag", flip(len(raw) - 1), t0, errStateInvalid},
		{"truncated", good[:len(good)-4], t0, errStateInvalid},
		{"sealed with another key", other, t0, errStateInvalid},
		{"too long", good + strings.Repeat("A", maxStateCookie), t0, errStateInvalid},
		{"at its expiry", good, t0.Add(stateTTL), errStateExpired},
		{"after its expiry", good, t0.Add(stateTTL + time.Hour), errStateExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.open(tt.value, tt.now); !errors.Is(err, tt.want) {
				t.Errorf("open: %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("sealed for another purpose", func(t *testing.T) {
		// The same key and plaintext, without the cookie name as
		// additional data, must not open.
		plain, _ := encodeState(sampleState())
		nonce := make([]byte, s.aead.NonceSize())
		v := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, nil))
		if _, err := s.open(v, t0); !errors.Is(err, errStateInvalid) {
			t.Errorf("open: %v", err)
		}
	})
}

func TestNewSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := newSealer(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was accepted", n)
		}
	}
}

func TestDecodeStateMalformed(t *testing.T) {
	good, _ := encodeState(sampleState())
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"wrong version", append([]byte{2}, good[1:]...)},
		{"header only", good[:9]},
		{"a field past the end", good[:len(good)-1]},
		{"bytes left over", append(bytes.Clone(good), 0)},
		{"absurd expiry", append(append([]byte{1}, bytes.Repeat([]byte{0xff}, 8)...), good[9:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeState(tt.b); err == nil {
				t.Error("decoded")
			}
		})
	}
}

func TestStateCookieAttributes(t *testing.T) {
	rec := httptest.NewRecorder()
	setStateCookie(rec, "v")
	clearStateCookie(rec)
	cs := rec.Result().Cookies()
	if len(cs) != 2 {
		t.Fatalf("%d cookies", len(cs))
	}
	for i, c := range cs {
		if c.Name != stateCookie || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %d: %s", i, c)
		}
	}
	if cs[0].MaxAge != 600 || cs[1].MaxAge >= 0 {
		t.Errorf("Max-Age %d then %d, want 600 then a deletion", cs[0].MaxAge, cs[1].MaxAge)
	}
}

func TestStateFromRequest(t *testing.T) {
	tests := []struct {
		name        string
		header      string
		want        string
		wantSeveral bool
	}{
		{"none", "other=1", "", false},
		{"one", "a=1; " + stateCookie + "=abc", "abc", false},
		{"two", stateCookie + "=abc; " + stateCookie + "=def", "", true},
		{"a lookalike name", "__host-moat_oidc=abc", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Cookie", tt.header)
			got, several := stateFromRequest(r)
			if got != tt.want || several != tt.wantSeveral {
				t.Errorf("got %q, %v; want %q, %v", got, several, tt.want, tt.wantSeveral)
			}
		})
	}
}

// FuzzStateCookie feeds client bytes to the state cookie's parser. Nothing
// may panic; a value that opens must be one this key sealed, so
// re-sealing what it holds must give the same state back; and the inner
// decoder must accept only what the encoder writes.
func FuzzStateCookie(f *testing.F) {
	s := newTestSealer(f, testKey(7))
	good, _ := s.seal(sampleState())
	f.Add(good)
	f.Add("")
	f.Add("AAAA")
	f.Add(good[:len(good)/2])
	plain, _ := encodeState(sampleState())
	f.Add(string(plain))
	f.Fuzz(func(t *testing.T, v string) {
		if st, err := s.open(v, t0); err == nil {
			again, err := s.seal(st)
			if err != nil {
				t.Fatalf("re-sealing an opened state: %v", err)
			}
			st2, err := s.open(again, t0)
			if err != nil || *st2 != *st {
				t.Fatalf("round trip: %+v, %v; want %+v", st2, err, st)
			}
		}
		if st, err := decodeState([]byte(v)); err == nil {
			b, err := encodeState(st)
			if err != nil || !bytes.Equal(b, []byte(v)) {
				t.Fatalf("decode accepted %q, which encodes back as %q (%v)", v, b, err)
			}
		}
	})
}

func BenchmarkStateCookie(b *testing.B) {
	s := newTestSealer(b, testKey(1))
	for b.Loop() {
		v, err := s.seal(sampleState())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.open(v, t0); err != nil {
			b.Fatal(err)
		}
	}
}
