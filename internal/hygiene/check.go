package hygiene

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Check reports whether r may go on as far as can be told before its body
// is read: nil when it may, the first rule it breaks otherwise. It reads
// only the request line and the header, never the body, and allocates
// nothing unless the request is refused or has a multipart body.
//
// Check fails closed: a value it cannot interpret is refused, never passed.
// It is safe for concurrent use.
func (c *Checker) Check(r *http.Request) *Refusal {
	if c.maxURL >= 0 && urlLength(r) > c.maxURL {
		return refusal(RuleURLLength)
	}
	host, cookies, ok := c.scanHeader(r.Header)
	if !ok {
		return refusal(RuleHeaders)
	}
	if ref := checkHost(r.Host, host); ref != nil {
		return ref
	}
	if ref := c.checkPath(r.URL); ref != nil {
		return ref
	}
	if ref := c.checkQuery(r.URL.RawQuery); ref != nil {
		return ref
	}
	if c.maxCookies >= 0 && countCookies(cookies) > c.maxCookies {
		return refusal(RuleCookies)
	}
	return c.checkBody(r)
}

// urlLength is the length of the request target as the client sent it.
func urlLength(r *http.Request) int {
	if r.RequestURI != "" {
		return len(r.RequestURI)
	}
	n := len(r.URL.Path)
	if r.URL.RawPath != "" {
		n = len(r.URL.RawPath)
	}
	if r.URL.RawQuery != "" {
		n += 1 + len(r.URL.RawQuery)
	}
	return n
}

// scanHeader counts h's field lines against the limit and picks out the
// Host and Cookie fields on the way, which saves two lookups.
func (c *Checker) scanHeader(h http.Header) (host, cookies []string, ok bool) {
	if c.maxHeaders < 0 {
		return h["Host"], h["Cookie"], true
	}
	if len(h) > c.maxHeaders {
		return nil, nil, false
	}
	n := 0
	for k, vv := range h {
		n += len(vv)
		if n > c.maxHeaders {
			return nil, nil, false
		}
		switch k {
		case "Host":
			host = vv
		case "Cookie":
			cookies = vv
		}
	}
	return host, cookies, true
}

// checkHost refuses an authority that is not a host name or IP literal
// with an optional port, and a Host field that the server left in the
// header (HTTP/2 keeps one sent next to :authority) naming another
// authority (RFC 9113, section 8.3.1). hostFields is nil when there is none.
func checkHost(authority string, hostFields []string) *Refusal {
	if !validHost(authority) {
		return refusal(RuleHost)
	}
	if hostFields != nil && (len(hostFields) != 1 || !strings.EqualFold(hostFields[0], authority)) {
		return refuse(http.StatusBadRequest, RuleHost, "The Host header does not match the request's authority.")
	}
	return nil
}

// validHost reports whether h is empty or a host name or IP literal with an
// optional numeric port, so that nothing else rides into X-Forwarded-Host.
func validHost(h string) bool {
	if h == "" {
		return true
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		for i := 1; i < end; i++ {
			if c := h[i]; !(isHex(c) || c == ':' || c == '.') {
				return false
			}
		}
		h = h[end+1:]
		if h == "" {
			return true
		}
		return h[0] == ':' && validPort(h[1:])
	}
	name, port, hasPort := strings.Cut(h, ":")
	if name == "" || len(name) > 253 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return !hasPort || validPort(port)
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// checkPath refuses a path that the router and an upstream could read
// differently. The raw form (RawPath, set only when it differs from the
// default encoding of Path) is checked for its escapes; the decoded form for
// everything else.
func (c *Checker) checkPath(u *url.URL) *Refusal {
	raw := u.RawPath
	for i := 0; i < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
			return refusal(RulePercentEncoding)
		}
		if !c.encodedSlash && raw[i+1] == '2' && raw[i+2]|0x20 == 'f' {
			return refusal(RuleEncodedSlash)
		}
		i += 2
	}
	if rule := pathRule(u.Path); rule != "" {
		// Non-canonical paths could make the route Moat matched differ from
		// the resource the upstream serves.
		return refusal(rule)
	}
	return nil
}

