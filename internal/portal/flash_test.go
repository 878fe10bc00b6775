package portal

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

var testFlashKey = bytes.Repeat([]byte{0x5a}, 32)

func testFlasher(t testing.TB, key []byte) *flasher {
	t.Helper()
	f, err := newFlasher(key)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlashRoundTrip(t *testing.T) {
	f := testFlasher(t, testFlashKey)
	other := testFlasher(t, bytes.Repeat([]byte{0x11}, 32))
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	codes := []string{"k3v9-2mq8-xp4t", "a7c2-9dfe-h3jw"}
	const tok, otherTok = "token-of-this-session", "token-of-another-session"
	v, err := f.seal(tok, codes, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if strings.Contains(v, c) {
			t.Fatalf("the cookie value %q shows a code", v)
		}
	}
	again, err := f.seal(tok, codes, now)
	if err != nil || again == v {
		t.Errorf("two seals of the same codes are equal: the nonce is not fresh")
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name   string
		f      *flasher
		value  string
		token  string
		at     time.Time
		opened bool
	}{
		{"same session", f, v, tok, now, true},
		{"just before expiry", f, v, tok, now.Add(flashTTL - time.Second), true},
		{"expired", f, v, tok, now.Add(flashTTL), false},
		{"another session", f, v, otherTok, now, false},
		{"no session", f, v, "", now, false},
		{"another key", other, v, tok, now, false},
		{"tampered tag", f, flip(v, len(v)-2), tok, now, false},
		{"tampered nonce", f, flip(v, 1), tok, now, false},
		{"truncated", f, v[:20], tok, now, false},
		{"empty", f, "", tok, now, false},
		{"not base64url", f, v[:10] + "+/" + v[12:], tok, now, false},
		{"oversize", f, strings.Repeat("A", maxFlashBytes+4), tok, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.f.open(tt.value, tt.token, tt.at)
			if ok != tt.opened {
				t.Fatalf("opened %v, want %v", ok, tt.opened)
			}
			if ok && !slices.Equal(got, codes) {
				t.Errorf("codes %q, want %q", got, codes)
			}
			if !ok && got != nil {
				t.Errorf("a flash that did not open gave %q", got)
			}
		})
	}
}

func TestFlashKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := newFlasher(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was accepted", n)
		}
	}
}

func TestFlashCookieAttributes(t *testing.T) {
	w := httptest.NewRecorder()
	setFlashCookie(w, "sealed")
	clearFlashCookie(w)
	lines := w.Result().Header.Values("Set-Cookie")
	if len(lines) != 2 {
		t.Fatalf("%d Set-Cookie lines, want 2", len(lines))
	}
	for i, wantAge := range []int{600, -1} {
		c, err := http.ParseSetCookie(lines[i])
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != FlashCookie || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.MaxAge != wantAge {
			t.Errorf("cookie %q lacks the attributes of a __Host- cookie, SameSite=Strict and Max-Age %d", lines[i], wantAge)
		}
	}
}
