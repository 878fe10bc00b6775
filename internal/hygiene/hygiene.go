// Package hygiene refuses requests whose form could make Moat and an
// upstream disagree about what was asked, or that would make either of them
// work without bound: non-canonical paths, ambiguous percent-encoding,
// traversal, NUL bytes, bad or conflicting Host values, oversized URLs,
// header sets, query strings, cookies and bodies, unexpected content types,
// and JSON nested deeper than a parser should have to follow.
//
// A [Checker] is compiled once per route from [Limits]. Its [Checker.Check]
// looks at everything known before the body is read and costs no
// allocation on an ordinary request; its [Checker.Body] wraps the body in a
// reader that enforces the size cap for the request's content type and, for
// JSON and form bodies, the nesting and field limits while the bytes stream
// through unchanged. Every refusal is a [*Refusal]: a status, a rule name for
// the security event, and a public detail that never repeats client input.
//
// # What the server has already done
//
// Go's HTTP/1 server answers 400 before any handler runs for a request line
// with control characters or an invalid percent-escape in the path, for two
// Host fields, for conflicting Content-Length fields and for
// Content-Length together with Transfer-Encoding. Check still tests the
// path's escapes, so that requests built by other means get the same
// answer, but it cannot see a Host field the server consumed: over HTTP/1,
// an absolute-form request target wins over the Host field (RFC 9112,
// section 3.2.2) and the field is dropped. Over HTTP/2 the server keeps a
// Host field sent next to :authority in the header map; Check refuses it
// unless it names the same authority, compared case-insensitively and
// without port defaulting (RFC 9113, section 8.3.1).
//
// # Decisions
//
//   - The decoded path must be canonical even where encoded slashes are
//     allowed, so "%2F%2F" and "..%2F" are refused in every configuration.
//   - "%25" followed by two hex digits in the path (a double encoding such as
//     "%252e") is refused: a backend or framework that decodes twice would
//     see a different path than Moat routed. In the query it is allowed,
//     because URLs carried in parameters legitimately hold it.
//   - The decoded path must be valid UTF-8, which refuses overlong forms
//     such as "%c0%ae" and legacy single-byte encodings alike.
//   - A raw ";" in the query is refused: Go's URL parser and the reverse
//     proxy no longer split on it, but some backends still do, so the two
//     would see different parameters. An encoded "%3B" is fine.
//   - A Content-Type that is not a media type is refused (415) even where
//     any type is allowed, and so is a second Content-Type field (400):
//     the JSON and form limits depend on the type, and an upstream must
//     not read the body as another one. Without a list of allowed types, a
//     body without Content-Type is fine.
//   - Too many cookies is answered like too many fields: 431.
//   - Header bytes are bounded by the listener (http.Server.MaxHeaderBytes);
//     Check bounds the number of fields.
//   - Multipart and URL-encoded form bodies are limited to
//     Limits.MaxFormFields parts or fields, counted while streaming.
//   - The JSON size cap is the body cap for its content type; set one for
//     "application/json" in Limits.BodyCaps to make it differ.
package hygiene

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/moatgw/moat/internal/problem"
)

// Rule names, as recorded in security events.
const (
	RulePath            = "hygiene.path"
	RuleTraversal       = "hygiene.traversal"
	RulePercentEncoding = "hygiene.percent_encoding"
	RuleEncodedSlash    = "hygiene.encoded_slash"
	RuleNUL             = "hygiene.nul"
	RuleUTF8            = "hygiene.utf8"
	RuleHost            = "hygiene.host"
	RuleQuery           = "hygiene.query"
	RuleURLLength       = "hygiene.url_length"
	RuleHeaders         = "hygiene.headers"
	RuleParams          = "hygiene.params"
	RuleCookies         = "hygiene.cookies"
	RuleBodySize        = "hygiene.body_size"
	RuleContentType     = "hygiene.content_type"
	RuleJSONDepth       = "hygiene.json_depth"
	RuleForm            = "hygiene.form"
)

// Refusal is a request turned away. It is also the error a body returned by
// [Checker.Body] fails with, so that a handler or a reverse proxy's error
// handler can find it with errors.As and answer Status instead of a generic
// error.
type Refusal struct {
	Status int    // HTTP status to answer
	Rule   string // one of the Rule constants
	Detail string // public; never contains client input
}

