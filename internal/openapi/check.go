package openapi

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Result is the outcome of Check.
type Result struct {
	// Operation is the operation the request matched; nil when its path is
	// not documented (404) or its method is not (405).
	Operation *Operation
	// Problem is why the request is refused; nil when it is valid.
	Problem *problem.Error
	// Allow lists the documented methods of the path, for the Allow header
	// of a 405.
	Allow string
}

// OK reports whether the request is valid.
func (res Result) OK() bool { return res.Problem == nil }

// Write sends the refusal: the Allow header for a 405, then the problem.
func (res Result) Write(w http.ResponseWriter, r *http.Request, requestID string) {
	if res.Allow != "" {
		w.Header().Set("Allow", res.Allow)
	}
	problem.Write(w, r, requestID, res.Problem)
}

// Check validates r against the document: its path and method, then its
// path, query, header and cookie parameters and its body, collecting every
// violation. A request whose path is not documented gets 404; a documented
// path with an undocumented method gets 405 (HEAD is accepted where GET is
// documented); a body over Options.MaxBodyBytes gets 413; a body of an
// undocumented media type gets 415; any other violation gets 400 listing
// them all, with messages that hold no request value.
//
// To validate the body Check reads it, up to the cap, and puts the same
// bytes back on r (Body, GetBody, ContentLength), so the upstream receives
// exactly what the client sent. It changes nothing else on r. Check is
// safe for concurrent use, on different requests; it fails closed: a body
// that cannot be read is refused.
func (v *Validator) Check(r *http.Request) Result {
	var m match
	if !v.find(r.URL.EscapedPath(), &m) {
		return Result{Problem: &problem.Error{
			Status: http.StatusNotFound,
			Detail: "No path of the API description matches this request.",
		}}
	}
	op := m.ep.operation(r.Method)
	if op == nil {
		return Result{Allow: m.ep.allow, Problem: &problem.Error{
			Status: http.StatusMethodNotAllowed,
			Detail: "The API description does not document this method for this path.",
		}}
	}
	res := Result{Operation: op}

	var items collector
	data, p := v.readBody(r, op)
	if p != nil {
		res.Problem = p
		return res
	}
	var mt *openapi3.MediaType
	var mediaType string
	if op.body != nil && len(data) > 0 {
		mediaType, mt, p = v.mediaType(r, op)
		if p != nil {
			res.Problem = p
			return res
		}
	}

	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		items.add(problem.Item{In: "query", Detail: "the query string is not well-formed"})
	}
	for name := range query {
		if !op.query.allows(name) {
			// Listed in order, so that a refusal is the same every time.
			for _, name := range slices.Sorted(maps.Keys(query)) {
				if !op.query.allows(name) {
					items.add(problem.Item{In: "query", Name: safeName(name), Detail: "is not a documented parameter"})
				}
			}
			break
		}
	}

	// kin-openapi validates the first of repeated values only, where the
	// upstream may read another: a parameter of one value is sent once.
	for _, p := range op.once {
		n := 0
		switch p.In {
		case openapi3.ParameterInQuery:
			n = len(query[p.Name])
		case openapi3.ParameterInHeader:
			n = len(r.Header[http.CanonicalHeaderKey(p.Name)])
		case openapi3.ParameterInCookie:
			n = len(r.CookiesNamed(p.Name))
		}
		if n > 1 {
			items.add(problem.Item{In: p.In, Name: p.Name, Detail: "must be sent once"})
		}
	}

	var params map[string]string
	if m.n > 0 {
		params = make(map[string]string, m.n)
		for i := 0; i < m.n; i++ {
			params[m.ep.names[i]] = m.vals[i]
		}
	}
	input := &openapi3filter.RequestValidationInput{
		Request:     r,
		PathParams:  params,
		QueryParams: query,
		Route:       op.route,
		Options:     v.filter,
	}
	ctx := r.Context()
	for _, param := range op.params {
		if err := openapi3filter.ValidateParameter(ctx, input, param); err != nil {
			items.request(err)
		}
	}

	switch {
	case op.body == nil && len(data) > 0:
		items.add(problem.Item{In: "body", Detail: "this operation takes no request body"})
	case op.body == nil:
	case len(data) == 0:
		if op.body.Required {
			items.add(problem.Item{In: "body", Detail: "a request body is required"})
		}
	default:
		v.checkBody(r, input, op, data, mediaType, mt, &items)
	}

	if len(items.list) > 0 {
		res.Problem = items.problem()
	}
	return res
}

// readBody reads r's body through the cap and puts the bytes back. For an
// operation without a documented body it only finds out whether there is
// one.
func (v *Validator) readBody(r *http.Request, op *Operation) ([]byte, *problem.Error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	limit := v.opts.MaxBodyBytes
	if op.body == nil {
		if r.ContentLength > 0 {
			return []byte{0}, nil // not read: refused anyway
		}
		limit = 0 // read one byte to tell an empty body from one
	}
	tooLarge := func() *problem.Error {
		return &problem.Error{
			Status: http.StatusRequestEntityTooLarge,
			Detail: "The request body is larger than " + strconv.FormatInt(v.opts.MaxBodyBytes, 10) + " bytes.",
		}
	}
	if r.ContentLength > limit && op.body != nil {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, &problem.Error{Status: http.StatusBadRequest, Detail: "The request body could not be read.", Err: err}
	}
	if op.body == nil {
		return data, nil // refused when not empty; the drained body is empty
	}
	if int64(len(data)) > limit {
		return nil, tooLarge()
	}
	restore(r, data)
	return data, nil
}

