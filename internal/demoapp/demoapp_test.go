package demoapp

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newTestApp returns an App that logs to the test's output.
func newTestApp(t *testing.T) *App {
	t.Helper()
	return New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// serve starts a on a loopback server closed at the end of the test.
func serve(t *testing.T, a *App) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv
}

// do sends one request and returns the response with its body read.
func do(t *testing.T, srv *httptest.Server, method, path string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	// Plain client: no redirects followed, so a 301 is seen as such.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(b)
}

func TestEndpoints(t *testing.T) {
	a := newTestApp(t)
	a.ticks = 2
	a.tick = 1 // nanosecond: the stream's timing has its own tests
	srv := serve(t, a)
	jsonBody := http.Header{"Content-Type": {"application/json"}}

	tests := []struct {
		name         string
		method       string
		path         string
		header       http.Header
		body         string
		wantStatus   int
		wantType     string   // media type of Content-Type, without parameters
		wantBody     []string // substrings of the body
		wantLocation string
	}{
		{name: "index page", method: "GET", path: "/", wantStatus: 200, wantType: "text/html", wantBody: []string{"<title>Moat demo application</title>", `href="/api/items"`, `href="/api/openapi.json"`, `href="/headers"`, `href="/events"`}},
		{name: "index answers HEAD", method: "HEAD", path: "/", wantStatus: 200, wantType: "text/html"},
		{name: "stylesheet", method: "GET", path: "/static/style.css", wantStatus: 200, wantType: "text/css", wantBody: []string{"--accent"}},
		{name: "script", method: "GET", path: "/static/headers.js", wantStatus: 200, wantType: "text/javascript", wantBody: []string{"response-headers"}},
		{name: "unknown static file", method: "GET", path: "/static/nope.js", wantStatus: 404},
		{name: "static directory is not listed", method: "GET", path: "/static/", wantStatus: 404},
		{name: "list items", method: "GET", path: "/api/items", wantStatus: 200, wantType: "application/json", wantBody: []string{`"items"`, `"Drawbridge"`}},
		{name: "one item", method: "GET", path: "/api/items/2", wantStatus: 200, wantType: "application/json", wantBody: []string{`"id": 2`, `"Portcullis"`}},
		{name: "missing item", method: "GET", path: "/api/items/999", wantStatus: 404, wantType: "application/problem+json", wantBody: []string{`"status": 404`, "no item with id 999"}},
		{name: "malformed item id", method: "GET", path: "/api/items/abc", wantStatus: 400, wantType: "application/problem+json"},
		{name: "create item", method: "POST", path: "/api/items", header: jsonBody, body: `{"name":"Rope","price":3}`, wantStatus: 201, wantType: "application/json", wantBody: []string{`"name": "Rope"`}},
		{name: "create bad item", method: "POST", path: "/api/items", header: jsonBody, body: `{"name":"","price":3}`, wantStatus: 400, wantType: "application/problem+json", wantBody: []string{"1 to 100 characters"}},
		{name: "delete item", method: "DELETE", path: "/api/items/1", wantStatus: 204},
		{name: "delete missing item", method: "DELETE", path: "/api/items/999", wantStatus: 404, wantType: "application/problem+json"},
		{name: "method not allowed", method: "PUT", path: "/api/items/1", wantStatus: 405},
		{name: "openapi document", method: "GET", path: "/api/openapi.json", wantStatus: 200, wantType: "application/json", wantBody: []string{`"openapi": "3.0.3"`}},
		{name: "headers echo", method: "GET", path: "/headers", header: http.Header{"X-Demo": {"hello"}}, wantStatus: 200, wantType: "application/json", wantBody: []string{`"X-Demo": [`, `"hello"`}},
		{name: "event stream", method: "GET", path: "/events", wantStatus: 200, wantType: "text/event-stream", wantBody: []string{"event: tick", "event: done"}},
		{name: "boom", method: "GET", path: "/boom", wantStatus: 500, wantType: "text/plain", wantBody: []string{"goroutine 1 [running]", "/srv/app/internal/secret/db.go:42"}},
		{name: "admin area", method: "GET", path: "/admin/", wantStatus: 200, wantType: "text/html", wantBody: []string{"<title>Demo admin area</title>"}},
		{name: "admin subtree", method: "GET", path: "/admin/users", wantStatus: 200, wantType: "text/html", wantBody: []string{"Demo admin area"}},
		{name: "admin without slash redirects", method: "GET", path: "/admin", wantStatus: http.StatusTemporaryRedirect, wantLocation: "/admin/"},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, srv, tt.method, tt.path, tt.header, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Server"); got != ServerBanner {
				t.Errorf("Server = %q, want %q", got, ServerBanner)
			}
			if got := resp.Header.Get("X-Powered-By"); got != PoweredByBanner {
				t.Errorf("X-Powered-By = %q, want %q", got, PoweredByBanner)
			}
			if tt.wantType != "" {
				ct := resp.Header.Get("Content-Type")
				if mt, _, _ := strings.Cut(ct, ";"); mt != tt.wantType {
					t.Errorf("Content-Type = %q, want %s", ct, tt.wantType)
				}
			}
			if got := resp.Header.Get("Location"); tt.wantLocation != "" && got != tt.wantLocation {
				t.Errorf("Location = %q, want %q", got, tt.wantLocation)
			}
			for _, want := range tt.wantBody {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q; body:\n%s", want, body)
				}
			}
		})
	}
}

// TestEveryEndpointAnswers keeps the endpoint table honest: each entry is
// registered and reached by a request of its own method.
func TestEveryEndpointAnswers(t *testing.T) {
	a := newTestApp(t)
	a.ticks = 1
	a.tick = 1
	srv := serve(t, a)
	concrete := strings.NewReplacer("{$}", "", "{id}", "3", "{file}", "style.css")
	for _, e := range a.endpoints {
		t.Run(e.pattern(), func(t *testing.T) {
			path := concrete.Replace(e.path)
			var h http.Header
			var body string
			if e.method == "POST" {
				h = http.Header{"Content-Type": {"application/json"}}
				body = `{"name":"x","price":1}`
			}
			resp, _ := do(t, srv, e.method, path, h, body)
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d: the endpoint is not reachable", e.method, path, resp.StatusCode)
			}
		})
	}
}

func TestNilLogger(t *testing.T) {
	srv := serve(t, New(nil))
	resp, _ := do(t, srv, "GET", "/admin/", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
}
