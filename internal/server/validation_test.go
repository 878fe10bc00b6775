package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/config"
)

// TestOpenAPIAllowlist: a route with an OpenAPI document lets documented,
// valid requests through unchanged, refuses the rest with the status the
// document implies and every violation listed, records each refusal, and
// reports what a response departs from the document in without changing it.
func TestOpenAPIAllowlist(t *testing.T) {
	var reached atomic.Int32
	var lastBody atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			return
		}
		// "secret" is not in the document: a field the API was not meant to return.
		_, _ = io.WriteString(w, `{"id":7,"name":"x","secret":"s3cr3t"}`)
	}))
	t.Cleanup(up.Close)
	spec, err := filepath.Abs("testdata/items.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routes := fmt.Sprintf(`  - name: api
    path: /api
    strip_prefix: true
    policy: public
    upstreams: [%q]
    openapi: {spec: %q, responses: report}
    waf: {mode: block}
`, up.URL, spec)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))

	send := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, g.base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	if resp, body := send("GET", "/api/items/7?verbose=true", ""); resp.StatusCode != 200 || !strings.Contains(body, "s3cr3t") {
		t.Fatalf("valid GET: %d %s (the response must pass unchanged)", resp.StatusCode, body)
	}
	deadline := time.Now().Add(2 * time.Second)
	for g.events.find("openapi.response", "openapi.response") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no openapi.response event for a response with an undocumented property")
		}
		time.Sleep(10 * time.Millisecond)
	}
	const good = `{"name":"widget","count":3}`
	if resp, body := send("POST", "/api/items", good); resp.StatusCode != 201 || lastBody.Load() != good {
		t.Fatalf("valid POST: %d %s; upstream got %q", resp.StatusCode, body, lastBody.Load())
	}

	before := reached.Load()
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		rule                     string
		violations               int
	}{
		{"undocumented path", "GET", "/api/admin", "", 404, "openapi.undocumented_path", 0},
		{"undocumented method", "DELETE", "/api/items/7", "", 405, "openapi.undocumented_method", 0},
		{"bad path parameter", "GET", "/api/items/0", "", 400, "openapi.invalid", 1},
		{"unknown query parameter", "GET", "/api/items/7?debug=1", "", 400, "openapi.invalid", 1},
		{"every body violation", "POST", "/api/items", `{"count":-1,"admin":true}`, 400, "openapi.invalid", 3},
		{"valid for the document, caught by the WAF behind it", "POST", "/api/items", `{"name":"<script>alert(1)"}`, 403, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := send(tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d\n%s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 405 && !strings.Contains(resp.Header.Get("Allow"), "GET") {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
			if tc.violations > 0 {
				var doc struct {
					Errors []map[string]string `json:"errors"`
				}
				if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Errors) != tc.violations {
					t.Errorf("violations %v (%v), want %d\n%s", doc.Errors, err, tc.violations, body)
				}
			}
			if tc.rule != "" && g.events.find("request.denied", tc.rule) == nil {
				t.Errorf("no request.denied event with rule %s", tc.rule)
			}
		})
	}
	if n := reached.Load() - before; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

// TestWAFThroughGateway: a route's WAF in block mode refuses an injection
// in the query and in a JSON body with 403 and a waf.blocked event naming
// the rules, lets clean requests through with their bodies intact; in
// detect mode it refuses nothing and records what it would have blocked.
func TestWAFThroughGateway(t *testing.T) {
	var reached atomic.Int32
	var lastBody atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		reached.Add(1)
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf(`  - name: guarded
    path: /guarded
    policy: public
    upstreams: [%[1]q]
    waf: {mode: block}
  - name: watched
    path: /watched
    policy: public
    upstreams: [%[1]q]
    waf: {mode: detect}
`, up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	send := func(method, path, ctype, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, g.base+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
		req.Header.Set("Accept", "application/json")
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const sqli = "/?id=1%27%20OR%20%271%27%3D%271%27--"
	const clean = `{"name":"widget","tags":["a","b"]}`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"clean GET", "GET", "/guarded/items?page=2", "", "", 200},
		{"clean JSON", "POST", "/guarded/items", "application/json", clean, 200},
		{"SQL injection in the query", "GET", "/guarded" + sqli, "", "", 403},
		{"SQL injection in a JSON body", "POST", "/guarded/items", "application/json", `{"name":"x' UNION SELECT password FROM users--"}`, 403},
		{"XSS in the query", "GET", "/guarded/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "", "", 403},
		{"detect mode lets it through", "GET", "/watched" + sqli, "", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			if got := send(tc.method, tc.path, tc.ctype, tc.body); got != tc.want {
				t.Fatalf("%d, want %d", got, tc.want)
			}
			if passed := reached.Load() != before; passed != (tc.want == 200) {
				t.Errorf("upstream reached: %v", passed)
			}
			if tc.body == clean && lastBody.Load() != clean {
				t.Errorf("upstream got body %q, want the client's", lastBody.Load())
			}
		})
	}
	blocked, detected := false, false
	for _, e := range g.events.all() {
		switch {
		case e.Kind == "waf.blocked" && e.Route == "guarded" && strings.Contains(e.Rule, "942"):
			blocked = true
		case e.Kind == "waf.detected" && e.Route == "watched":
			detected = true
		}
	}
	if !blocked || !detected {
		t.Errorf("events: waf.blocked with a 942xxx rule %v, waf.detected %v", blocked, detected)
	}
}

// TestWAFReload: a reload that switches a route's WAF from detect to block
// takes effect for the next request, and a reload whose WAF names a rule
// that does not exist is refused, leaving the running one in place.
func TestWAFReload(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	routes := func(mode, extra string) string {
		return fmt.Sprintf("  - {name: app, path: /, policy: public, upstreams: [%q], waf: {mode: %s%s}}\n", up.URL, mode, extra)
	}
	g := startGateway(t, testConfig(dir, "", routes("detect", "")))
	const sqli = "/items?id=1%27%20OR%20%271%27%3D%271%27--"
	if resp, _ := g.do(t, "GET", sqli, nil); resp.StatusCode != 200 {
		t.Fatalf("detect mode: %d", resp.StatusCode)
	}
	parse := func(yml string) *config.Config {
		cfg, err := config.Parse("reload.yaml", []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if _, err := config.Parse("bad.yaml", []byte(testConfig(dir, "", routes("block", `, remove_rules: ["999999"]`)))); err == nil || !strings.Contains(err.Error(), "999999") {
		t.Fatalf("a WAF excluding a rule that does not exist: %v, want an error naming it", err)
	}
	if err := g.srv.Reload(parse(testConfig(dir, "", routes("block", "")))); err != nil {
		t.Fatal(err)
	}
	if resp, _ := g.do(t, "GET", sqli, nil); resp.StatusCode != 403 {
		t.Fatalf("after the reload to block mode: %d, want 403", resp.StatusCode)
	}
}
