package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

func mustLoad(t testing.TB, opts Options) *Validator {
	t.Helper()
	v, err := Load("testdata/petstore.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// gateway is a validator in front of an upstream that records what it
// receives, both on loopback.
type gateway struct {
	url string
	mu  sync.Mutex
	got []received
}

type received struct {
	method, path string
	body         []byte
}

func startGateway(t *testing.T, v *Validator, upstream http.HandlerFunc) *gateway {
	t.Helper()
	g := &gateway{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream reading the body: %v", err)
		}
		g.mu.Lock()
		g.got = append(g.got, received{r.Method, r.URL.RequestURI(), body})
		g.mu.Unlock()
		if upstream != nil {
			upstream(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = v.ModifyResponse
	srv := httptest.NewServer(v.Handler(proxy))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *gateway) received() []received {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]received(nil), g.got...)
}

type problemBody struct {
	Status int            `json:"status"`
	Detail string         `json:"detail"`
	Errors []problem.Item `json:"errors"`
}

const validPet = `{
  "name": "Rex", "kind": "dog", "tags": ["good", "old"], "birthday": "2015-04-01",
  "microchip": {"id": "123456789012345", "vendor": "Acme"},
  "owner": {"name": "Ann", "email": "ann@example.com",
            "address": {"street": "1 Main St", "city": "Springfield", "country": "US"}},
  "attributes": {"anything": ["goes", 1, {"here": true}]}
}`

type checkCase struct {
	name    string
	method  string
	target  string
	header  map[string]string
	body    string
	chunked bool                // send the body without a Content-Length
	repeat  map[string][]string // header fields sent more than once

	status int
	allow  string
	items  []problem.Item // expected violations, in order; Detail checked when set
}

func TestCheckRoundTrip(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []checkCase{
		// Valid requests reach the upstream.
		{name: "list pets", method: "GET", target: "/v1/pets?limit=10&tags=a&tags=b&status=sold",
			header: map[string]string{"X-Api-Version": "2"}, status: 200},
		{name: "show pet with cookie", method: "GET", target: "/v1/pets/42",
			header: map[string]string{"Cookie": "locale=en"}, status: 200},
		{name: "head where get is documented", method: "HEAD", target: "/v1/pets/42", status: 200},
		{name: "create pet as json", method: "POST", target: "/v1/pets", header: jsonCT, body: validPet, status: 200},
		{name: "create pet as json with charset", method: "POST", target: "/v1/pets",
			header: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"name":"Tom","kind":"cat"}`, status: 200},
		{name: "create pet chunked", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Tom","kind":"cat"}`, chunked: true, status: 200},
		{name: "create pet as form", method: "POST", target: "/v1/pets",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Rex&kind=dog&age=3", status: 200},
		{name: "add a text note", method: "POST", target: "/v1/pets/42/notes",
			header: map[string]string{"Content-Type": "text/plain"}, body: "Likes long walks.", status: 200},
		{name: "replace pet", method: "PUT", target: "/v1/pets/42",
			header: map[string]string{"Content-Type": "application/json", "If-Match": `"v1"`}, body: `{"name":"Rex","kind":"dog"}`, status: 200},
		{name: "delete pet with cookie", method: "DELETE", target: "/v1/pets/42",
			header: map[string]string{"Cookie": "confirm=yes"}, status: 200},
		{name: "owner by uuid", method: "PUT", target: "/v1/owners/0b0e4d2a-7c43-4a8e-9b1e-2f0c7a9d8e11", header: jsonCT,
			body: `{"name":"Ann","email":"ann@example.com"}`, status: 200},
		{name: "two path parameters", method: "GET", target: "/v1/users/alice_1/pets/7", status: 200},
		{name: "templated segment", method: "GET", target: "/v1/files/report-2024.json", status: 200},
		{name: "literal segment", method: "GET", target: "/v1/files/latest.json", status: 200},

		// Path and method.
		{name: "unknown path", method: "GET", target: "/v1/cats", status: 404},
		{name: "path outside the server base", method: "GET", target: "/pets", status: 404},
		{name: "wrong method", method: "PATCH", target: "/v1/pets/42", status: 405, allow: "DELETE, GET, HEAD, PUT"},
		{name: "undocumented options", method: "OPTIONS", target: "/v1/pets", status: 405, allow: "GET, HEAD, POST"},
		{name: "templated segment with a bad name", method: "GET", target: "/v1/files/Report.json", status: 400,
			items: []problem.Item{{In: "path", Name: "name", Detail: "must match the pattern ^[a-z0-9-]+$"}}},

		// Parameters.
		{name: "path parameter not an integer", method: "GET", target: "/v1/pets/abc", status: 400,
			items: []problem.Item{{In: "path", Name: "petId", Detail: "must be an integer"}}},
		{name: "path parameter below minimum", method: "GET", target: "/v1/pets/0", status: 400,
			items: []problem.Item{{In: "path", Name: "petId", Detail: "must be at least 1"}}},
		{name: "undocumented query parameter", method: "GET", target: "/v1/pets?debug=1", status: 400,
			items: []problem.Item{{In: "query", Name: "debug", Detail: "is not a documented parameter"}}},
		{name: "query over maximum", method: "GET", target: "/v1/pets?limit=1000", status: 400,
			items: []problem.Item{{In: "query", Name: "limit", Detail: "must be at most 100"}}},
		{name: "query not in enum", method: "GET", target: "/v1/pets?status=lost", status: 400,
			items: []problem.Item{{In: "query", Name: "status", Detail: `must be one of "available", "pending", "sold"`}}},
		{name: "query array too long", method: "GET", target: "/v1/pets?tags=a&tags=b&tags=c&tags=d&tags=e&tags=f", status: 400,
			items: []problem.Item{{In: "query", Name: "tags", Detail: "must have at most 5 items"}}},
		{name: "query array item too long", method: "GET", target: "/v1/pets?tags=a&tags=" + strings.Repeat("x", 21), status: 400,
			items: []problem.Item{{In: "query", Name: "tags", Pointer: "#/1", Detail: "must be at most 20 characters long"}}},
		{name: "malformed query", method: "GET", target: "/v1/pets?limit=%zz", status: 400,
			items: []problem.Item{{In: "query", Detail: "the query string is not well-formed"}}},
		{name: "repeated query parameter", method: "GET", target: "/v1/pets?limit=5&limit=1000", status: 400,
			items: []problem.Item{{In: "query", Name: "limit", Detail: "must be sent once"}}},
		{name: "repeated array query parameter", method: "GET", target: "/v1/pets?tags=a&tags=a", status: 200},
		{name: "repeated header", method: "GET", target: "/v1/pets", repeat: map[string][]string{"X-Api-Version": {"1", "3"}}, status: 400,
			items: []problem.Item{{In: "header", Name: "X-Api-Version", Detail: "must be sent once"}}},
		{name: "repeated cookie", method: "GET", target: "/v1/pets/42", header: map[string]string{"Cookie": "locale=en; locale=fr"}, status: 400,
			items: []problem.Item{{In: "cookie", Name: "locale", Detail: "must be sent once"}}},
		{name: "header not in enum", method: "GET", target: "/v1/pets", header: map[string]string{"X-Api-Version": "3"}, status: 400,
			items: []problem.Item{{In: "header", Name: "X-Api-Version"}}},
		{name: "missing required header", method: "PUT", target: "/v1/pets/42", header: jsonCT, body: `{"name":"Rex","kind":"dog"}`, status: 400,
			items: []problem.Item{{In: "header", Name: "If-Match", Detail: "is required"}}},
		{name: "missing required cookie", method: "DELETE", target: "/v1/pets/42", status: 400,
			items: []problem.Item{{In: "cookie", Name: "confirm", Detail: "is required"}}},
		{name: "cookie against its pattern", method: "GET", target: "/v1/pets/42", header: map[string]string{"Cookie": "locale=EN1"}, status: 400,
			items: []problem.Item{{In: "cookie", Name: "locale"}}},
		{name: "invalid uuid", method: "PUT", target: "/v1/owners/not-a-uuid", header: jsonCT, body: `{"name":"Ann","email":"ann@example.com"}`, status: 400,
			items: []problem.Item{{In: "path", Name: "ownerId", Detail: "must be a valid uuid"}}},

		// Bodies.
		{name: "missing required property", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"kind":"dog"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/name", Detail: "is required"}}},
		{name: "nested invalid value", method: "POST", target: "/v1/pets", header: jsonCT,
			body:   `{"name":"Rex","kind":"dog","owner":{"name":"Ann","email":"ann@example.com","address":{"street":"s","city":"c","country":"france"}}}`,
			status: 400, items: []problem.Item{{In: "body", Pointer: "#/owner/address/country", Detail: "must match the pattern ^[A-Z]{2}$"}}},
		{name: "unknown property refused", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog","color":"brown"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/color", Detail: "is not a documented property"}}},
		{name: "unknown nested property refused", method: "POST", target: "/v1/pets", header: jsonCT,
			body: `{"name":"Rex","kind":"dog","microchip":{"id":"123456789012345","implanted":true}}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/microchip/implanted", Detail: "is not a documented property"}}},
		{name: "wrong type", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":5,"kind":"dog"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/name", Detail: "must be a string"}}},
		{name: "enum", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Nemo","kind":"fish"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/kind", Detail: `must be one of "dog", "cat", "bird"`}}},
		{name: "date format", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog","birthday":"yesterday"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/birthday", Detail: "must be a valid date"}}},
		{name: "email format", method: "PUT", target: "/v1/owners/0b0e4d2a-7c43-4a8e-9b1e-2f0c7a9d8e11", header: jsonCT, body: `{"name":"Ann","email":"nope"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/email", Detail: "must be a valid email"}}},
		{name: "missing body", method: "POST", target: "/v1/pets", header: jsonCT, status: 400,
			items: []problem.Item{{In: "body", Detail: "a request body is required"}}},
		{name: "body where none is documented", method: "GET", target: "/v1/pets", header: jsonCT, body: `{}`, status: 400,
			items: []problem.Item{{In: "body", Detail: "this operation takes no request body"}}},
		{name: "chunked body where none is documented", method: "DELETE", target: "/v1/pets/42", header: map[string]string{"Cookie": "confirm=yes"}, body: `x`, chunked: true, status: 400,
			items: []problem.Item{{In: "body", Detail: "this operation takes no request body"}}},
		{name: "not json", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":`, status: 400,
			items: []problem.Item{{In: "body", Detail: "is not valid JSON"}}},
		{name: "repeated member name", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog","name":"Max"}`, status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/name", Detail: "repeats a member name"}}},
		{name: "data after the json value", method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog"} {"admin":true}`, status: 400,
			items: []problem.Item{{In: "body", Detail: "has data after the JSON value"}}},
		{name: "form field not an integer", method: "POST", target: "/v1/pets",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Rex&kind=dog&age=old", status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/age", Detail: "must be an integer"}}},
		{name: "undocumented form field", method: "POST", target: "/v1/pets",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Rex&kind=dog&admin=1", status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/admin", Detail: "is not a documented field"}}},
		{name: "repeated form field", method: "POST", target: "/v1/pets",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Rex&kind=dog&kind=cat", status: 400,
			items: []problem.Item{{In: "body", Pointer: "#/kind", Detail: "must be sent once"}}},
		{name: "text too long", method: "POST", target: "/v1/pets/42/notes",
			header: map[string]string{"Content-Type": "text/plain"}, body: strings.Repeat("a", 201), status: 400,
			items: []problem.Item{{In: "body", Detail: "must be at most 200 characters long"}}},
		{name: "undocumented media type", method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "text/plain"}, body: `name=Rex`, status: 415},
		{name: "no media type", method: "POST", target: "/v1/pets", body: `{"name":"Rex","kind":"dog"}`, status: 415},
		{name: "malformed media type", method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "application/json; ="}, body: `{}`, status: 415},

		// Several violations at once are all listed, path first.
		{name: "multiple violations", method: "POST", target: "/v1/pets/0/notes?x=1",
			header: map[string]string{"Content-Type": "text/plain"}, body: "", status: 400,
			items: []problem.Item{
				{In: "path", Name: "petId", Detail: "must be at least 1"},
				{In: "query", Name: "x", Detail: "is not a documented parameter"},
				{In: "body", Detail: "a request body is required"},
			}},
		{name: "multiple body violations", method: "POST", target: "/v1/pets", header: jsonCT,
			body: `{"kind":"fish","tags":[1],"extra":0}`, status: 400,
			items: []problem.Item{
				{In: "body", Pointer: "#/extra", Detail: "is not a documented property"},
				{In: "body", Pointer: "#/kind"},
				{In: "body", Pointer: "#/tags/0", Detail: "must be a string"},
				{In: "body", Pointer: "#/name", Detail: "is required"},
			}},
	}
	v := mustLoad(t, Options{})
	g := startGateway(t, v, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.received())
			resp, body := send(t, g.url, tt)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			rec := g.received()
			if tt.status != 200 {
				if len(rec) != before {
					t.Errorf("a refused request reached the upstream: %+v", rec[before:])
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				var p problemBody
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatalf("problem body %s: %v", body, err)
				}
				if p.Status != tt.status {
					t.Errorf("problem status %d", p.Status)
				}
				checkItems(t, p.Errors, tt.items)
				return
			}
			if len(rec) != before+1 {
				t.Fatalf("the upstream received %d requests, want 1", len(rec)-before)
			}
			got := rec[len(rec)-1]
			if got.method != tt.method || got.path != tt.target {
				t.Errorf("upstream got %s %s, want %s %s", got.method, got.path, tt.method, tt.target)
			}
			if tt.method != "HEAD" && string(got.body) != tt.body {
				t.Errorf("upstream got body %q, want exactly %q", got.body, tt.body)
			}
		})
	}
}

