package openapi

import (
	"fmt"
	"strings"
	"testing"
)

func buildRouter(t testing.TB, templates ...string) *router {
	t.Helper()
	rt := newRouter()
	for _, tpl := range templates {
		ep := &endpoint{template: tpl, methods: []methodOp{{"GET", &Operation{Method: "GET", Path: tpl}}}}
		ep.finish()
		if err := rt.add(tpl, ep); err != nil {
			t.Fatal(err)
		}
	}
	return rt
}

// params renders a match's parameters as "name=value" pairs.
func (m *match) params() string {
	var b []string
	for i := 0; i < m.n; i++ {
		b = append(b, m.ep.names[i]+"="+m.vals[i])
	}
	return strings.Join(b, " ")
}

func TestRouterLookup(t *testing.T) {
	rt := buildRouter(t,
		"/",
		"/pets",
		"/pets/",
		"/pets/{id}",
		"/pets/{petId}/photos/{n}",
		"/files/{name}.json",
		"/files/latest.json",
		"/files/{name}",
		"/a/b/{y}",
		"/a/{x}/c/d",
		"/v{major}.{minor}/info",
		"/reports/{year}-{month}/{kind}.{format}",
	)
	tests := []struct {
		name, path, template, params string
	}{
		{"root", "/", "/", ""},
		{"literal", "/pets", "/pets", ""},
		{"trailing slash is its own path", "/pets/", "/pets/", ""},
		{"parameter", "/pets/42", "/pets/{id}", "id=42"},
		{"same shape, other names", "/pets/42/photos/3", "/pets/{petId}/photos/{n}", "petId=42 n=3"},
		{"percent-decoded value", "/pets/a%20b", "/pets/{id}", "id=a b"},
		{"encoded slash stays in the value", "/pets/a%2Fb", "/pets/{id}", "id=a/b"},
		{"templated segment", "/files/report.json", "/files/{name}.json", "name=report"},
		{"templated segment, dots in the value", "/files/a.b.json", "/files/{name}.json", "name=a.b"},
		{"literal preferred over templated", "/files/latest.json", "/files/latest.json", ""},
		{"more literal text preferred", "/files/x.json", "/files/{name}.json", "name=x"},
		{"plain parameter as last resort", "/files/x.yaml", "/files/{name}", "name=x.yaml"},
		{"literal branch first", "/a/b/c", "/a/b/{y}", "y=c"},
		{"backtracks out of the literal branch", "/a/b/c/d", "/a/{x}/c/d", "x=b"},
		{"two parameters in a segment", "/v1.2/info", "/v{major}.{minor}/info", "major=1 minor=2"},
		{"first separator ends the first parameter", "/v1.2.3/info", "/v{major}.{minor}/info", "major=1 minor=2.3"},
		{"four parameters", "/reports/2024-05/sales.csv", "/reports/{year}-{month}/{kind}.{format}", "year=2024 month=05 kind=sales format=csv"},
		{"empty parameter", "/pets//photos/1", "", ""},
		{"empty last segment", "/v1./info", "", ""},
		{"missing separator", "/v1/info", "", ""},
		{"unknown", "/cats", "", ""},
		{"too long", "/pets/1/photos/2/3", "", ""},
		{"extra slash", "/pets/1/", "", ""},
		{"dot dot", "/pets/..", "", ""},
		{"encoded dot dot", "/pets/%2e%2E", "", ""},
		{"dot", "/files/.", "", ""},
		{"invalid escape", "/pets/%zz", "", ""},
		{"no leading slash", "pets", "", ""},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m match
			found := rt.lookup(tt.path, &m)
			switch {
			case found != (tt.template != ""):
				t.Fatalf("lookup(%q) found=%v, want template %q", tt.path, found, tt.template)
			case !found:
				return
			case m.ep.template != tt.template:
				t.Errorf("lookup(%q) = %s, want %s", tt.path, m.ep.template, tt.template)
			case m.params() != tt.params:
				t.Errorf("lookup(%q) params %q, want %q", tt.path, m.params(), tt.params)
			}
		})
	}
}

func TestRouterAdd(t *testing.T) {
	tests := []struct {
		name      string
		templates []string
		want      string // in the error; "" for none
	}{
		{"distinct", []string{"/a/{x}", "/a/{x}/b", "/a/b"}, ""},
		{"same requests", []string{"/a/{x}", "/a/{y}"}, "match the same requests"},
		{"adjacent parameters", []string{"/a/{x}{y}"}, "nothing between them"},
		{"unclosed", []string{"/a/{x"}, "unmatched {"},
		{"unopened", []string{"/a/x}"}, "unmatched }"},
		{"empty name", []string{"/a/{}"}, "invalid parameter name"},
		{"relative", []string{"a/b"}, "does not start with /"},
		{"too many parameters", []string{"/" + strings.Repeat("{p}/", maxParams) + "{q}"}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRouter()
			var err error
			for _, tpl := range tt.templates {
				if err = rt.add(tpl, &endpoint{template: tpl}); err != nil {
					break
				}
			}
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("add = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestEndpointMethods(t *testing.T) {
	op := func(m string) methodOp { return methodOp{m, &Operation{Method: m}} }
	tests := []struct {
		name    string
		methods []methodOp
		method  string
		want    string // method of the operation found, "" for none
		allow   string
	}{
		{"documented", []methodOp{op("POST"), op("GET")}, "POST", "POST", "GET, HEAD, POST"},
		{"head falls back to get", []methodOp{op("GET")}, "HEAD", "GET", "GET, HEAD"},
		{"own head", []methodOp{op("GET"), op("HEAD")}, "HEAD", "HEAD", "GET, HEAD"},
		{"no head without get", []methodOp{op("POST")}, "HEAD", "", "POST"},
		{"options not implied", []methodOp{op("GET")}, "OPTIONS", "", "GET, HEAD"},
		{"methods are case-sensitive", []methodOp{op("GET")}, "get", "", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := &endpoint{methods: tt.methods}
			ep.finish()
			got := ep.operation(tt.method)
			if (got == nil) != (tt.want == "") || got != nil && got.Method != tt.want {
				t.Errorf("operation(%s) = %v, want %s", tt.method, got, tt.want)
			}
			if ep.allow != tt.allow {
				t.Errorf("Allow %q, want %q", ep.allow, tt.allow)
			}
		})
	}
}

// generatedTemplates returns n templates shaped like a large API's:
// resources with nested collections, templated segments and literals.
func generatedTemplates(n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		r := fmt.Sprintf("/api/v%d/resource%d", i%3+1, i)
		for _, tpl := range []string{
			r,
			r + "/{id}",
			r + "/{id}/items",
			r + "/{id}/items/{itemId}",
			r + "/{id}/export.{format}",
			r + "/search",
		} {
			if len(out) < n {
				out = append(out, tpl)
			}
		}
	}
	return out
}
