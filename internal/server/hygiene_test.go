package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// TestSmugglingRefused sends request-smuggling attempts over raw TLS
// connections: each gets 400 with the connection closed, and the request
// hidden in its body never reaches the upstream. A plain pipelined
// keep-alive exchange on one connection still works.
func TestSmugglingRefused(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, testConfig(t.TempDir(), "", fmt.Sprintf("  - {name: app, path: /, policy: public, upstreams: [%q]}\n", up.URL)))
	addr := g.srv.Addr("https").String()
	exchange := func(t *testing.T, raw string) []*http.Response {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		var out []*http.Response
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return out
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out = append(out, resp)
		}
	}
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
	for name, raw := range map[string]string{
		"CL.TE": "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + fmt.Sprint(5+len(smuggled)) +
			"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"TE.CL": "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
			fmt.Sprintf("%x\r\n", len(smuggled)) + smuggled + "\r\n0\r\n\r\n",
		"two equal lengths": "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"obs-fold":          "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n c\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			resps := exchange(t, raw+"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
			if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest || !resps[0].Close {
				var codes []int
				for _, r := range resps {
					codes = append(codes, r.StatusCode)
				}
				t.Fatalf("statuses %v, want one 400 closing the connection", codes)
			}
		})
	}
	resps := exchange(t, "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"+
		"POST /two HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /three HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	if len(resps) != 3 || resps[0].StatusCode != 200 || resps[1].StatusCode != 200 || resps[2].StatusCode != 200 {
		t.Fatalf("pipelined keep-alive requests: %d responses", len(resps))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if p == "/smuggled" || p == "/after" || p == "/a" {
			t.Errorf("the upstream received %s", p)
		}
	}
	if e := g.events.find("request.denied", "framing.cl_te"); e == nil {
		t.Error("no request.denied event for framing.cl_te")
	}
}