// restore puts data back as r's body.
func restore(r *http.Request, data []byte) {
	orig := r.Body
	r.Body = &replayBody{Reader: bytes.NewReader(data), orig: orig}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	r.ContentLength = int64(len(data))
}

// replayBody serves bytes already read and closes the body they came from.
type replayBody struct {
	*bytes.Reader
	orig io.Closer
}

func (b *replayBody) Close() error { return b.orig.Close() }

// mediaType finds the documented media type of r's body, or the 415.
func (v *Validator) mediaType(r *http.Request, op *Operation) (string, *openapi3.MediaType, *problem.Error) {
	values := r.Header.Values("Content-Type")
	if len(values) == 1 {
		if base, _, err := mime.ParseMediaType(values[0]); err == nil {
			if mt := op.body.Content.Get(values[0]); mt != nil {
				return base, mt, nil
			}
		}
	}
	return "", nil, &problem.Error{
		Status: http.StatusUnsupportedMediaType,
		Detail: "The request body must be one of: " + op.types + ".",
	}
}

// checkBody validates a non-empty body of a documented media type.
func (v *Validator) checkBody(r *http.Request, input *openapi3filter.RequestValidationInput, op *Operation, data []byte, mediaType string, mt *openapi3.MediaType, items *collector) {
	if isJSON(mediaType) {
		if ptr, reason := scanJSON(data); reason != "" {
			items.add(problem.Item{In: "body", Pointer: ptr, Detail: reason})
			return
		}
	}
	if mediaType == "application/x-www-form-urlencoded" && mt.Schema != nil && mt.Schema.Value != nil {
		if !checkForm(data, mt.Schema.Value, !v.opts.AllowUnknownProperties, items) {
			return
		}
	}
	// kin-openapi reads and closes the body it validates and puts a copy
	// back: give it a request of its own, so r keeps its body.
	kr := *r
	kr.Body, kr.GetBody = io.NopCloser(bytes.NewReader(data)), nil
	bodyInput := *input
	bodyInput.Request = &kr
	if err := openapi3filter.ValidateRequestBody(r.Context(), &bodyInput, op.body); err != nil {
		items.request(err)
	}
}

// checkForm checks what kin-openapi's form decoder lets through: fields
// the schema does not name (it drops them) and fields of one value sent
// more than once (it keeps the first). s is open at its top level (see
// operation); closing says whether it is to be read as closed. It reports
// whether the form could be parsed.
func checkForm(data []byte, s *openapi3.Schema, closing bool, items *collector) bool {
	form, err := url.ParseQuery(string(data))
	if err != nil {
		items.add(problem.Item{In: "body", Detail: "the form is not well-formed"})
		return false
	}
	ap := s.AdditionalProperties
	names, known := propertyNames(s, map[*openapi3.Schema]bool{})
	closed := ap.Has != nil && !*ap.Has || closing && known && len(names) > 0 && closable(s)
	for _, name := range slices.Sorted(maps.Keys(form)) {
		switch {
		case closed && known && !slices.Contains(names, name):
			items.add(problem.Item{In: "body", Pointer: pointer([]string{name}), Detail: "is not a documented field"})
		case len(form[name]) > 1 && !isArrayProperty(s, name, map[*openapi3.Schema]bool{}):
			items.add(problem.Item{In: "body", Pointer: pointer([]string{name}), Detail: "must be sent once"})
		}
	}
	return true
}

// isArrayProperty reports whether s or one of its allOf members declares
// the property name as an array.
func isArrayProperty(s *openapi3.Schema, name string, seen map[*openapi3.Schema]bool) bool {
	if s == nil || seen[s] {
		return false
	}
	seen[s] = true
	if p := s.Properties[name]; p != nil && p.Value != nil && p.Value.Type.Is(openapi3.TypeArray) {
		return true
	}
	for _, m := range s.AllOf {
		if m != nil && isArrayProperty(m.Value, name, seen) {
			return true
		}
	}
	return false
}

// isJSON reports whether a media type (lower case, no parameters) is JSON.
func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// Handler returns a handler that checks each request and either refuses it
// or passes it to next. With response validation on, next receives the
// request with its operation in the context (see OperationFrom), for
// ModifyResponse. The request id for refusals comes from request.Info.
func (v *Validator) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := v.Check(r)
		if !res.OK() {
			id := ""
			if info := request.From(r.Context()); info != nil {
				id = info.ID
			}
			res.Write(w, r, id)
			return
		}
		if v.opts.Responses != ResponsesOff {
			r = r.WithContext(ContextWithOperation(r.Context(), res.Operation))
		}
		next.ServeHTTP(w, r)
	})
}