func send(t *testing.T, base string, tt checkCase) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if tt.body != "" {
		body = strings.NewReader(tt.body)
		if tt.chunked {
			body = io.MultiReader(body) // hides the length
		}
	}
	req, err := http.NewRequest(tt.method, base+tt.target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, val := range tt.header {
		req.Header.Set(k, val)
	}
	for k, vals := range tt.repeat {
		for _, val := range vals {
			req.Header.Add(k, val)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func checkItems(t *testing.T, got, want []problem.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d violations %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.In != w.In || g.Name != w.Name || g.Pointer != w.Pointer || (w.Detail != "" && g.Detail != w.Detail) || g.Detail == "" {
			t.Errorf("violation %d is %+v, want %+v", i, g, w)
		}
	}
}

func TestCheckOptions(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	big := `{"name":"Rex","kind":"dog","tags":["` + strings.Repeat("x", 100) + `"]}`
	tests := []struct {
		name string
		opts Options
		checkCase
	}{
		{"unknown property refused by default", Options{},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog","color":"brown"}`, status: 400}},
		{"unknown property accepted when allowed", Options{AllowUnknownProperties: true},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"dog","color":"brown","owner":{"name":"A","email":"a@b","x":1}}`, status: 200}},
		{"unknown form field accepted when allowed", Options{AllowUnknownProperties: true},
			checkCase{method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "name=Rex&kind=dog&admin=1", status: 200}},
		{"documented properties still checked when unknown ones are allowed", Options{AllowUnknownProperties: true},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: `{"name":"Rex","kind":"fish","color":"brown"}`, status: 400}},
		{"unknown query accepted when allowed", Options{AllowUnknownQuery: true},
			checkCase{method: "GET", target: "/v1/pets?debug=1&limit=5", status: 200}},
		{"body at the cap", Options{MaxBodyBytes: int64(len(big))},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: big, status: 200}},
		{"body over the cap", Options{MaxBodyBytes: int64(len(big)) - 1},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: big, status: 413}},
		{"chunked body over the cap", Options{MaxBodyBytes: int64(len(big)) - 1},
			checkCase{method: "POST", target: "/v1/pets", header: jsonCT, body: big, chunked: true, status: 413}},
		{"prefix", Options{Prefix: "/api/"},
			checkCase{method: "GET", target: "/api/v1/pets/7", status: 200}},
		{"path outside the prefix", Options{Prefix: "/api"},
			checkCase{method: "GET", target: "/v1/pets/7", status: 404}},
		{"prefix at a segment boundary only", Options{Prefix: "/api"},
			checkCase{method: "GET", target: "/apiv1/pets/7", status: 404}},
		{"servers ignored", Options{IgnoreServers: true},
			checkCase{method: "GET", target: "/pets/7", status: 200}},
		{"server base not accepted when ignored", Options{IgnoreServers: true},
			checkCase{method: "GET", target: "/v1/pets/7", status: 404}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, mustLoad(t, tt.opts), nil)
			resp, body := send(t, g.url, tt.checkCase)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			rec := g.received()
			if tt.status == 200 {
				if len(rec) != 1 || string(rec[0].body) != tt.body || rec[0].path != tt.target {
					t.Errorf("upstream received %+v, want the request as sent", rec)
				}
			} else if len(rec) != 0 {
				t.Errorf("a refused request reached the upstream")
			}
		})
	}
}

// TestNoEcho sends attacker markup in every place a request can hold it and
// checks that no response quotes it.
func TestNoEcho(t *testing.T) {
	const payload = "<script>alert(1)</script>"
	esc := url.QueryEscape(payload)
	tests := []checkCase{
		{name: "path parameter", method: "GET", target: "/v1/pets/" + url.PathEscape(payload), status: 400},
		{name: "query name and value", method: "GET", target: "/v1/pets?" + esc + "=" + esc + "&limit=" + esc + "&status=" + esc, status: 400},
		{name: "header", method: "GET", target: "/v1/pets", header: map[string]string{"X-Api-Version": payload}, status: 400},
		{name: "cookie", method: "GET", target: "/v1/pets/1", header: map[string]string{"Cookie": "locale=" + esc}, status: 400},
		{name: "body value and key", method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "application/json"},
			body: `{"name":"` + strings.Repeat("x", 50) + `<script>alert(1)</script>","kind":"<script>alert(1)</script>","<script>alert(1)</script>":1}`, status: 400},
		{name: "form", method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			body: "name=Rex&kind=" + esc + "&" + esc + "=1&age=" + esc, status: 400},
		{name: "media type", method: "POST", target: "/v1/pets", header: map[string]string{"Content-Type": "text/" + payload}, body: "x", status: 415},
	}
	g := startGateway(t, mustLoad(t, Options{}), nil)
	for _, tt := range tests {
		for _, accept := range []string{"application/json", "text/html"} {
			t.Run(tt.name+" "+accept, func(t *testing.T) {
				c := tt
				c.header = map[string]string{"Accept": accept}
				for k, v := range tt.header {
					c.header[k] = v
				}
				resp, body := send(t, g.url, c)
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
				}
				for _, bad := range []string{"<script", "alert(1)", `\u003cscript`, "&lt;script"} {
					if strings.Contains(string(body), bad) {
						t.Errorf("the response quotes the payload (%q):\n%s", bad, body)
					}
				}
			})
		}
	}
}

func TestCheckOperation(t *testing.T) {
	v := mustLoad(t, Options{})
	tests := []struct {
		name, method, target, want string
	}{
		{"literal preferred over template", "GET", "/v1/files/latest.json", "getLatestFile"},
		{"template", "GET", "/v1/files/latest2.json", "getFile"},
		{"head uses get", "HEAD", "/v1/pets/3", "showPet"},
		{"encoded digits in a parameter", "GET", "/v1/pets/%34%32", "showPet"},
		{"exact server base", "GET", "/v1/pets", "listPets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := v.Check(httptest.NewRequest(tt.method, tt.target, nil))
			if !res.OK() || res.Operation == nil || res.Operation.ID != tt.want {
				t.Errorf("Check = %+v (%v), want operation %s", res, res.Problem, tt.want)
			}
		})
	}
}

// closeRecorder is a request body that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestCheckRestoresBody(t *testing.T) {
	v := mustLoad(t, Options{})
	const body = "{\n  \"name\" : \"Rex\",\t\"kind\":\"dog\"\n}\n"
	orig := &closeRecorder{Reader: strings.NewReader(body)}
	r := httptest.NewRequest("POST", "/v1/pets", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Body, r.ContentLength = orig, -1
	if res := v.Check(r); !res.OK() {
		t.Fatalf("Check: %+v", res.Problem)
	}
	if r.ContentLength != int64(len(body)) {
		t.Errorf("ContentLength %d, want %d", r.ContentLength, len(body))
	}
	for i := range 2 {
		var got []byte
		if i == 0 {
			got, _ = io.ReadAll(r.Body)
		} else {
			rc, err := r.GetBody()
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(rc)
		}
		if string(got) != body {
			t.Errorf("body read %d is %q, want %q", i, got, body)
		}
	}
	if orig.closed {
		t.Error("Check closed the client's body")
	}
	r.Body.Close()
	if !orig.closed {
		t.Error("closing the restored body leaves the client's body open")
	}
}

func TestHandlerRequestID(t *testing.T) {
	v := mustLoad(t, Options{})
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a refused request reached the next handler")
	}))
	r := httptest.NewRequest("DELETE", "/v1/pets", nil)
	r = r.WithContext(request.With(r.Context(), &request.Info{ID: "req-7"}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var p struct {
		Status    int    `json:"status"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if w.Code != 405 || p.Status != 405 || p.RequestID != "req-7" || w.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("got %d %+v Allow %q", w.Code, p, w.Header().Get("Allow"))
	}
}

// TestCheckConcurrent runs Checks of valid and invalid requests from many
// goroutines on one Validator; with -race it shows that they share nothing
// writable.
func TestCheckConcurrent(t *testing.T) {
	for _, file := range []string{"testdata/petstore.yaml", "testdata/petstore31.yaml"} {
		v, err := Load(file, Options{})
		if err != nil {
			t.Fatal(err)
		}
		path := "/v1/pets"
		if strings.Contains(file, "31") {
			path = "/pets"
		}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := range 50 {
					body := `{"name":"Rex","kind":"dog"}`
					want := true
					if (i+j)%2 == 1 {
						body, want = `{"name":"Rex","kind":"fish","x":1}`, false
					}
					r := httptest.NewRequest("POST", path, strings.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					if res := v.Check(r); res.OK() != want {
						t.Errorf("%s: Check(%s) ok=%v", file, body, res.OK())
					}
				}
			})
		}
		wg.Wait()
	}
}

// TestComposedBodies checks closing where allOf and oneOf compose a body,
// as JSON and as a form.
func TestComposedBodies(t *testing.T) {
	const doc = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a:
    post:
      requestBody:
        content:
          application/x-www-form-urlencoded:
            schema: {$ref: "#/components/schemas/F"}
          application/json:
            schema:
              oneOf:
                - {$ref: "#/components/schemas/F"}
                - {type: object, required: [z], properties: {z: {type: string}}}
      responses:
        "204": {description: ok}
components:
  schemas:
    B: {type: object, properties: {a: {type: string}, n: {type: integer}}}
    F:
      type: object
      allOf:
        - $ref: "#/components/schemas/B"
        - {type: object, properties: {b: {type: array, items: {type: string}}}}
`
	form, jsonCT := "application/x-www-form-urlencoded", "application/json"
	tests := []struct {
		name, contentType, body string
		allow                   bool
		items                   []problem.Item
	}{
		{"form with fields of both members", form, "a=x&n=3&b=1&b=2", false, nil},
		{"form with an unknown field", form, "a=x&n=q&c=1", false, []problem.Item{
			{In: "body", Pointer: "#/c", Detail: "is not a documented field"},
			{In: "body", Pointer: "#/n", Detail: "must be an integer"},
		}},
		{"form with an unknown field, allowed", form, "a=x&c=1", true, nil},
		{"json matching the allOf alternative", jsonCT, `{"a":"x","b":["1"]}`, false, nil},
		{"json matching the plain alternative", jsonCT, `{"z":"x"}`, false, nil},
		{"json with a property of the other alternative", jsonCT, `{"z":"x","a":"y"}`, false, []problem.Item{
			{In: "body", Detail: "must match exactly one of the documented alternatives"},
		}},
		{"json with a property of the other alternative, allowed", jsonCT, `{"z":"x","a":"y"}`, true, []problem.Item{
			{In: "body", Detail: "must match exactly one of the documented alternatives"}, // both match
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := LoadData([]byte(doc), Options{AllowUnknownProperties: tt.allow})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "/a", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", tt.contentType)
			res := v.Check(r)
			if tt.items == nil {
				if !res.OK() {
					t.Fatalf("refused: %+v", res.Problem.Errors)
				}
				return
			}
			if res.OK() {
				t.Fatal("accepted")
			}
			checkItems(t, res.Problem.Errors, tt.items)
		})
	}
}
