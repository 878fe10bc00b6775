package hygiene

import (
	"io"
	"net/http"
)

// Body returns r's body wrapped in a reader that enforces the route's
// limits while the bytes pass through unchanged; assign it to r.Body before
// the body is read or proxied. The reader
//
//   - stops at the cap for the request's content type, whether or not the
//     request declared a Content-Length (a chunked body is counted as it
//     arrives), and then fails with a 413 [*Refusal];
//   - for JSON (application/json and any +json type), fails with a 400
//     [*Refusal] on the first "[" or "{" nested deeper than the limit,
//     following strings and escapes byte by byte without buffering or
//     decoding the document;
//   - for application/x-www-form-urlencoded and multipart bodies, fails
//     with a 400 [*Refusal] once there are more fields or parts than the
//     limit.
//
// Once failed, every later Read returns the same error. The bytes before
// the point of failure have been passed on; a handler or proxy error handler
// finds the refusal with errors.As and answers its Status.
//
// Body returns r.Body itself when there is nothing to enforce: no body, or
// a declared length within the cap of a type that is not scanned (the
// server's own reader already stops at Content-Length). A multipart body
// whose boundary is missing or invalid fails on its first Read. Body reads
// only r's header; the reader it returns must not be read concurrently,
// like any body.
func (c *Checker) Body(r *http.Request) io.ReadCloser {
	if r.Body == nil || r.Body == http.NoBody {
		return r.Body
	}
	var typ, sub, ct string
	if cts := r.Header["Content-Type"]; len(cts) == 1 {
		ct = cts[0]
		typ, sub, _ = splitMediaType(ct)
	}
	b := &bodyReader{rc: r.Body, left: c.bodyCap(typ, sub)}
	switch {
	case typ == "":
	case isJSON(typ, sub) && c.maxJSONDepth >= 0:
		b.scanner = scanJSON
		b.json.max = c.maxJSONDepth
	case isForm(typ, sub) && c.maxFormFields >= 0:
		b.scanner = scanForm
		b.form.max = c.maxFormFields
	case isMultipart(typ):
		bd, ok := boundary(ct)
		if !ok {
			b.err = badBoundary()
		} else if c.maxFormFields >= 0 {
			b.scanner = scanParts
			b.parts = newPartCounter(bd, c.maxFormFields)
		}
	}
	if b.err == nil && b.scanner == scanNone &&
		(b.left < 0 || 0 <= r.ContentLength && r.ContentLength <= b.left) {
		return r.Body
	}
	return b
}

// Scanners a bodyReader may run.
const (
	scanNone = iota
	scanJSON
	scanForm
	scanParts
)

// bodyReader enforces a size cap and at most one scanner.
type bodyReader struct {
	rc      io.ReadCloser
	left    int64 // bytes still allowed; -1 for no cap
	err     error // sticky
	scanner int
	json    jsonDepth
	form    formFields
	parts   *partCounter
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left >= 0 && int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more tells a body over the cap
	}
	n, err := b.rc.Read(p)
	if b.left >= 0 {
		if int64(n) > b.left {
			n = int(b.left)
			err = refusal(RuleBodySize)
		}
		b.left -= int64(n)
	}
	var ref *Refusal
	var ok int
	switch b.scanner {
	case scanJSON:
		ok, ref = b.json.scan(p[:n])
	case scanForm:
		ok, ref = b.form.scan(p[:n])
	case scanParts:
		ok, ref = b.parts.scan(p[:n])
	}
	if ref != nil {
		n, err = ok, ref
	}
	if _, refused := err.(*Refusal); refused {
		b.err = err
	}
	return n, err
}

func (b *bodyReader) Close() error {
	return b.rc.Close()
}

// jsonDepth follows the nesting of a JSON text. It knows strings and their
// escapes and nothing else of the grammar: it does not validate, so invalid
// JSON is left to the parser that reads it, but no byte sequence can hide a
// "[" or "{" from it that a parser would count.
type jsonDepth struct {
	depth, max int
	inString   bool
	escaped    bool
}

// scan reads p and returns the number of bytes before the first one that
// opens a value too deep, with its refusal, or len(p), nil. Runs of bytes
// that change nothing are skipped in tight loops.
func (j *jsonDepth) scan(p []byte) (int, *Refusal) {
	for i := 0; i < len(p); i++ {
		if j.inString {
			if j.escaped {
				j.escaped = false
				continue
			}
			for i < len(p) && p[i] != '"' && p[i] != '\\' {
				i++
			}
			if i == len(p) {
				break
			}
			j.escaped = p[i] == '\\'
			j.inString = j.escaped
			continue
		}
		for i < len(p) && !jsonStructural[p[i]] {
			i++
		}
		if i == len(p) {
			break
		}
		switch p[i] {
		case '"':
			j.inString = true
		case '[', '{':
			if j.depth == j.max {
				return i, refusal(RuleJSONDepth)
			}
			j.depth++
		default: // ']', '}'
			if j.depth > 0 {
				j.depth--
			}
		}
	}
	return len(p), nil
}

// jsonStructural marks the bytes outside strings that jsonDepth acts on.
// It is never written.
var jsonStructural = [256]bool{'"': true, '[': true, '{': true, ']': true, '}': true}

// formFields counts the non-empty "&"-separated fields of a URL-encoded
// form, as url.ParseQuery would see them.
type formFields struct {
	n, max  int
	inField bool
}

func (f *formFields) scan(p []byte) (int, *Refusal) {
	for i, c := range p {
		if c == '&' {
			f.inField = false
			continue
		}
		if !f.inField {
			f.inField = true
			if f.n == f.max {
				return i, refusal(RuleForm)
			}
			f.n++
		}
	}
	return len(p), nil
}

// partCounter counts multipart delimiters ("--boundary" at the start of a
// line) with a Knuth-Morris-Pratt matcher, so a delimiter split across
// reads is still found. A body of n parts has n+1 delimiters, the last one
// closing it.
type partCounter struct {
	delim     []byte // CR LF "--" boundary
	next      []uint8
	state     int
	seen, max int
}

func newPartCounter(boundary string, limit int) *partCounter {
	d := make([]byte, 0, 4+len(boundary))
	d = append(d, "\r\n--"...)
	d = append(d, boundary...)
	next := make([]uint8, len(d))
	for i, k := 1, 0; i < len(d); i++ {
		for k > 0 && d[i] != d[k] {
			k = int(next[k-1])
		}
		if d[i] == d[k] {
			k++
		}
		next[i] = uint8(k)
	}
	// The first delimiter may open the body without a line break before
	// it: start as if one had just been read.
	return &partCounter{delim: d, next: next, state: 2, max: limit}
}

func (m *partCounter) scan(p []byte) (int, *Refusal) {
	for i, c := range p {
		for m.state > 0 && m.delim[m.state] != c {
			m.state = int(m.next[m.state-1])
		}
		if m.delim[m.state] == c {
			m.state++
		}
		if m.state == len(m.delim) {
			m.state = int(m.next[m.state-1])
			if m.seen == m.max+1 {
				return max(0, i+1-len(m.delim)), refusal(RuleForm)
			}
			m.seen++
		}
	}
	return len(p), nil
}
