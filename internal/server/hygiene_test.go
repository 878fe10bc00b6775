package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRequestLimitsThroughGateway: a route's request limits refuse what
// breaks them, with the status the limit names and a security event, and
// an upstream never sees a refused body whole.
func TestRequestLimitsThroughGateway(t *testing.T) {
	var reached atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return // a body cut off on its way
		}
		reached.Add(1)
		fmt.Fprintf(w, "%d bytes", len(b))
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf(`  - name: api
    path: /api
    policy: public
    upstreams: [%[1]q]
    max_request_body: 64KiB
    request:
      content_types: [application/json, text/plain]
      body_caps: {text/plain: 16B}
      max_json_depth: 4
      max_query_params: 3
  - name: site
    path: /
    policy: public
    upstreams: [%[1]q]
    request:
      allow_encoded_slash: true
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	post := func(path, ctype, body string, chunked bool) (int, string) {
		t.Helper()
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(strings.NewReader(body)) // no length known: sent chunked
		}
		req, _ := http.NewRequest("POST", g.base+path, rd)
		req.Header.Set("Content-Type", ctype)
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		name, path, ctype, body string
		chunked                 bool
		want                    int
		rule                    string
	}{
		{"json within limits", "/api/x", "application/json", `{"a":[{"b":1}]}`, false, 200, ""},
		{"json too deep", "/api/x", "application/json", `{"a":[{"b":[[1]]}]}`, false, 400, "hygiene.json_depth"},
		{"json too deep, chunked", "/api/x", "application/json", `[[[[[1]]]]]`, true, 400, "hygiene.json_depth"},
		{"type not allowed", "/api/x", "application/xml", `<a/>`, false, 415, "hygiene.content_type"},
		{"text over its cap", "/api/x", "text/plain", strings.Repeat("a", 17), false, 413, "hygiene.body_size"},
		{"text over its cap, chunked", "/api/x", "text/plain", strings.Repeat("a", 17), true, 413, "hygiene.body_size"},
		{"text within its cap", "/api/x", "text/plain", strings.Repeat("a", 16), false, 200, ""},
		{"other route takes any type", "/other", "application/xml", `<a/>`, false, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			status, body := post(tc.path, tc.ctype, tc.body, tc.chunked)
			if status != tc.want {
				t.Fatalf("%d, want %d\n%s", status, tc.want, body)
			}
			if tc.rule == "" {
				return
			}
			if reached.Load() != before {
				t.Error("the upstream received the refused body whole")
			}
			if !strings.Contains(body, `"status":`) || strings.Contains(body, tc.body) {
				t.Errorf("refusal body is not a problem document free of the request: %s", body)
			}
			if e := g.events.find("request.denied", tc.rule); e == nil {
				t.Errorf("no request.denied event with rule %s", tc.rule)
			}
		})
	}
	for path, want := range map[string]int{
		"/api/a%2Fb":      400, // encoded slash refused on this route
		"/site/a%2Fb":     200, // allowed on that one
		"/api/x?a&b&c&d":  400, // four parameters
		"/api/x?a&b&c":    200,
		"/api/%252e%252e": 400, // double encoding
	} {
		if resp, body := g.do(t, "GET", path, nil); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d\n%s", path, resp.StatusCode, want, body)
		}
	}
}
