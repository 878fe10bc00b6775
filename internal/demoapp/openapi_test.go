package demoapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The subset of OpenAPI 3.0 that the demo document uses.
type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas   map[string]*oaSchema   `json:"schemas"`
		Responses map[string]*oaResponse `json:"responses"`
	} `json:"components"`
}

type oaOperation struct {
	OperationID string        `json:"operationId"`
	Parameters  []oaParameter `json:"parameters"`
	RequestBody *struct {
		Required bool               `json:"required"`
		Content  map[string]oaMedia `json:"content"`
	} `json:"requestBody"`
	Responses map[string]*oaResponse `json:"responses"`
}

type oaParameter struct {
	Name     string          `json:"name"`
	In       string          `json:"in"`
	Required bool            `json:"required"`
	Schema   *oaSchema       `json:"schema"`
	Example  json.RawMessage `json:"example"`
}

type oaMedia struct {
	Schema  *oaSchema       `json:"schema"`
	Example json.RawMessage `json:"example"`
}

type oaResponse struct {
	Ref     string                     `json:"$ref"`
	Headers map[string]json.RawMessage `json:"headers"`
	Content map[string]oaMedia         `json:"content"`
}

type oaSchema struct {
	Ref                  string               `json:"$ref"`
	Type                 string               `json:"type"`
	Required             []string             `json:"required"`
	Properties           map[string]*oaSchema `json:"properties"`
	AdditionalProperties *bool                `json:"additionalProperties"`
	Items                *oaSchema            `json:"items"`
	Minimum              *float64             `json:"minimum"`
	MinLength            *int                 `json:"minLength"`
	MaxLength            *int                 `json:"maxLength"`
	Pattern              string               `json:"pattern"`
}

// oaOp is one operation with where it lives.
type oaOp struct {
	method, path string
	oaOperation
}

func (o oaOp) key() string { return o.method + " " + o.path }

func loadDoc(t *testing.T, raw []byte) *oaDoc {
	t.Helper()
	var d oaDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &d
}

// operations lists the documented operations, with path-level parameters
// merged into each.
func (d *oaDoc) operations(t *testing.T) []oaOp {
	t.Helper()
	var ops []oaOp
	for path, item := range d.Paths {
		var shared []oaParameter
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for method, raw := range item {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			op := oaOp{method: strings.ToUpper(method), path: path}
			if err := json.Unmarshal(raw, &op.oaOperation); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			op.Parameters = append(slices.Clone(shared), op.Parameters...)
			ops = append(ops, op)
		}
	}
	slices.SortFunc(ops, func(a, b oaOp) int { return strings.Compare(a.key(), b.key()) })
	return ops
}

func (d *oaDoc) response(r *oaResponse) (*oaResponse, error) {
	if r.Ref == "" {
		return r, nil
	}
	name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
	if got := d.Components.Responses[name]; ok && got != nil {
		return got, nil
	}
	return nil, fmt.Errorf("unresolved $ref %s", r.Ref)
}

func (d *oaDoc) schema(s *oaSchema) (*oaSchema, error) {
	if s.Ref == "" {
		return s, nil
	}
	name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
	if got := d.Components.Schemas[name]; ok && got != nil {
		return got, nil
	}
	return nil, fmt.Errorf("unresolved $ref %s", s.Ref)
}

// validate checks a decoded JSON value against a schema.
func (d *oaDoc) validate(s *oaSchema, v any, at string) error {
	s, err := d.schema(s)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", at, v)
		}
		for _, name := range s.Required {
			if _, ok := m[name]; !ok {
				return fmt.Errorf("%s: required property %q missing", at, name)
			}
		}
		for name, pv := range m {
			ps, ok := s.Properties[name]
			if !ok {
				if s.AdditionalProperties != nil && !*s.AdditionalProperties {
					return fmt.Errorf("%s: undocumented property %q", at, name)
				}
				continue
			}
			if err := d.validate(ps, pv, at+"."+name); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", at, v)
		}
		for i, e := range arr {
			if err := d.validate(s.Items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		n := utf8.RuneCountInString(str)
		if s.MinLength != nil && n < *s.MinLength || s.MaxLength != nil && n > *s.MaxLength {
			return fmt.Errorf("%s: %d characters, outside [%v, %v]", at, n, s.MinLength, s.MaxLength)
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, s.Pattern)
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: %T, want a %s", at, v, s.Type)
		}
		if s.Type == "integer" && f != math.Trunc(f) {
			return fmt.Errorf("%s: %v, want an integer", at, f)
		}
		if s.Minimum != nil && f < *s.Minimum {
			return fmt.Errorf("%s: %v below the minimum %v", at, f, *s.Minimum)
		}
	default:
		return fmt.Errorf("%s: schema type %q not handled by this test", at, s.Type)
	}
	return nil
}

