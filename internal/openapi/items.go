package openapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/moatgw/moat/internal/problem"
)

// collector gathers the violations of one request as problem items. The
// messages are built here from the structure of kin-openapi's errors and
// from the document, never from an error's text, which may quote the
// offending value.
type collector struct {
	list    []problem.Item
	dropped int
}

func (c *collector) add(it problem.Item) {
	if len(c.list) >= maxItems {
		c.dropped++
		return
	}
	c.list = append(c.list, it)
}

// rank orders the places of violations as a request is read.
func rank(in string) int {
	switch in {
	case "path":
		return 0
	case "query":
		return 1
	case "header":
		return 2
	case "cookie":
		return 3
	}
	return 4
}

// problem returns the 400 listing every violation, in the order path,
// query, header, cookie, body.
func (c *collector) problem() *problem.Error {
	slices.SortStableFunc(c.list, func(a, b problem.Item) int { return rank(a.In) - rank(b.In) })
	n := len(c.list) + c.dropped
	detail := "The request does not match the API description: 1 violation."
	if n > 1 {
		detail = fmt.Sprintf("The request does not match the API description: %d violations.", n)
	}
	if c.dropped > 0 {
		detail += fmt.Sprintf(" The first %d are listed.", len(c.list))
	}
	return &problem.Error{Status: http.StatusBadRequest, Detail: detail, Errors: c.list}
}

// request adds the violations in an error of openapi3filter's request
// validation.
func (c *collector) request(err error) {
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, x := range e {
			c.request(x)
		}
	case *openapi3filter.RequestError:
		where := problem.Item{In: "body"}
		if p := e.Parameter; p != nil {
			where = problem.Item{In: p.In, Name: p.Name}
		}
		c.cause(where, e.Err)
	default:
		c.add(problem.Item{In: "body", Detail: "is not valid"})
	}
}

// cause adds the violations of the cause of a RequestError about where.
func (c *collector) cause(where problem.Item, err error) {
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, x := range e {
			c.cause(where, x)
		}
		return
	case *openapi3.SchemaError:
		c.schemaError(where, e)
		return
	case *openapi3filter.ParseError:
		it := where
		it.Pointer = pointer(parsePath(e))
		it.Detail = parseDetail(e)
		c.add(it)
		return
	}
	it := where
	switch {
	case errors.Is(err, openapi3filter.ErrInvalidRequired):
		it.Detail = "is required"
		if where.In == "body" {
			it.Detail = "a request body is required"
		}
	case errors.Is(err, openapi3filter.ErrInvalidEmptyValue):
		it.Detail = "must not be empty"
	case where.In == "body":
		it.Detail = "could not be decoded as the documented media type"
	default:
		it.Detail = "could not be decoded as the documented style"
	}
	c.add(it)
}

func parsePath(e *openapi3filter.ParseError) []string {
	var toks []string
	for _, p := range e.Path() {
		switch x := p.(type) {
		case string:
			toks = append(toks, x)
		case int:
			toks = append(toks, strconv.Itoa(x))
		}
	}
	return toks
}

// parseDetail describes a value that could not be parsed, from the type
// kin-openapi names ("an invalid integer"), which is the schema's.
func parseDetail(e *openapi3filter.ParseError) string {
	for cur := e; cur != nil; {
		if typ, ok := strings.CutPrefix(cur.Reason, "an invalid "); ok {
			switch typ {
			case "integer":
				return "must be an integer"
			case "number":
				return "must be a number"
			case "boolean":
				return "must be a boolean"
			}
		}
		next, ok := cur.Cause.(*openapi3filter.ParseError)
		if !ok {
			break
		}
		cur = next
	}
	return "could not be parsed as the documented type"
}

// schemaError adds the violation a SchemaError describes: where, the
// pointer to the failing value, and a message from the failing keyword.
func (c *collector) schemaError(where problem.Item, e *openapi3.SchemaError) {
	switch e.SchemaField {
	case "oneOf", "anyOf", "not":
		// Which alternative the value was meant for is unknown: the
		// alternatives' own errors would say more than is true.
	default:
		// An error that groups others (allOf, whose members must all match,
		// or a JSON Schema 2020-12 error with causes) is listed as those
		// others, which have their full pointer.
		for u := e.Origin; u != nil; u = errors.Unwrap(u) {
			if me, ok := u.(openapi3.MultiError); ok && len(me) > 0 {
				c.cause(where, me)
				return
			}
		}
	}
	toks := e.JSONPointer()
	detail := schemaDetail(e)
	if rest, ok := strings.CutPrefix(e.Reason, "property "); ok && e.SchemaField == "properties" && strings.HasSuffix(rest, " is unsupported") {
		// An undocumented property: kin-openapi points at the object and
		// names the property in its reason, quoted.
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			if name, err := strconv.Unquote(q); err == nil {
				toks = append(toks, name)
			}
		}
		detail = "is not a documented property"
	}
	it := where
	it.Pointer = pointer(toks)
	it.Detail = detail
	c.add(it)
}

