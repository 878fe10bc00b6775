package proxy

import (
	"net/http"
	"strings"
)

// CookieFlags are attributes Moat adds to the cookies an upstream sets,
// where the upstream left them out. An attribute the upstream set is kept
// as it is, so a cookie meant for scripts (no HttpOnly) stays readable
// unless HTTPOnly asks otherwise.
type CookieFlags struct {
	Secure   bool   // add Secure: the cookie never travels over plain HTTP
	HTTPOnly bool   // add HttpOnly: scripts cannot read the cookie
	SameSite string // add SameSite with this value (Lax, Strict or None) where it is missing; "" adds none
}

func (f CookieFlags) any() bool { return f.Secure || f.HTTPOnly || f.SameSite != "" }

// hardenCookies adds f's attributes to every Set-Cookie field of h that
// lacks them. It rewrites the fields as text, appending attributes, so
// that attributes it does not know (Partitioned, Priority) survive.
func hardenCookies(h http.Header, f CookieFlags) {
	vv := h["Set-Cookie"]
	if len(vv) == 0 || !f.any() {
		return
	}
	out := make([]string, len(vv))
	for i, v := range vv {
		out[i] = hardenCookie(v, f)
	}
	h["Set-Cookie"] = out
}

func hardenCookie(v string, f CookieFlags) string {
	var secure, httpOnly, sameSite bool
	parts := strings.Split(v, ";")
	for _, a := range parts[1:] {
		name, _, _ := strings.Cut(strings.TrimSpace(a), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "secure":
			secure = true
		case "httponly":
			httpOnly = true
		case "samesite":
			sameSite = true
		}
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(v, "; "))
	if f.Secure && !secure {
		b.WriteString("; Secure")
	}
	if f.HTTPOnly && !httpOnly {
		b.WriteString("; HttpOnly")
	}
	if f.SameSite != "" && !sameSite {
		b.WriteString("; SameSite=" + f.SameSite)
	}
	return b.String()
}
