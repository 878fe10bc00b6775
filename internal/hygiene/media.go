package hygiene

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// mediaRange is a configured media type, lower case; sub is "*" for a
// wildcard.
type mediaRange struct {
	typ, sub string
}

// parseRange parses a configured "type/subtype" or "type/*".
func parseRange(s string) (mediaRange, error) {
	typ, sub, ok := splitMediaType(s)
	if !ok {
		return mediaRange{}, errors.New(`not a media type of the form "type/subtype" or "type/*", without parameters`)
	}
	if strings.Contains(s, ";") {
		return mediaRange{}, errors.New("parameters are not allowed here")
	}
	if typ == "*" && sub != "*" {
		return mediaRange{}, errors.New(`a wildcard type needs a wildcard subtype`)
	}
	return mediaRange{strings.ToLower(typ), strings.ToLower(sub)}, nil
}

// matches reports whether the media type typ/sub (any case) falls in m.
func (m mediaRange) matches(typ, sub string) bool {
	return strings.EqualFold(m.typ, typ) && (m.sub == "*" || strings.EqualFold(m.sub, sub))
}

// splitMediaType returns the type and subtype of a Content-Type value,
// ignoring its parameters and the whitespace around it, and whether they
// are both RFC 9110 tokens. A "*" is a token, so a client may send
// "*/*" as a type: it matches no configured type.
func splitMediaType(v string) (typ, sub string, ok bool) {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = trimOWS(v)
	typ, sub, ok = strings.Cut(v, "/")
	if !ok || !httpguts.ValidHeaderFieldName(typ) || !httpguts.ValidHeaderFieldName(sub) {
		return "", "", false
	}
	return typ, sub, true
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isJSON reports whether typ/sub is application/json or has the +json
// structured syntax suffix (RFC 6839), as application/problem+json does.
func isJSON(typ, sub string) bool {
	if strings.EqualFold(typ, "application") && strings.EqualFold(sub, "json") {
		return true
	}
	return len(sub) > 5 && strings.EqualFold(sub[len(sub)-5:], "+json")
}

func isForm(typ, sub string) bool {
	return strings.EqualFold(typ, "application") && strings.EqualFold(sub, "x-www-form-urlencoded")
}

func isMultipart(typ string) bool {
	return strings.EqualFold(typ, "multipart")
}

// bodyCap is the cap for a body of type typ/sub ("" for none), -1 for none.
func (c *Checker) bodyCap(typ, sub string) int64 {
	if typ != "" {
		for i := range c.caps {
			if c.caps[i].matches(typ, sub) {
				return c.caps[i].cap
			}
		}
	}
	return c.maxBody
}

// allowedType reports whether the route takes bodies of type typ/sub.
func (c *Checker) allowedType(typ, sub string) bool {
	if len(c.allowed) == 0 {
		return true
	}
	for _, m := range c.allowed {
		if m.matches(typ, sub) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