// schemaDetail is the message for a failed schema keyword, made from the
// schema, which is the document's, never from the value.
func schemaDetail(e *openapi3.SchemaError) string {
	s := e.Schema
	if s == nil {
		s = &openapi3.Schema{}
	}
	switch e.SchemaField {
	case "type":
		return "must be " + typeWords(s)
	case "enum":
		return "must be one of " + enumWords(s.Enum)
	case "const":
		return "must be the documented constant"
	case "format":
		return "must be a valid " + clip(s.Format, 40)
	case "pattern":
		return "must match the pattern " + clip(s.Pattern, 120)
	case "minLength":
		return fmt.Sprintf("must be at least %d characters long", s.MinLength)
	case "maxLength":
		if s.MaxLength != nil {
			return fmt.Sprintf("must be at most %d characters long", *s.MaxLength)
		}
	case "minimum":
		if s.Min != nil {
			return "must be at least " + num(*s.Min)
		}
	case "maximum":
		if s.Max != nil {
			return "must be at most " + num(*s.Max)
		}
	case "exclusiveMinimum":
		if b := s.ExclusiveMin.Value; b != nil {
			return "must be greater than " + num(*b)
		}
		if s.Min != nil {
			return "must be greater than " + num(*s.Min)
		}
	case "exclusiveMaximum":
		if b := s.ExclusiveMax.Value; b != nil {
			return "must be less than " + num(*b)
		}
		if s.Max != nil {
			return "must be less than " + num(*s.Max)
		}
	case "multipleOf":
		if s.MultipleOf != nil {
			return "must be a multiple of " + num(*s.MultipleOf)
		}
	case "minItems":
		return fmt.Sprintf("must have at least %d items", s.MinItems)
	case "maxItems":
		if s.MaxItems != nil {
			return fmt.Sprintf("must have at most %d items", *s.MaxItems)
		}
	case "uniqueItems":
		return "must not repeat an item"
	case "minProperties":
		return fmt.Sprintf("must have at least %d properties", s.MinProps)
	case "maxProperties":
		if s.MaxProps != nil {
			return fmt.Sprintf("must have at most %d properties", *s.MaxProps)
		}
	case "required":
		return "is required"
	case "additionalProperties", "unevaluatedProperties":
		return "has properties that are not documented"
	case "readOnly":
		return "is read-only and must not be sent"
	case "writeOnly":
		return "is write-only and must not be returned"
	case "nullable":
		return "must not be null"
	case "oneOf":
		return "must match exactly one of the documented alternatives"
	case "anyOf":
		return "must match at least one of the documented alternatives"
	case "allOf":
		return "must match all of the documented schemas"
	case "not":
		return "matches a schema it must not match"
	case "discriminator":
		return "has a missing or unknown discriminator value"
	case "boolean", "false":
		return "is not allowed"
	}
	return "does not match the documented schema"
}

func typeWords(s *openapi3.Schema) string {
	if s.Type == nil || len(*s.Type) == 0 {
		return "of the documented type"
	}
	words := make([]string, 0, len(*s.Type))
	for _, t := range *s.Type {
		switch t {
		case "integer", "object", "array":
			words = append(words, "an "+t)
		case "string", "number", "boolean":
			words = append(words, "a "+t)
		case "null":
			words = append(words, "null")
		}
	}
	if s.Nullable && !slices.Contains(words, "null") {
		words = append(words, "null")
	}
	if len(words) == 0 {
		return "of the documented type"
	}
	return strings.Join(words, " or ")
}

// enumWords lists the allowed values, as JSON, when the list is short.
func enumWords(values []any) string {
	if len(values) == 0 || len(values) > 10 {
		return "the documented values"
	}
	words := make([]string, 0, len(values))
	for _, v := range values {
		w := fmt.Sprint(v)
		if str, ok := v.(string); ok {
			w = strconv.Quote(str)
		}
		words = append(words, clip(w, 40))
	}
	return strings.Join(words, ", ")
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// clip shortens s to at most n bytes, at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// Limits on names and pointers quoted from a request.
const (
	maxNameBytes   = 64
	maxPointerToks = 16
)

// safeName returns a client-chosen name for display: at most maxNameBytes
// of it, with every byte other than a letter, digit or -._~ percent-encoded,
// so that it can hold no markup, quote or control character.
func safeName(s string) string {
	cut := len(s) > maxNameBytes
	if cut {
		s = s[:maxNameBytes]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || strings.IndexByte("-._~", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// pointer renders a JSON Pointer (RFC 6901) in its URI fragment form, as
// RFC 9457 shows it: "#/owner/address/country". Each token is escaped
// (~0, ~1) and then made safe with safeName; a deep pointer is cut short.
func pointer(toks []string) string {
	if len(toks) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("#")
	for i, t := range toks {
		if i == maxPointerToks {
			b.WriteString("/...")
			break
		}
		t = strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
		b.WriteString("/")
		b.WriteString(safeName(t))
	}
	return b.String()
}
