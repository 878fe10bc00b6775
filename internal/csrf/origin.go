package csrf

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// normalizeOrigin validates a configured origin, scheme://host[:port] with
// scheme http or https, and returns it in the form browsers send: lower
// case, without the scheme's default port.
func normalizeOrigin(o string) (string, error) {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", clip(o))
	}
	scheme = strings.ToLower(scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("%q: scheme must be https or http", clip(o))
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@\\ \t\r\n*") {
		return "", fmt.Errorf("%q: want scheme://host[:port], with no path, query, user or wildcard", clip(o))
	}
	host, ok := normalizeHost(rest, scheme)
	if !ok {
		return "", errors.New(strconv.Quote(clip(o)) + ": bad host or port")
	}
	return scheme + "://" + host, nil
}

// ownOrigin returns the origin of a request to host over https, in the
// form browsers send.
func ownOrigin(host string) (string, bool) {
	h, ok := normalizeHost(host, "https")
	if !ok {
		return "", false
	}
	return "https://" + h, true
}

// normalizeHost lower-cases host[:port] and drops the scheme's default
// port. It accepts DNS names, IPv4 addresses and bracketed IPv6 addresses,
// and ports 1 to 65535 without leading zeros.
func normalizeHost(hostport, scheme string) (string, bool) {
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", false
		}
		host, port = hostport[:end+1], hostport[end+1:]
		if port != "" && port[0] != ':' {
			return "", false
		}
		if len(host) < 4 {
			return "", false
		}
		for i := 1; i < len(host)-1; i++ {
			c := host[i]
			if !(isHex(c) || c == ':' || c == '.') {
				return "", false
			}
		}
	} else {
		if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i:]
		}
		if host == "" {
			return "", false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", false
			}
		}
	}
	if port != "" {
		digits := port[1:]
		n, err := strconv.Atoi(digits)
		if err != nil || n < 1 || n > 65535 || digits[0] == '0' || digits[0] == '+' {
			return "", false
		}
		if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
			port = ""
		}
	}
	return strings.ToLower(host) + port, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// actionTarget is where a form's action, or a base element's href, sends a
// browser, as far as InjectForms needs to know.
type actionTarget int

const (
	targetForeign  actionTarget = iota // another origin, or one that cannot be told with certainty
	targetRelative                     // resolved against the document's base URL
	targetSame                         // an absolute URL of the page's own origin
)

// classifyURL decides where a URL attribute value points, relative to a
// page of origin page (as from ownOrigin). It follows the WHATWG URL parser
// where it matters (leading and trailing C0 controls and spaces dropped,
// tabs and newlines removed, backslashes as slashes in http(s) URLs) and
// answers targetForeign whenever it is unsure: a wrong "foreign" only means
// a form without a token, a wrong "same" leaks the token.
func classifyURL(raw, page string) actionTarget {
	s := strings.TrimFunc(raw, func(r rune) bool { return r <= ' ' })
	if strings.ContainsAny(s, "\t\n\r") {
		s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	}
	s = strings.ReplaceAll(s, `\`, "/")
	if strings.HasPrefix(s, "//") {
		return sameAuthority("https:"+s, page)
	}
	if i := strings.IndexAny(s, ":/?#"); i >= 0 && s[i] == ':' {
		// An absolute URL, or something a parser could take for one.
		if !strings.EqualFold(s[:i], "https") || !strings.HasPrefix(s[i+1:], "//") {
			return targetForeign
		}
		return sameAuthority("https:"+s[i+1:], page)
	}
	return targetRelative
}

// sameAuthority reports targetSame when the absolute https URL u has the
// origin page and no user information, targetForeign otherwise.
func sameAuthority(u, page string) actionTarget {
	pu, err := url.Parse(u)
	if err != nil || pu.User != nil || pu.Host == "" || pu.Opaque != "" {
		return targetForeign
	}
	if o, ok := ownOrigin(pu.Host); ok && o == page {
		return targetSame
	}
	return targetForeign
}
