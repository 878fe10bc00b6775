// Package openapi validates requests against an OpenAPI document, as an
// allowlist: a request passes only when the document describes its path,
// method, parameters and body. It is the gateway's input validation stage
// for routes that name a document.
//
// A Validator is compiled once from a document (OpenAPI 3.0; 3.1 and 3.2 as
// far as kin-openapi reads them, see Load) and is then immutable and safe
// for concurrent use. Paths are matched by a precompiled segment trie; the
// parameters and bodies of the matched operation are checked with
// kin-openapi's openapi3filter, every violation collected, and refusals are
// problem details (RFC 9457) whose messages are built by this package and
// never hold a request value.
//
// Authentication, authorization and CORS preflights are other stages' work:
// the document's security requirements are not checked here, and an OPTIONS
// request is validated like any other method (405 unless documented), so
// the gateway answers preflights before this stage.
//
// See https://spec.openapis.org/oas/v3.0.3 and
// https://spec.openapis.org/oas/v3.1.0.
package openapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Defaults for the caps of Options.
const (
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxResponseBytes = 1 << 20
)

// maxItems is the most violations one refusal lists.
const maxItems = 50

// ResponseMode says what is done with upstream responses.
type ResponseMode int

const (
	// ResponsesOff leaves responses alone.
	ResponsesOff ResponseMode = iota
	// ResponsesReport validates responses and reports findings through
	// Options.Report, never changing a response.
	ResponsesReport
)

// Options configure a Validator. The zero value is the strict default.
type Options struct {
	// Prefix is the part of the request path in front of the paths the
	// document describes, usually the route's path when the upstream does
	// not see it (strip_prefix). It is matched at a segment boundary; a
	// request outside it is not found. Empty or "/": none.
	Prefix string

	// IgnoreServers matches the document's paths right after Prefix. By
	// default the base path of each servers entry is also accepted in
	// between, since the document's paths are relative to it: with servers
	// url https://api.example.com/v1, the path /pets is requested as
	// /v1/pets. Server variables take their default value, or each of their
	// enum values. Servers of path items and operations are not considered.
	IgnoreServers bool

	// MaxBodyBytes caps the request body read for validation; a larger body
	// is refused with 413. Default DefaultMaxBodyBytes; it should not be
	// below the route's own body limit.
	MaxBodyBytes int64

	// AllowUnknownProperties accepts object properties the document does
	// not name. By default, in request and response bodies and parameters,
	// an object schema that names properties (itself or through allOf) and
	// says nothing of additionalProperties takes no others, and neither do
	// the alternatives of a oneOf or anyOf that stands alone. Free-form
	// objects (type object without properties) stay open, as do schemas
	// whose property names cannot be known in advance (patternProperties,
	// properties beside oneOf or anyOf). Form bodies are held to the same
	// names. The document itself is left unchanged.
	AllowUnknownProperties bool

	// AllowUnknownQuery accepts query parameters the document does not
	// name. By default they are refused.
	AllowUnknownQuery bool

	// Responses chooses what is done with upstream responses. Default
	// ResponsesOff.
	Responses ResponseMode

	// MaxResponseBytes caps the JSON response body buffered for response
	// validation; a larger body is passed on without its body validated.
	// Default DefaultMaxResponseBytes.
	MaxResponseBytes int64

	// Report receives the findings of response validation. Required with
	// ResponsesReport. It is called on the goroutine that handles the
	// response and should not block.
	Report func(Report)
}

// Validator checks requests against one OpenAPI document. It is immutable
// and safe for concurrent use.
type Validator struct {
	opts    Options
	doc     *openapi3.T
	doc30   *openapi3.T // an OpenAPI 3.1 document presented as 3.0, see operation
	rt      *router
	prefix  string   // normalised Options.Prefix, "" for none
	bases   []string // escaped server base paths, longest first; "" for /
	filter  *openapi3filter.Options
	schemas []openapi3.SchemaValidationOption // string formats, for every schema validation
	ops     []*Operation
}

// Operation is one operation of the document, as matched by a request.
type Operation struct {
	Method string // as in the document, upper case
	Path   string // the path template, such as /pets/{petId}
	ID     string // operationId, may be empty

	route  *routers.Route
	json20 bool                  // schemas are validated as JSON Schema 2020-12
	params []*openapi3.Parameter // effective parameters, schemas closed
	once   []*openapi3.Parameter // query, header and cookie parameters of one value
	body   *openapi3.RequestBody // nil when the operation takes no body
	types  string                // the documented body media types, for 415
	query  queryNames
	// responses maps each documented response to its content with closed
	// schemas, for response validation.
	responses map[*openapi3.Response]openapi3.Content
}

