package apikey

import (
	"net/http"
	"strings"
)

// headerName is the header a key may be sent in instead of Authorization,
// X-API-Key, in the canonical form net/http keeps it in.
const headerName = "X-Api-Key"

// FromRequest returns the API key r carries, in "Authorization: Bearer
// moat_..." (the scheme in any case, RFC 9110 section 11.1) or in
// "X-API-Key: moat_...", with the spaces around it removed. It returns ""
// when r carries none, when what it carries does not start with Prefix
// (a JWT bearer token is left for the JWT authenticator), and when it
// carries two different keys. A value that starts with Prefix but is not a
// well-formed key is returned all the same, so that Verify refuses it with
// a reason rather than the request going on without credentials.
//
// FromRequest only reads r; it is safe for concurrent use and allocates
// nothing.
func FromRequest(r *http.Request) string {
	var found string
	for _, v := range r.Header.Values("Authorization") {
		k := bearer(v)
		if !candidate(k) {
			continue
		}
		if found != "" && found != k {
			return ""
		}
		found = k
	}
	for _, v := range r.Header.Values(headerName) {
		k := strings.Trim(v, " \t")
		if !candidate(k) {
			continue
		}
		if found != "" && found != k {
			return ""
		}
		found = k
	}
	return found
}

// bearer returns the credentials of an Authorization value of the Bearer
// scheme, or "".
func bearer(v string) string {
	v = strings.Trim(v, " \t")
	const scheme = "bearer"
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return ""
	}
	return strings.TrimLeft(v[len(scheme):], " ")
}

// candidate reports whether v starts with Prefix and holds nothing but
// visible ASCII.
func candidate(v string) bool {
	if !strings.HasPrefix(v, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f {
			return false
		}
	}
	return true
}