// checkResponse verifies that an answer to op is one the document lists:
// a documented status, media type, headers and a body matching the schema.
func (d *oaDoc) checkResponse(op oaOp, resp *http.Response, body string) error {
	r, ok := op.Responses[fmt.Sprint(resp.StatusCode)]
	if !ok {
		return fmt.Errorf("status %d not documented for %s", resp.StatusCode, op.OperationID)
	}
	r, err := d.response(r)
	if err != nil {
		return err
	}
	for name := range r.Headers {
		if resp.Header.Get(name) == "" {
			return fmt.Errorf("documented header %s missing", name)
		}
	}
	if len(r.Content) == 0 {
		if body != "" {
			return fmt.Errorf("status %d has a body, documented without one", resp.StatusCode)
		}
		return nil
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	media, ok := r.Content[mt]
	if !ok {
		return fmt.Errorf("content type %q not documented for status %d", mt, resp.StatusCode)
	}
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	return d.validate(media.Schema, v, "body")
}

// apiRoutes are the backend's endpoints that the document must describe:
// the API under /api/, less the document itself.
func apiRoutes(a *App) []string {
	var out []string
	for _, e := range a.endpoints {
		if strings.HasPrefix(e.path, "/api/") && e.path != "/api/openapi.json" {
			out = append(out, e.pattern())
		}
	}
	slices.Sort(out)
	return out
}

func TestOpenAPIDocument(t *testing.T) {
	srv := serve(t, newTestApp(t))
	resp, body := do(t, srv, "GET", "/api/openapi.json", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/openapi.json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal([]byte(body), mustReadAsset("openapi.json")) {
		t.Fatal("served document differs from the embedded file")
	}
	d := loadDoc(t, []byte(body))
	if d.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", d.OpenAPI)
	}
	ids := map[string]bool{}
	for _, op := range d.operations(t) {
		t.Run(op.key(), func(t *testing.T) {
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("operationId %q missing or repeated", op.OperationID)
			}
			ids[op.OperationID] = true
			if len(op.Responses) == 0 {
				t.Error("no responses documented")
			}
			for status, r := range op.Responses {
				r, err := d.response(r)
				if err != nil {
					t.Fatalf("response %s: %v", status, err)
				}
				for mt, m := range r.Content {
					if _, err := d.schema(m.Schema); err != nil {
						t.Errorf("response %s %s: %v", status, mt, err)
					}
				}
			}
			for _, name := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(op.path, -1) {
				if !slices.ContainsFunc(op.Parameters, func(p oaParameter) bool {
					return p.In == "path" && p.Name == name[1] && p.Required
				}) {
					t.Errorf("path parameter %s not declared as required", name[1])
				}
			}
			if op.RequestBody != nil {
				for mt, m := range op.RequestBody.Content {
					var ex any
					if err := json.Unmarshal(m.Example, &ex); err != nil {
						t.Fatalf("request %s has no usable example: %v", mt, err)
					}
					if err := d.validate(m.Schema, ex, "example"); err != nil {
						t.Errorf("request example does not match its schema: %v", err)
					}
				}
			}
		})
	}
}

// TestOpenAPIMatchesRoutes checks that every API route is documented and
// that every documented operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	a := newTestApp(t)
	d := loadDoc(t, a.openAPIDoc)
	var documented []string
	for _, op := range d.operations(t) {
		documented = append(documented, op.key())
	}
	slices.Sort(documented)
	routes := apiRoutes(a)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(routes, op) {
			t.Errorf("openapi.json documents %s, which the backend does not route", op)
		}
	}
}

