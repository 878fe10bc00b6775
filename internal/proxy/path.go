package proxy

import (
	"net/url"
	"strings"
)

// stripPrefix removes prefix from path when it ends at a segment boundary,
// keeping the leading slash of what remains: with prefix /api, /api/users
// gives /users and /api gives /. A path that does not start with the prefix
// is returned unchanged with ok false.
func stripPrefix(path, prefix string) (rest string, ok bool) {
	if prefix == "" || !strings.HasPrefix(path, prefix) {
		return path, false
	}
	rest = path[len(prefix):]
	if rest == "" {
		return "/", true
	}
	if rest[0] != '/' {
		return path, false
	}
	return rest, true
}

// stripRaw removes from the escaped path raw the bytes that decode to the
// first n bytes of its decoded form. It fails when the cut does not fall on
// a literal slash, as when the boundary is an encoded %2F.
func stripRaw(raw string, n int) (string, bool) {
	i := 0
	for d := 0; d < n; d++ {
		if i >= len(raw) {
			return "", false
		}
		if raw[i] == '%' {
			i += 3
		} else {
			i++
		}
	}
	if i > len(raw) {
		return "", false
	}
	rest := raw[i:]
	if rest == "" {
		return "/", true
	}
	if rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// upstreamPath returns the path and escaped path (RawPath, "" when the
// default encoding of the path is right) to request from upstream up, after
// removing strip from the request URL u.
func upstreamPath(u *url.URL, strip string, up *upstream) (path, raw string) {
	path = u.Path
	if u.RawPath != "" {
		raw = u.EscapedPath()
	}
	if strip != "" {
		if rest, ok := stripPrefix(path, strip); ok {
			if raw != "" {
				if rawRest, ok := stripRaw(raw, len(strip)); ok {
					raw = rawRest
				} else {
					raw = ""
				}
			}
			path = rest
		}
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
		if raw != "" {
			raw = "/" + raw
		}
	}
	if up.basePath != "" {
		if raw == "" && up.baseRawNeeded {
			raw = (&url.URL{Path: path}).EscapedPath()
		}
		if raw != "" {
			raw = up.baseEscaped + raw
		}
		path = up.basePath + path
	}
	return path, raw
}
