package session

import (
	"net/http"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// CookieName is the session cookie. The __Host- prefix makes browsers
// accept it only with Secure, Path=/ and no Domain, so neither a sibling
// subdomain nor a plain-HTTP page can plant or overwrite it
// (draft-ietf-httpbis-rfc6265bis, section 4.1.3.2).
const CookieName = "__Host-moat_session"

// maxCookieBytes bounds how much of the Cookie headers TokenFromRequest
// reads; past it, the request is treated as having no session. Browsers
// send at most a few KiB of cookies per site.
const maxCookieBytes = 32 << 10

// Cookies writes the session cookie with the site's SameSite mode. The
// zero value uses SameSite=Lax.
type Cookies struct {
	// SameSite is http.SameSiteLaxMode (the default) or
	// http.SameSiteStrictMode: with Strict, a browser arriving from a link
	// on another site comes without its session, and signs in again or
	// reloads.
	SameSite http.SameSite
}

func (c Cookies) sameSite() http.SameSite {
	if c.SameSite == http.SameSiteStrictMode {
		return http.SameSiteStrictMode
	}
	return http.SameSiteLaxMode
}

// Set sends the session cookie: Secure, HttpOnly, SameSite as configured,
// Path=/, no Domain, and a Max-Age that ends no later than the session's
// absolute expiry. A session already past its expiry clears the cookie
// instead.
func (c Cookies) Set(w http.ResponseWriter, token string, s *store.Session) {
	age := int(time.Until(s.ExpiresAt) / time.Second)
	if age <= 0 || !wellFormed(token) {
		c.Clear(w)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   age,
		Secure:   true,
		HttpOnly: true,
		SameSite: c.sameSite(),
	})
}

// SetCookie is Cookies{}.Set: the session cookie with SameSite=Lax.
func SetCookie(w http.ResponseWriter, token string, s *store.Session) { Cookies{}.Set(w, token, s) }

// Clear tells the browser to drop the session cookie.
func (c Cookies) Clear(w http.ResponseWriter) { ClearCookie(w) }

// ClearCookie tells the browser to drop the session cookie (Max-Age=0,
// with the attributes the __Host- prefix requires so the browser accepts
// the deletion).
func ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// TokenFromRequest returns the session token the request carries, or ""
// when it carries none, a malformed one, or more than one cookie named
// CookieName: several cookies of that name mean one was planted
// ("cookie tossing"), and the server cannot tell which is genuine. Only
// the exact name CookieName counts. It reads at most maxCookieBytes of
// Cookie headers, allocates nothing, and never panics.
func TokenFromRequest(r *http.Request) string {
	lines := r.Header["Cookie"]
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	if total > maxCookieBytes {
		return ""
	}
	found, token := 0, ""
	for _, l := range lines {
		for len(l) > 0 {
			var pair string
			pair, l = cutByte(l, ';')
			name, value := cutByte(trimOWS(pair), '=')
			if name != CookieName {
				continue
			}
			if found++; found > 1 {
				return ""
			}
			token = value
		}
	}
	if !wellFormed(token) {
		return ""
	}
	return token
}

// cutByte splits s around the first c; after is "" when c is absent.
func cutByte(s string, c byte) (before, after string) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// trimOWS trims spaces and tabs at both ends.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