// TestOpenAPIOperationsWork calls every documented operation with the
// document's own examples, as a client reading only the document would,
// and expects a documented success.
func TestOpenAPIOperationsWork(t *testing.T) {
	d := loadDoc(t, New(nil).openAPIDoc)
	for _, op := range d.operations(t) {
		t.Run(op.key(), func(t *testing.T) {
			srv := serve(t, newTestApp(t)) // each call on a fresh store
			path := op.path
			for _, p := range op.Parameters {
				if p.In != "path" {
					continue
				}
				var ex any
				if err := json.Unmarshal(p.Example, &ex); err != nil {
					t.Fatalf("parameter %s has no example", p.Name)
				}
				path = strings.ReplaceAll(path, "{"+p.Name+"}", fmt.Sprint(ex))
			}
			var h http.Header
			var body string
			if op.RequestBody != nil {
				for mt, m := range op.RequestBody.Content {
					h = http.Header{"Content-Type": {mt}}
					body = string(m.Example)
				}
			}
			resp, got := do(t, srv, op.method, path, h, body)
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				t.Fatalf("%s %s = %d, want a success; body:\n%s", op.method, path, resp.StatusCode, got)
			}
			if err := d.checkResponse(op, resp, got); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestOpenAPIResponses provokes every documented response of every
// operation and checks each answer against the document.
func TestOpenAPIResponses(t *testing.T) {
	a := newTestApp(t)
	a.store = newStore(4, seedItems) // one free place, so that a 409 is near
	srv := serve(t, a)
	d := loadDoc(t, a.openAPIDoc)
	byID := map[string]oaOp{}
	for _, op := range d.operations(t) {
		byID[op.OperationID] = op
	}
	jsonType := http.Header{"Content-Type": {"application/json"}}

	// In order: the store fills up along the way.
	tests := []struct {
		name, op, method, path string
		header                 http.Header
		body                   string
		want                   int
	}{
		{"list", "listItems", "GET", "/api/items", nil, "", 200},
		{"get", "getItem", "GET", "/api/items/1", nil, "", 200},
		{"get malformed id", "getItem", "GET", "/api/items/x", nil, "", 400},
		{"get missing", "getItem", "GET", "/api/items/77", nil, "", 404},
		{"create", "createItem", "POST", "/api/items", jsonType, `{"name":"Keep","price":10}`, 201},
		{"create invalid", "createItem", "POST", "/api/items", jsonType, `{"name":"Keep"}`, 400},
		{"create when full", "createItem", "POST", "/api/items", jsonType, `{"name":"Wall","price":1}`, 409},
		{"create too large", "createItem", "POST", "/api/items", jsonType, strings.Repeat(" ", maxBodyBytes+1), 413},
		{"create not json", "createItem", "POST", "/api/items", http.Header{"Content-Type": {"text/plain"}}, "Keep 10", 415},
		{"delete", "deleteItem", "DELETE", "/api/items/4", nil, "", 204},
		{"delete malformed id", "deleteItem", "DELETE", "/api/items/0", nil, "", 400},
		{"delete missing", "deleteItem", "DELETE", "/api/items/4", nil, "", 404},
		{"list after changes", "listItems", "GET", "/api/items", nil, "", 200},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, ok := byID[tt.op]
			if !ok {
				t.Fatalf("no operation %s in the document", tt.op)
			}
			resp, body := do(t, srv, tt.method, tt.path, tt.header, tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d; body:\n%s", resp.StatusCode, tt.want, body)
			}
			if err := d.checkResponse(op, resp, body); err != nil {
				t.Errorf("%v; body:\n%s", err, body)
			}
			seen[fmt.Sprint(tt.op, " ", resp.StatusCode)] = true
		})
	}
	// Every documented response has been seen: the document promises
	// nothing the backend never does.
	for id, op := range byID {
		for status := range op.Responses {
			if !seen[id+" "+status] {
				t.Errorf("documented response %s %s never provoked", id, status)
			}
		}
	}
}

// TestSchemaValidator makes sure the checks above can fail.
func TestSchemaValidator(t *testing.T) {
	d := loadDoc(t, New(nil).openAPIDoc)
	item := &oaSchema{Ref: "#/components/schemas/Item"}
	tests := []struct {
		name    string
		json    string
		wantErr bool
	}{
		{"valid", `{"id":1,"name":"a","price":0}`, false},
		{"missing price", `{"id":1,"name":"a"}`, true},
		{"extra property", `{"id":1,"name":"a","price":0,"secret":1}`, true},
		{"fractional id", `{"id":1.5,"name":"a","price":0}`, true},
		{"id zero", `{"id":0,"name":"a","price":0}`, true},
		{"negative price", `{"id":1,"name":"a","price":-1}`, true},
		{"empty name", `{"id":1,"name":"","price":0}`, true},
		{"name as number", `{"id":1,"name":5,"price":0}`, true},
		{"array", `[]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := d.validate(item, v, "body")
			if (err != nil) != tt.wantErr {
				t.Errorf("validate = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
	if err := d.validate(&oaSchema{Ref: "#/components/schemas/Nope"}, map[string]any{}, "body"); err == nil {
		t.Error("an unresolved $ref passed")
	}
}
