package openapi

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/moatgw/moat/internal/problem"
)

// Report is what response validation found in one response.
type Report struct {
	// Request is the request the response answers, as sent upstream; its
	// context is the one of the client's request.
	Request   *http.Request
	Operation *Operation
	Status    int
	// Findings say where the response departs from the document: In is
	// "status", "header" (Name says which) or "body" (Pointer says where).
	Findings []problem.Item
}

// ModifyResponse validates an upstream response in report-only mode and
// passes what it finds to Options.Report. It never changes the response
// and always returns nil, so it can be httputil.ReverseProxy's
// ModifyResponse (or be called from it). The operation comes from the
// request's context (see Handler and ContextWithOperation); without one,
// or with response validation off, it does nothing.
func (v *Validator) ModifyResponse(resp *http.Response) error {
	if v.opts.Responses != ResponsesReport || resp == nil || resp.Request == nil {
		return nil
	}
	op := OperationFrom(resp.Request.Context())
	if op == nil {
		return nil
	}
	if findings := v.CheckResponse(op, resp); len(findings) > 0 {
		v.opts.Report(Report{Request: resp.Request, Operation: op, Status: resp.StatusCode, Findings: findings})
	}
	return nil
}

// CheckResponse validates resp against op: that its status is documented,
// its documented headers, its media type, and a JSON body of at most
// Options.MaxResponseBytes against the schema (objects closed as for
// requests, unless Options.AllowUnknownProperties). A body it reads is put
// back unchanged; a larger body, a compressed one or one of another media
// type is not read. It returns the findings, nil when there are none.
func (v *Validator) CheckResponse(op *Operation, resp *http.Response) []problem.Item {
	var items collector
	req := resp.Request
	if req == nil {
		req = &http.Request{Method: op.Method, Header: http.Header{}}
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: op.route, Options: v.filter},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   http.NoBody,
		Options: &openapi3filter.Options{
			MultiError:              true,
			IncludeResponseStatus:   true,
			ExcludeResponseBody:     true,
			SchemaValidationOptions: v.schemas,
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), input); err != nil {
		items.response(err)
		return items.list
	}
	if req.Method == http.MethodHead || op.route.Operation.Responses == nil {
		return nil
	}
	ref := op.route.Operation.Responses.Status(resp.StatusCode)
	if ref == nil {
		ref = op.route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil || len(ref.Value.Content) == 0 {
		return nil
	}
	content, ok := op.responses[ref.Value]
	if !ok { // compiled without response validation: the document's own
		content = ref.Value.Content
	}
	ct := resp.Header.Get("Content-Type")
	mt := content.Get(ct)
	if mt == nil {
		items.add(problem.Item{In: "header", Name: "Content-Type", Detail: "is not a documented media type for this status"})
		return items.list
	}
	base, _, err := mime.ParseMediaType(ct)
	if err != nil || !isJSON(base) || mt.Schema == nil || mt.Schema.Value == nil {
		return nil
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return nil
	}
	data, ok := v.readResponse(resp)
	if !ok || len(data) == 0 {
		return nil
	}
	if ptr, reason := scanJSON(data); reason != "" {
		items.add(problem.Item{In: "body", Pointer: ptr, Detail: reason})
		return items.list
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		items.add(problem.Item{In: "body", Detail: "is not valid JSON"})
		return items.list
	}
	opts := append([]openapi3.SchemaValidationOption{openapi3.MultiErrors(), openapi3.VisitAsResponse()}, v.schemas...)
	if op.json20 {
		opts = append(opts, openapi3.EnableJSONSchema2020())
	}
	if err := mt.Schema.Value.VisitJSON(value, opts...); err != nil {
		items.cause(problem.Item{In: "body"}, err)
	}
	return items.list
}

// readResponse reads resp's body up to the cap and puts it back as it
// was. ok is false when the body is larger than the cap or could not be
// read whole; the body then goes on from where it was.
func (v *Validator) readResponse(resp *http.Response) ([]byte, bool) {
	if resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength > v.opts.MaxResponseBytes {
		return nil, false
	}
	orig := resp.Body
	data, err := io.ReadAll(io.LimitReader(orig, v.opts.MaxResponseBytes+1))
	if err != nil || int64(len(data)) > v.opts.MaxResponseBytes {
		// Whatever was read goes first, then the rest, and the read error
		// (if any) again when the reader gets there.
		resp.Body = &responseBody{Reader: io.MultiReader(bytes.NewReader(data), errReader{orig, err}), orig: orig}
		return nil, false
	}
	resp.Body = &responseBody{Reader: bytes.NewReader(data), orig: orig}
	return data, true
}

type responseBody struct {
	io.Reader
	orig io.Closer
}

func (b *responseBody) Close() error { return b.orig.Close() }

// errReader reads r, or returns err when there is one.
type errReader struct {
	r   io.Reader
	err error
}

func (e errReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return e.r.Read(p)
}

// response adds the findings in an error of openapi3filter's response
// validation of status and headers.
func (c *collector) response(err error) {
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, x := range e {
			c.response(x)
		}
	case *openapi3filter.ResponseError:
		switch {
		case e.Reason == "status is not supported":
			c.add(problem.Item{In: "status", Detail: "is not documented for this operation"})
		case strings.Contains(e.Reason, "header "):
			// "response header %q missing", "response header %q doesn't
			// match schema", "unable to decode header %q value"
			name := ""
			if i := strings.IndexByte(e.Reason, '"'); i >= 0 {
				if q, err := strconv.QuotedPrefix(e.Reason[i:]); err == nil {
					name, _ = strconv.Unquote(q)
				}
			}
			detail := "does not match the documented schema"
			switch {
			case strings.HasSuffix(e.Reason, " missing"):
				detail = "is required"
			case strings.HasPrefix(e.Reason, "unable to decode"):
				detail = "could not be decoded as the documented style"
			}
			c.add(problem.Item{In: "header", Name: safeName(name), Detail: detail})
		default:
			c.add(problem.Item{In: "header", Detail: "does not match the documentation"})
		}
	default:
		c.add(problem.Item{In: "status", Detail: "does not match the documentation"})
	}
}