func (r *Refusal) Error() string {
	return r.Rule + ": " + strconv.Itoa(r.Status) + " " + http.StatusText(r.Status)
}

// Problem returns the public error to write with problem.Write. Its internal
// cause is r itself.
func (r *Refusal) Problem() *problem.Error {
	return &problem.Error{Status: r.Status, Detail: r.Detail, Err: r}
}

func refuse(status int, rule, detail string) *Refusal {
	return &Refusal{Status: status, Rule: rule, Detail: detail}
}

// refusal returns a new Refusal for a rule with one status and detail.
func refusal(rule string) *Refusal {
	switch rule {
	case RulePath:
		return refuse(http.StatusBadRequest, rule, "The request path is not in canonical form.")
	case RuleTraversal:
		return refuse(http.StatusBadRequest, rule, "The request path contains a parent-directory segment.")
	case RulePercentEncoding:
		return refuse(http.StatusBadRequest, rule, "The request URL has an invalid or double percent-encoding.")
	case RuleEncodedSlash:
		return refuse(http.StatusBadRequest, rule, "The request path contains an encoded slash.")
	case RuleNUL:
		return refuse(http.StatusBadRequest, rule, "The request URL contains a NUL byte.")
	case RuleUTF8:
		return refuse(http.StatusBadRequest, rule, "The request path is not valid UTF-8.")
	case RuleHost:
		return refuse(http.StatusBadRequest, rule, "The Host header is not a valid host name and port.")
	case RuleQuery:
		return refuse(http.StatusBadRequest, rule, "The query string holds spaces, control characters or semicolons.")
	case RuleURLLength:
		return refuse(http.StatusRequestURITooLong, rule, "The request URL is too long.")
	case RuleHeaders:
		return refuse(http.StatusRequestHeaderFieldsTooLarge, rule, "The request has too many header fields.")
	case RuleParams:
		return refuse(http.StatusBadRequest, rule, "The query string has too many parameters.")
	case RuleCookies:
		return refuse(http.StatusRequestHeaderFieldsTooLarge, rule, "The request has too many cookies.")
	case RuleBodySize:
		return refuse(http.StatusRequestEntityTooLarge, rule, "The request body is too large.")
	case RuleJSONDepth:
		return refuse(http.StatusBadRequest, rule, "The JSON body is nested too deeply.")
	case RuleForm:
		return refuse(http.StatusBadRequest, rule, "The form body has too many fields.")
	}
	return refuse(http.StatusBadRequest, rule, "The request is malformed.")
}

// Default limits. They let every ordinary browser and API request through
// and stop requests that only an attacker or a broken client sends.
const (
	DefaultMaxURLBytes    = 8 << 10  // the request target, path and query
	DefaultMaxHeaders     = 100      // header field lines, Host excluded
	DefaultMaxQueryParams = 256      // "&"-separated query parameters
	DefaultMaxCookies     = 64       // cookies across Cookie fields
	DefaultMaxBodyBytes   = 10 << 20 // bytes of body for a type without a cap of its own
	DefaultMaxJSONDepth   = 64       // nested arrays and objects
	DefaultMaxFormFields  = 1000     // multipart parts or URL-encoded fields in a body
)

// Limits configures a Checker. In every numeric field, 0 selects the
// default and -1 turns the limit off; other negative values are invalid.
type Limits struct {
	MaxURLBytes    int   // length of the request target; refused with 414
	MaxHeaders     int   // header field lines; refused with 431
	MaxQueryParams int   // query parameters; refused with 400
	MaxCookies     int   // cookies; refused with 431
	MaxBodyBytes   int64 // body bytes for types without a cap in BodyCaps; refused with 413

	// BodyCaps overrides MaxBodyBytes by media type, "type/subtype" or
	// "type/*", without parameters and in any case. An exact type wins over
	// a wildcard. A cap is positive, or -1 for none.
	BodyCaps map[string]int64

	// ContentTypes lists the media types ("type/subtype" or "type/*") a body
	// may have; a body of another type, or without a Content-Type, is
	// refused with 415. Empty allows any type.
	ContentTypes []string

	// AllowEncodedSlash lets "%2F" through in the path, for upstreams that
	// keep it apart from "/". The decoded path must still be canonical.
	AllowEncodedSlash bool

	MaxJSONDepth  int // nesting of arrays and objects in a JSON body; refused with 400
	MaxFormFields int // multipart parts or URL-encoded fields in a body; refused with 400
}

