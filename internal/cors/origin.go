package cors

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// pattern is an allowed origin with a wildcard label: an origin matches
// when it is prefix, one DNS label and suffix, in that order and nothing
// else.
type pattern struct {
	prefix string // "https://"
	suffix string // ".example.com" or ".example.com:8443"
}

// match reports whether origin is the pattern with its wildcard replaced
// by one non-empty DNS label of lower-case letters, digits and hyphens.
func (pt pattern) match(origin string) bool {
	if len(origin) <= len(pt.prefix)+len(pt.suffix) ||
		!strings.HasPrefix(origin, pt.prefix) || !strings.HasSuffix(origin, pt.suffix) {
		return false
	}
	return isLabel(origin[len(pt.prefix) : len(origin)-len(pt.suffix)])
}

// isLabel reports whether s is one DNS label as browsers serialize it in
// an origin: 1 to 63 lower-case letters, digits and hyphens.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// parseOrigin validates an exact origin, scheme://host[:port], and returns
// it as browsers serialize it: lower case, without the default port of
// http or https.
func parseOrigin(o string) (string, error) {
	scheme, host, port, err := splitOrigin(o)
	if err != nil {
		return "", err
	}
	if !isHostname(host) && !isIPv6Literal(host) {
		return "", fmt.Errorf("%q: host must be a DNS name, an IPv4 address or a bracketed IPv6 address", clip(o))
	}
	return scheme + "://" + host + port, nil
}

// parsePattern validates a pattern, scheme://*.domain[:port], where domain
// has at least two labels, so that "https://*.com" is refused.
func parsePattern(o string) (pattern, error) {
	scheme, host, port, err := splitOrigin(o)
	if err != nil {
		return pattern{}, err
	}
	rest, ok := strings.CutPrefix(host, "*.")
	if !ok || strings.Contains(rest, "*") {
		return pattern{}, fmt.Errorf("%q: a wildcard must be the whole leftmost label, as in https://*.example.com, and the only one", clip(o))
	}
	if !isHostname(rest) || strings.Count(rest, ".") < 1 || isIPv4(rest) {
		return pattern{}, fmt.Errorf("%q: the wildcard must be followed by a domain of at least two labels", clip(o))
	}
	return pattern{prefix: scheme + "://", suffix: "." + rest + port}, nil
}

// splitOrigin splits scheme://host[:port], lower-cased, and returns the
// port with its colon, or "" for none or the scheme's default.
func splitOrigin(o string) (scheme, host, port string, err error) {
	o = strings.ToLower(o)
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || !isScheme(scheme) {
		return "", "", "", fmt.Errorf("%q is not an origin (scheme://host[:port])", clip(o))
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@\\ \t\r\n%") {
		return "", "", "", fmt.Errorf("%q: want scheme://host[:port], with no path, query or user", clip(o))
	}
	host = rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i:]
		n, err := strconv.Atoi(port[1:])
		if err != nil || n < 1 || n > 65535 || port[1] == '0' || port[1] == '+' {
			return "", "", "", errors.New(strconv.Quote(clip(o)) + ": bad port")
		}
		if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
			port = ""
		}
	}
	if host == "" {
		return "", "", "", fmt.Errorf("%q: no host", clip(o))
	}
	return scheme, host, port, nil
}

func isScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isHostname accepts lower-case DNS names (and so IPv4 addresses): labels
// of letters, digits and hyphens separated by single dots.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isLabel(label) {
			return false
		}
	}
	return true
}

func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 255 {
			return false
		}
	}
	return true
}

func isIPv6Literal(s string) bool {
	if len(s) < 4 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == ':' || c == '.') {
			return false
		}
	}
	return true
}
