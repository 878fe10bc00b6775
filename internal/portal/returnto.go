package portal

import (
	"net/url"
	"path"
	"strings"
)

// maxReturnBytes bounds a return address.
const maxReturnBytes = 2048

// SafeReturn returns raw if it is a safe place to send a browser after
// login, without its fragment, and "/" otherwise. It is safe for concurrent
// use.
//
// Safe means a path on this site that cannot be read as anything else by a
// browser or by code further on: at most 2048 bytes of printable ASCII, a
// path starting with exactly one "/" and no backslash, no scheme, host or
// user, no malformed or control-character percent escapes, and a decoded
// path that is already clean (no "//", "." or ".." segments, no encoded
// slash tricks such as "/%2F%2Fevil.example"). Logging out is never a
// return address, so a login cannot end by ending itself. The query is
// kept.
//
// Browsers drop tabs and line breaks inside URLs and treat "\" as "/", which
// turns "/\t/evil.example" or "/\evil.example" into "//evil.example", a
// different host: hence the strict byte checks before any parsing.
func SafeReturn(raw string) string {
	if s, ok := safeReturn(raw); ok {
		return s
	}
	return "/"
}

func safeReturn(raw string) (string, bool) {
	if len(raw) == 0 || len(raw) > maxReturnBytes || raw[0] != '/' {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	if strings.HasPrefix(raw, "//") || !escapesSafe(raw) {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return "", false
	}
	p := u.Path
	if p == "" || p[0] != '/' || strings.ContainsRune(p, '\\') {
		return "", false
	}
	// A clean path has no empty, "." or ".." segment. A trailing slash is
	// allowed, as in "/docs/".
	if c := path.Clean(p); strings.Contains(p, "//") || c != p && c+"/" != p {
		return "", false
	}
	if lp := strings.ToLower(p); lp == PathLogout || strings.HasPrefix(lp, PathLogout+"/") {
		return "", false
	}
	return raw, true
}

// escapesSafe reports whether every percent escape in s is well formed and
// decodes to a printable character or a byte of a multi-byte one.
func escapesSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		b := unhex(s[i+1])<<4 | unhex(s[i+2])
		if b < ' ' || b == 0x7f {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