// pathRule returns the rule a decoded path breaks, "" for none, in one
// pass. In order of precedence:
//
//   - RuleNUL: a NUL byte;
//   - RuleTraversal: a ".." segment, with "/" or "\" as the separator
//     (Windows upstreams take both);
//   - RulePercentEncoding: a percent-escape left after decoding, which a
//     second decoding would turn into another character;
//   - RuleUTF8: bytes that are not UTF-8, overlong forms included;
//   - RulePath: not absolute, or with "." or empty segments, ";" path
//     parameters or backslashes. Browsers and HTTP clients normalise
//     paths before sending, so only crafted requests break this.
func pathRule(p string) string {
	nul, dotdot, escape, high := false, false, false, false
	unclean := p == "" || p[0] != '/'
	start := 0 // of the current segment
	for i := 0; i <= len(p); i++ {
		c := byte('/')
		if i < len(p) {
			c = p[i]
		}
		switch c {
		case '/', '\\':
			switch seg := p[start:i]; {
			case seg == "..":
				dotdot = true
			case seg == ".", seg == "" && i > 0 && i < len(p):
				unclean = true
			}
			unclean = unclean || c == '\\'
			start = i + 1
		case 0:
			nul = true
		case ';':
			unclean = true
		case '%':
			escape = escape || i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2])
		default:
			high = high || c >= utf8.RuneSelf
		}
	}
	switch {
	case nul:
		return RuleNUL
	case dotdot:
		return RuleTraversal
	case escape:
		return RulePercentEncoding
	case high && !utf8.ValidString(p):
		return RuleUTF8
	case unclean:
		return RulePath
	}
	return ""
}

// checkQuery refuses a raw query with spaces, control characters, raw
// semicolons, NULs or invalid escapes, or with too many parameters. It
// counts parameters as url.ParseQuery does: "&"-separated, empty ones
// skipped.
func (c *Checker) checkQuery(q string) *Refusal {
	params, inParam := 0, false
	for i := 0; i < len(q); i++ {
		switch ch := q[i]; {
		case ch == 0:
			return refusal(RuleNUL)
		case ch <= ' ' || ch == 0x7f || ch == ';':
			return refusal(RuleQuery)
		case ch == '&':
			inParam = false
			continue
		case ch == '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return refusal(RulePercentEncoding)
			}
			if q[i+1] == '0' && q[i+2] == '0' {
				return refusal(RuleNUL)
			}
			i += 2
		}
		if !inParam {
			inParam = true
			params++
		}
	}
	if c.maxParams >= 0 && params > c.maxParams {
		return refusal(RuleParams)
	}
	return nil
}

// countCookies counts the non-empty ";"-separated pairs in Cookie fields.
func countCookies(fields []string) int {
	n := 0
	for _, v := range fields {
		inPair := false
		for i := 0; i < len(v); i++ {
			switch v[i] {
			case ';':
				inPair = false
			case ' ', '\t':
			default:
				if !inPair {
					inPair = true
					n++
				}
			}
		}
	}
	return n
}

// hasBody reports whether r carries a body, possibly an empty chunked one.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// checkBody decides what the header says about the body: its type and,
// when Content-Length gives it, its size.
func (c *Checker) checkBody(r *http.Request) *Refusal {
	if !hasBody(r) {
		return nil
	}
	var typ, sub string
	switch cts := r.Header["Content-Type"]; {
	case len(cts) > 1:
		return refuse(http.StatusBadRequest, RuleContentType, "The request has more than one Content-Type header.")
	case len(cts) == 1 && trimOWS(cts[0]) != "":
		var ok bool
		if typ, sub, ok = splitMediaType(cts[0]); !ok {
			return refuse(http.StatusUnsupportedMediaType, RuleContentType, "The Content-Type header is not a valid media type.")
		}
		if !c.allowedType(typ, sub) {
			return refuse(http.StatusUnsupportedMediaType, RuleContentType, "The request body's content type is not accepted here.")
		}
		if isMultipart(typ) {
			if _, ok := boundary(cts[0]); !ok {
				return badBoundary()
			}
		}
	case len(c.allowed) > 0:
		return refuse(http.StatusUnsupportedMediaType, RuleContentType, "The request body has no Content-Type.")
	}
	if limit := c.bodyCap(typ, sub); limit >= 0 && r.ContentLength > limit {
		return refusal(RuleBodySize)
	}
	return nil
}

func badBoundary() *Refusal {
	return refuse(http.StatusBadRequest, RuleContentType, "The multipart body has no valid boundary.")
}

// boundary returns the boundary parameter of a multipart Content-Type when
// it is valid under RFC 2046, section 5.1.1: 1 to 70 characters from a
// small set, not ending in a space.
func boundary(contentType string) (string, bool) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", false
	}
	b := params["boundary"]
	if b == "" || len(b) > 70 || b[len(b)-1] == ' ' {
		return "", false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("'()+_,-./:=? ", c) >= 0) {
			return "", false
		}
	}
	return b, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