func (o *Operation) String() string { return o.Method + " " + o.Path }

// queryNames are the query parameter names an operation accepts.
type queryNames struct {
	any      bool // unknown names are accepted
	names    map[string]bool
	prefixes []string // deepObject parameters: "name["
}

func (q *queryNames) allows(name string) bool {
	if q.any || q.names[name] {
		return true
	}
	for _, p := range q.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// check reports whether opts are usable and fills in defaults.
func (opts *Options) check() error {
	var errs []error
	if opts.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("max body bytes must not be negative"))
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxResponseBytes < 0 {
		errs = append(errs, errors.New("max response bytes must not be negative"))
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	switch opts.Responses {
	case ResponsesOff:
	case ResponsesReport:
		if opts.Report == nil {
			errs = append(errs, errors.New("response reporting needs a Report function"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown response mode %d", opts.Responses))
	}
	if p := opts.Prefix; p != "" && (!strings.HasPrefix(p, "/") || strings.Contains(p, "//")) {
		errs = append(errs, fmt.Errorf("prefix %q must start with / and not contain //", p))
	}
	return errors.Join(errs...)
}

// compile builds the Validator for a loaded and validated document.
func compile(doc *openapi3.T, opts Options) (*Validator, error) {
	v := &Validator{
		opts:   opts,
		doc:    doc,
		rt:     newRouter(),
		prefix: escapePath(strings.TrimSuffix(opts.Prefix, "/")),
	}
	v.schemas = []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidators(formats())}
	v.filter = &openapi3filter.Options{
		MultiError: true,
		// Defaults would be written into the request; the upstream must
		// receive exactly what the client sent.
		SkipSettingDefaults: true,
		// Security requirements are never checked here (authentication is
		// another stage's), but should a kin-openapi function look at them,
		// it finds a function that accepts.
		AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
		SchemaValidationOptions: v.schemas,
	}
	if doc.IsOpenAPI31OrLater() {
		cp := *doc
		cp.OpenAPI = "3.0.3"
		v.doc30 = &cp
	}
	if opts.IgnoreServers {
		v.bases = []string{""}
	} else {
		bases, err := basePaths(doc.Servers)
		if err != nil {
			return nil, err
		}
		v.bases = bases
	}

	c := newCloser()
	var errs []error
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		if item == nil {
			continue
		}
		ep := &endpoint{template: path}
		ops := item.Operations()
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op, err := v.operation(c, path, item, method, ops[method])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ep.methods = append(ep.methods, methodOp{method, op})
			v.ops = append(v.ops, op)
		}
		if len(ep.methods) == 0 {
			continue
		}
		ep.finish()
		if err := v.rt.add(path, ep); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// ignoredHeader reports whether OpenAPI says to ignore a header parameter
// of this (canonical) name: Accept, Content-Type and Authorization
// (3.0.3, Parameter Object, "in" is "header").
func ignoredHeader(name string) bool {
	return name == "Accept" || name == "Content-Type" || name == "Authorization"
}

// operation compiles one operation: its effective parameters, its request
// body and responses with closed schemas, the query names it accepts.
func (v *Validator) operation(c *closer, path string, item *openapi3.PathItem, method string, o *openapi3.Operation) (*Operation, error) {
	op := &Operation{
		Method: method,
		Path:   path,
		ID:     o.OperationID,
		route:  &routers.Route{Spec: v.doc, Path: path, PathItem: item, Method: method, Operation: o},
	}
	closeRef := func(r *openapi3.SchemaRef, open bool) *openapi3.SchemaRef {
		if v.opts.AllowUnknownProperties {
			return r
		}
		return c.ref(r, open)
	}
	closeContent := func(content openapi3.Content) openapi3.Content {
		if content == nil {
			return nil
		}
		out := make(openapi3.Content, len(content))
		for k, mt := range content {
			if mt == nil {
				continue
			}
			cp := *mt
			// kin-openapi decodes a form by the names its schema lists, and
			// would take those closing adds for its own: a form's schema
			// stays open at its top level, where checkForm (or, for
			// multipart, kin-openapi) holds the fields to the names.
			cp.Schema = closeRef(mt.Schema, isForm(k))
			out[k] = &cp
		}
		return out
	}

	// The operation's parameters override the path item's of the same
	// name and location.
	var params []*openapi3.Parameter
	seen := map[string]bool{}
	for _, list := range []openapi3.Parameters{o.Parameters, item.Parameters} {
		for _, ref := range list {
			p := ref.Value
			if p == nil {
				continue
			}
			key := p.In + "\x00" + p.Name
			if p.In == openapi3.ParameterInHeader {
				name := http.CanonicalHeaderKey(p.Name)
				if ignoredHeader(name) {
					continue
				}
				key = p.In + "\x00" + name
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			cp := *p
			cp.Schema = closeRef(p.Schema, false)
			cp.Content = closeContent(p.Content)
			params = append(params, &cp)
		}
	}
	op.params = params
	op.query = v.queryNames(params)
	for _, p := range params {
		var s *openapi3.Schema
		if p.Schema != nil {
			s = p.Schema.Value
		}
		if p.In != openapi3.ParameterInPath && (s == nil || !s.Type.Is(openapi3.TypeArray) && !s.Type.Is(openapi3.TypeObject)) {
			op.once = append(op.once, p)
		}
	}

	if rb := o.RequestBody; rb != nil && rb.Value != nil {
		for _, k := range slices.Sorted(maps.Keys(rb.Value.Content)) {
			if mt := rb.Value.Content[k]; mt != nil && mt.Schema != nil && mt.Schema.Value != nil && !decodable(k, mt.Schema.Value) {
				return nil, fmt.Errorf("%s %s: the request body of media type %q has a schema that cannot be checked: "+
					"describe it with no schema to accept it unchecked, or as a binary string", method, path, k)
			}
		}
		cp := *rb.Value
		cp.Content = closeContent(rb.Value.Content)
		op.body = &cp
		op.types = strings.Join(slices.Sorted(maps.Keys(cp.Content)), ", ")
	}

	if v.opts.Responses != ResponsesOff && o.Responses != nil {
		op.responses = map[*openapi3.Response]openapi3.Content{}
		for _, ref := range o.Responses.Map() {
			if ref != nil && ref.Value != nil {
				op.responses[ref.Value] = closeContent(ref.Value.Content)
			}
		}
	}

	// kin-openapi validates the schemas of an OpenAPI 3.1 document as JSON
	// Schema 2020-12, compiling each schema again for every value, some 20
	// times slower than with its own validator. Where an operation's
	// schemas use no keyword new in 2020-12, its own validator gives the
	// same answer (kin-openapi falls back to it in that case itself when a
	// schema holds references), so the operation is presented to it as
	// one of an OpenAPI 3.0 document.
	if v.doc30 != nil {
		seen := map[*openapi3.Schema]bool{}
		contents := []openapi3.Content{}
		for _, p := range op.params {
			op.json20 = op.json20 || uses2020(p.Schema, seen)
			contents = append(contents, p.Content)
		}
		if op.body != nil {
			contents = append(contents, op.body.Content)
		}
		for _, c := range op.responses {
			contents = append(contents, c)
		}
		for _, c := range contents {
			for _, mt := range c {
				op.json20 = op.json20 || uses2020(mt.Schema, seen)
			}
		}
		if !op.json20 {
			op.route.Spec = v.doc30
		}
	}
	return op, nil
}

// decodable reports whether kin-openapi can decode bodies of the media
// range key (or list of them) for validation against s. Forms need an
// object schema.
func decodable(key string, s *openapi3.Schema) bool {
	if isForm(key) {
		return s.Type.Is(openapi3.TypeObject)
	}
	if s.Type.Is(openapi3.TypeString) && s.Format == "binary" || s.ContentMediaType != "" {
		return true
	}
	for mr := range strings.SplitSeq(key, ",") {
		base := mediaBase(mr)
		if !isJSON(base) && openapi3filter.RegisteredBodyDecoder(base) == nil {
			return false
		}
	}
	return true
}

// mediaBase returns a media type or range without parameters, lower case.
func mediaBase(mr string) string {
	base, _, _ := strings.Cut(mr, ";")
	return strings.ToLower(strings.TrimSpace(base))
}

// isForm reports whether a content key is a form media type.
func isForm(key string) bool {
	base := mediaBase(key)
	return base == "application/x-www-form-urlencoded" || base == "multipart/form-data"
}

// queryNames lists the query names params accept. An object parameter in
// form style with explode sends each property as a name of its own, and
// one in deepObject style sends name[property].
func (v *Validator) queryNames(params []*openapi3.Parameter) queryNames {
	q := queryNames{any: v.opts.AllowUnknownQuery, names: map[string]bool{}}
	for _, p := range params {
		if p.In != openapi3.ParameterInQuery {
			continue
		}
		q.names[p.Name] = true
		if p.Schema == nil || p.Schema.Value == nil || !p.Schema.Value.Type.Is(openapi3.TypeObject) {
			continue
		}
		sm, err := p.SerializationMethod()
		if err != nil {
			continue
		}
		s := p.Schema.Value
		switch {
		case sm.Style == openapi3.SerializationDeepObject:
			q.prefixes = append(q.prefixes, p.Name+"[")
		case sm.Style == openapi3.SerializationForm && sm.Explode:
			names, known := propertyNames(s, map[*openapi3.Schema]bool{})
			free := s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has || s.AdditionalProperties.Schema != nil
			if !known || (free && (v.opts.AllowUnknownProperties || len(names) == 0)) {
				q.any = true
			}
			for _, n := range names {
				q.names[n] = true
			}
		}
	}
	return q
}

// basePaths returns the escaped base paths of servers, longest first, ""
// standing for the root.
func basePaths(servers openapi3.Servers) ([]string, error) {
	if len(servers) == 0 {
		return []string{""}, nil
	}
	var out []string
	for _, s := range servers {
		if s == nil {
			continue
		}
		urls, err := expandServer(s)
		if err != nil {
			return nil, err
		}
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil {
				return nil, fmt.Errorf("servers: url %q: %w", s.URL, err)
			}
			p := strings.TrimSuffix(u.Path, "/")
			if p != "" && !strings.HasPrefix(p, "/") {
				p = "/" + p
			}
			p = escapePath(p)
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// maxServerURLs bounds the expansion of server variables with enums.
const maxServerURLs = 64

// expandServer returns the URLs a server entry stands for: each variable
// replaced by each of its enum values, or by its default.
func expandServer(s *openapi3.Server) ([]string, error) {
	urls := []string{s.URL}
	for _, name := range slices.Sorted(maps.Keys(s.Variables)) {
		sv := s.Variables[name]
		if sv == nil {
			continue
		}
		values := sv.Enum
		if len(values) == 0 {
			values = []string{sv.Default}
		}
		var next []string
		for _, u := range urls {
			for _, val := range values {
				next = append(next, strings.ReplaceAll(u, "{"+name+"}", val))
			}
		}
		if len(next) > maxServerURLs {
			return nil, fmt.Errorf("servers: url %q stands for more than %d URLs", s.URL, maxServerURLs)
		}
		urls = next
	}
	return urls, nil
}

func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

// formats are the string formats validated besides kin-openapi's own
// (byte, date, date-time), for this Validator only.
func formats() map[string]openapi3.StringFormatValidator {
	return map[string]openapi3.StringFormatValidator{
		"uuid":  openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562),
		"email": openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail),
		"ipv4":  openapi3.NewIPValidator(true),
		"ipv6":  openapi3.NewIPValidator(false),
	}
}

// find matches an escaped request path: Prefix, then a server base path,
// then a path template.
func (v *Validator) find(path string, m *match) bool {
	p, ok := cutPath(path, v.prefix)
	if !ok {
		return false
	}
	for _, b := range v.bases {
		if q, ok := cutPath(p, b); ok && v.rt.lookup(q, m) {
			return true
		}
	}
	return false
}

// cutPath removes prefix from path at a segment boundary; what is left
// starts with "/".
func cutPath(path, prefix string) (string, bool) {
	if prefix == "" {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	switch {
	case !ok:
		return "", false
	case rest == "":
		return "/", true
	case rest[0] != '/':
		return "", false
	}
	return rest, true
}

// Operations returns the document's operations: paths in the order they are
// matched, methods sorted.
func (v *Validator) Operations() []*Operation { return slices.Clone(v.ops) }

type opKey struct{}

// ContextWithOperation returns ctx carrying op, for response validation.
func ContextWithOperation(ctx context.Context, op *Operation) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// OperationFrom returns the Operation in ctx, or nil.
func OperationFrom(ctx context.Context) *Operation {
	op, _ := ctx.Value(opKey{}).(*Operation)
	return op
}