// Validate reports every problem with l at once.
func (l Limits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max URL bytes", int64(l.MaxURLBytes)},
		{"max headers", int64(l.MaxHeaders)},
		{"max query params", int64(l.MaxQueryParams)},
		{"max cookies", int64(l.MaxCookies)},
		{"max body bytes", l.MaxBodyBytes},
		{"max JSON depth", int64(l.MaxJSONDepth)},
		{"max form fields", int64(l.MaxFormFields)},
	} {
		if f.v < -1 {
			errs = append(errs, fmt.Errorf("%s is %d: use a positive limit, 0 for the default or -1 for none", f.name, f.v))
		}
	}
	seen := make(map[mediaRange]string)
	for _, t := range sortedKeys(l.BodyCaps) {
		m, err := parseRange(t)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("body cap for %q: %w", t, err))
			continue
		case m.typ == "*":
			errs = append(errs, fmt.Errorf("body cap for %q: use max body bytes for every type", t))
		}
		if prev, dup := seen[m]; dup {
			errs = append(errs, fmt.Errorf("body caps for %q and %q name the same type", prev, t))
		}
		seen[m] = t
		if c := l.BodyCaps[t]; c == 0 || c < -1 {
			errs = append(errs, fmt.Errorf("body cap for %q is %d: use a positive cap or -1 for none", t, c))
		}
	}
	clear(seen)
	for _, t := range l.ContentTypes {
		m, err := parseRange(t)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("content type %q: %w", t, err))
			continue
		case m.typ == "*":
			errs = append(errs, fmt.Errorf("content type %q: leave the list empty to allow every type", t))
		}
		if prev, dup := seen[m]; dup {
			errs = append(errs, fmt.Errorf("content types %q and %q are the same", prev, t))
		}
		seen[m] = t
	}
	return errors.Join(errs...)
}

// Checker applies one route's Limits. It is immutable and safe for
// concurrent use.
type Checker struct {
	maxURL, maxHeaders, maxParams, maxCookies int // -1: no limit
	maxJSONDepth, maxFormFields               int // -1: no limit
	maxBody                                   int64
	caps                                      []typeCap    // exact types first, then wildcards
	allowed                                   []mediaRange // empty: any
	encodedSlash                              bool
}

type typeCap struct {
	mediaRange
	cap int64 // -1: no cap
}

// Compile validates l and builds its Checker, with defaults in place of
// zero values.
func Compile(l Limits) (*Checker, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("request hygiene limits: %w", err)
	}
	c := &Checker{
		maxURL:        pick(l.MaxURLBytes, DefaultMaxURLBytes),
		maxHeaders:    pick(l.MaxHeaders, DefaultMaxHeaders),
		maxParams:     pick(l.MaxQueryParams, DefaultMaxQueryParams),
		maxCookies:    pick(l.MaxCookies, DefaultMaxCookies),
		maxJSONDepth:  pick(l.MaxJSONDepth, DefaultMaxJSONDepth),
		maxFormFields: pick(l.MaxFormFields, DefaultMaxFormFields),
		maxBody:       pick(l.MaxBodyBytes, DefaultMaxBodyBytes),
		encodedSlash:  l.AllowEncodedSlash,
	}
	var wild []typeCap
	for _, t := range sortedKeys(l.BodyCaps) {
		m, _ := parseRange(t)
		tc := typeCap{m, l.BodyCaps[t]}
		if m.sub == "*" {
			wild = append(wild, tc)
		} else {
			c.caps = append(c.caps, tc)
		}
	}
	c.caps = append(c.caps, wild...)
	for _, t := range l.ContentTypes {
		m, _ := parseRange(t)
		c.allowed = append(c.allowed, m)
	}
	return c, nil
}

func pick[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
