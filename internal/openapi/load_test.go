package openapi

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/problem"
)

// doc is a small document around one GET operation whose 200 response
// has the given schema, indented to sit under "schema:".
func doc(schema string) string {
	return `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: ` + schema + `
`
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string // all in the error
	}{
		{"http $ref", doc(`{$ref: "http://169.254.169.254/latest/meta-data#/x"}`),
			[]string{"line 11", "refused", "not URLs"}},
		{"https $ref", doc(`{$ref: "https://schemas.example.com/a.yaml"}`),
			[]string{"line 11", "refused"}},
		{"other scheme", doc(`{$ref: "ftp://example.com/a.yaml#/A"}`),
			[]string{"line 11", "refused"}},
		{"file $ref from memory", doc(`{$ref: "other.yaml#/A"}`),
			[]string{"line 11", "can only refer to itself"}},
		{"unresolved $ref", doc(`{$ref: "#/components/schemas/Nope"}`),
			[]string{"line 11", `"#/components/schemas/Nope" does not resolve`}},
		{"yaml syntax", "openapi: 3.0.3\ninfo: {title: x\n", []string{"line 3"}},
		{"not an object", "[1, 2]", []string{"openapi document"}},
		{"swagger 2", `{"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}`, []string{`openapi version "" is not 3.0`}},
		{"operation without responses", "openapi: 3.0.3\ninfo: {title: t, version: \"1\"}\npaths:\n  /a:\n    get:\n      summary: x\n",
			[]string{"line 5", "responses"}},
		{"every problem at once", `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a/{id}:
    get:
      responses:
        "200": {description: ok}
  /b:
    get:
      summary: no responses
`, []string{"line 4", "missing: [id]", "line 9", "responses"}},
		{"bad schema type", doc(`{type: integr}`), []string{"line 10", "integr"}},
		{"body that cannot be checked", `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a:
    post:
      requestBody:
        content:
          application/xml:
            schema: {type: object, properties: {a: {type: string}}}
      responses:
        "204": {description: ok}
`, []string{`POST /a`, `"application/xml"`, "cannot be checked"}},
		{"ambiguous templates", `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a/{x}{y}:
    get:
      parameters:
        - {name: x, in: path, required: true, schema: {type: string}}
        - {name: y, in: path, required: true, schema: {type: string}}
      responses:
        "200": {description: ok}
`, []string{"nothing between them"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := LoadData([]byte(tt.data), Options{})
			if err == nil {
				t.Fatalf("LoadData succeeded: %+v", v)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "shared.yaml")
	if err := os.WriteFile(outside, []byte("A: {type: string}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "api")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(sub, "escape.yaml")
	if err := os.WriteFile(escape, []byte(doc(`{$ref: "../shared.yaml#/A"}`)), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(sub, "broken.yaml")
	if err := os.WriteFile(broken, []byte("openapi: 3.0.3\ninfo: {title: t, version: \"1\"}\npaths:\n  /a:\n    get:\n      summary: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       []string // in the error; nil for success
	}{
		{"local file refs", "testdata/split/api.yaml", nil},
		{"url in a referenced file", "testdata/split/indirect.yaml", []string{"https://schemas.example.com/thing.yaml", "refused"}},
		{"file outside the directory", escape, []string{escape + ":11", "outside the document's directory"}},
		{"file and line of a problem", broken, []string{broken + ":5:", "responses"}},
		{"missing file", filepath.Join(dir, "nope.yaml"), []string{"nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path, Options{})
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadSplitValidates(t *testing.T) {
	v, err := Load("testdata/split/api.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		status     int
	}{
		{"valid", `{"name":"a","part":{"size":1}}`, 0},
		{"schema from the other file", `{"name":1}`, http.StatusBadRequest},
		{"closed across files", `{"name":"a","part":{"size":1,"colour":"red"}}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/things", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			res := v.Check(r)
			if got := status(res); got != tt.status {
				t.Errorf("status %d, want %d (%+v)", got, tt.status, res.Problem)
			}
		})
	}
}

func TestLoadOpenAPI31(t *testing.T) {
	v, err := Load("testdata/petstore31.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, body string
		status           int
		pointer          string
	}{
		{"valid", "/pets", `{"name":"Rex","kind":"dog","nickname":null,"age":3}`, 0, ""},
		{"type list", "/pets", `{"name":"Rex","kind":"dog","nickname":5}`, http.StatusBadRequest, "#/nickname"},
		{"exclusive minimum as a number", "/pets", `{"name":"Rex","kind":"dog","age":0}`, http.StatusBadRequest, "#/age"},
		{"unknown property", "/pets", `{"name":"Rex","kind":"dog","colour":"red"}`, http.StatusBadRequest, "#/colour"},
		{"2020-12 keyword, valid", "/labels", `{"label":"a","code":"A1"}`, 0, ""},
		{"2020-12 keyword, const", "/labels", `{"label":"a","code":"B2"}`, http.StatusBadRequest, "#/code"},
		{"2020-12 keyword, maxLength", "/labels", `{"label":"Rex is red ok"}`, http.StatusBadRequest, "#/label"},
		{"2020-12 keyword, unknown property", "/labels", `{"label":"a","colour":"red"}`, http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			res := v.Check(r)
			if got := status(res); got != tt.status {
				t.Fatalf("status %d, want %d (%+v)", got, tt.status, res.Problem)
			}
			if tt.status != 0 && (len(res.Problem.Errors) == 0 || res.Problem.Errors[0].Pointer != tt.pointer) {
				t.Errorf("violations %+v, want one at %q", res.Problem.Errors, tt.pointer)
			}
			for _, it := range errorsOf(res) {
				if strings.Contains(it.Detail, "Rex") || strings.Contains(it.Detail, "red") {
					t.Errorf("a violation quotes the request: %+v", it)
				}
			}
		})
	}
}

func TestLoadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"negative body cap", Options{MaxBodyBytes: -1}, "max body bytes"},
		{"negative response cap", Options{MaxResponseBytes: -1}, "max response bytes"},
		{"report without a function", Options{Responses: ResponsesReport}, "Report function"},
		{"unknown mode", Options{Responses: 7}, "unknown response mode"},
		{"relative prefix", Options{Prefix: "api"}, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("testdata/petstore.yaml", tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func status(res Result) int {
	if res.Problem == nil {
		return 0
	}
	return res.Problem.Status
}

func errorsOf(res Result) []problem.Item {
	if res.Problem == nil {
		return nil
	}
	return res.Problem.Errors
}
