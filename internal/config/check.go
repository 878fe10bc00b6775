package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// routeNamePattern is the form of a route name, shared with the schema.
const routeNamePattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

var routeName = regexp.MustCompile(routeNamePattern)

// checkDNSName accepts a lower-case DNS name of letters, digits and
// hyphens, without a trailing dot.
func checkDNSName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return errors.New("name longer than 253 characters")
	}
	if strings.ToLower(s) != s {
		return errors.New("must be lower case")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty label (two dots in a row, or a dot at either end)")
		}
		if len(label) > 63 {
			return errors.New("label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("a label must not start or end with a hyphen")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("character %q is not allowed in a host name", r)
			}
		}
	}
	return nil
}

// checkHost accepts an IP address or a DNS name and, when wildcard is set,
// "*." followed by a DNS name.
func checkHost(s string, wildcard bool) error {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return errors.New("an IP address here must not have a zone")
		}
		return nil
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok && wildcard {
		if strings.Contains(rest, "*") {
			return errors.New("only one leading wildcard label is allowed, as in *.example.com")
		}
		return checkDNSName(rest)
	}
	if strings.Contains(s, "*") {
		if wildcard {
			return errors.New("a wildcard must be the whole first label, as in *.example.com")
		}
		return errors.New("wildcards are not allowed here")
	}
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		return errors.New("want a host name or an IP address, without brackets or port")
	}
	return checkDNSName(s)
}

// checkAddr accepts a listen address host:port, where host is empty, an IP
// address or a DNS name and port a number.
func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`want host:port such as ":8443" or "127.0.0.1:9090"`)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if err := checkHost(host, false); err != nil {
		return fmt.Errorf("host %q: %w", host, err)
	}
	return nil
}

// isLoopback reports whether the listen address s is on a loopback
// interface only.
func isLoopback(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// checkURL accepts an absolute URL with one of the given schemes and a
// host, and without credentials, query or fragment. Its messages never
// quote the URL, which might carry a password.
func checkURL(raw string, schemes ...string) error {
	want := "want an absolute " + strings.Join(schemes, " or ") + " URL such as " + schemes[len(schemes)-1] + "://example.com"
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return errors.New(want)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("scheme %q: %s", u.Scheme, want)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return errors.New("the URL has no host")
	}
	if u.User != nil {
		return errors.New("the URL must not carry credentials (user:password@); use a secret reference where a credential is needed")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return errors.New("the URL must not have a query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("the URL must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	return nil
}

// checkRoutePath accepts a path prefix that needs no normalisation.
func checkRoutePath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New(`must start with "/"`)
	case strings.Contains(p, ".."):
		return errors.New(`must not contain ".."`)
	case strings.Contains(p, "//"):
		return errors.New(`must not contain "//"`)
	case strings.Contains(p, "%"):
		return errors.New(`must not contain "%": write the path decoded`)
	case strings.ContainsAny(p, "?#"):
		return errors.New("must not contain a query or fragment")
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2),
// the form of a header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value: no
// control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkPin accepts a base64 SHA-256 hash.
func checkPin(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return errors.New("not valid base64: want the base64 SHA-256 hash of a SubjectPublicKeyInfo")
	}
	if len(b) != 32 {
		return fmt.Errorf("decodes to %d bytes: want the 32 bytes of a SHA-256 hash", len(b))
	}
	return nil
}

// checkProxy accepts a CIDR or a single IP address.
func checkProxy(s string) error {
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	return fmt.Errorf("want a CIDR such as 10.0.0.0/8 or an IP address, got %q", clip(s, 60))
}

// oneOf checks that s is one of the allowed values.
func oneOf(what, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	msg := fmt.Sprintf("unknown %s %q: want %s", what, clip(s, 40), strings.Join(quoted, ", "))
	if best := closest(s, allowed); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return errors.New(msg)
}
