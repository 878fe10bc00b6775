package proxy

import (
	"net/http"
	"testing"
)

func TestHardenCookie(t *testing.T) {
	all := CookieFlags{Secure: true, HTTPOnly: true, SameSite: "Lax"}
	cases := []struct {
		name string
		in   string
		f    CookieFlags
		want string
	}{
		{"bare", "sid=abc", all, "sid=abc; Secure; HttpOnly; SameSite=Lax"},
		{"path kept", "sid=abc; Path=/; Max-Age=60", all, "sid=abc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"},
		{"own attributes win", "pref=1; secure; SameSite=None", all, "pref=1; secure; SameSite=None; HttpOnly"},
		{"any case", "a=1; HTTPONLY; SECURE; samesite=strict", all, "a=1; HTTPONLY; SECURE; samesite=strict"},
		{"unknown attribute survives", "a=1; Partitioned", all, "a=1; Partitioned; Secure; HttpOnly; SameSite=Lax"},
		{"trailing semicolon", "a=1;", all, "a=1; Secure; HttpOnly; SameSite=Lax"},
		{"secure only", "a=1", CookieFlags{Secure: true}, "a=1; Secure"},
		{"value with secure in it", "note=secure", CookieFlags{Secure: true}, "note=secure; Secure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hardenCookie(tc.in, tc.f); got != tc.want {
				t.Fatalf("hardenCookie(%q) = %q, want %q", tc.in, got, tc.want)
			}
			// What net/http reads back has the flags asked for.
			c, err := http.ParseSetCookie(hardenCookie(tc.in, tc.f))
			if err != nil {
				t.Fatal(err)
			}
			if tc.f.Secure && !c.Secure || tc.f.HTTPOnly && !c.HttpOnly {
				t.Errorf("parsed back as %+v", c)
			}
		})
	}
	h := http.Header{"Set-Cookie": {"a=1", "b=2; HttpOnly"}}
	hardenCookies(h, CookieFlags{HTTPOnly: true})
	if h["Set-Cookie"][0] != "a=1; HttpOnly" || h["Set-Cookie"][1] != "b=2; HttpOnly" {
		t.Errorf("hardenCookies: %q", h["Set-Cookie"])
	}
}

func FuzzHardenCookie(f *testing.F) {
	f.Add("sid=abc; Path=/; secure")
	f.Add(";;;=")
	f.Fuzz(func(t *testing.T, v string) {
		all := CookieFlags{Secure: true, HTTPOnly: true, SameSite: "Lax"}
		once := hardenCookie(v, all)
		if twice := hardenCookie(once, all); twice != once {
			t.Fatalf("not idempotent: %q then %q", once, twice)
		}
	})
}
