package demoapp

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestIndexShowsForwardingHeaders(t *testing.T) {
	srv := serve(t, newTestApp(t))
	tests := []struct {
		name     string
		header   http.Header
		want     []string
		dontWant []string
	}{
		{
			name: "through a proxy",
			header: http.Header{
				"X-Request-Id":      {"01JDEMO0000000000000000000"},
				"X-Forwarded-For":   {"198.51.100.7"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"demo.example"},
				"Forwarded":         {"for=198.51.100.7;proto=https"},
			},
			want: []string{
				"01JDEMO0000000000000000000",
				"198.51.100.7",
				"for=198.51.100.7;proto=https",
				"https://demo.example/headers",
				"curl -sI https://demo.example/",
			},
			dontWant: []string{"No request id arrived", "not sent"},
		},
		{
			name: "direct",
			want: []string{"No request id arrived", "not sent", "127.0.0.1:"},
		},
		{
			name: "hostile values are escaped",
			header: http.Header{
				"X-Request-Id":     {`"><script>alert(1)</script>`},
				"X-Forwarded-Host": {`x"><img src=x onerror=alert(1)>`},
			},
			want:     []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;"},
			dontWant: []string{"<script>alert", "<img src=x"},
		},
		{
			name:   "odd scheme is not repeated",
			header: http.Header{"X-Forwarded-Proto": {"javascript"}},
			want:   []string{"http://127.0.0.1:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, srv, "GET", "/", tt.header, "")
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(body, w) {
					t.Errorf("page contains %q", w)
				}
			}
		})
	}
}

func TestIndexExplains(t *testing.T) {
	srv := serve(t, newTestApp(t))
	_, body := do(t, srv, "GET", "/", nil, "")
	for _, want := range []string{
		`<html lang="en">`,
		"<h1>Moat demo application</h1>",
		"served by a small demo backend, through Moat", // what the visitor is looking at
		"added by Moat",
		"Strict-Transport-Security",
		"Content-Security-Policy",
		"X-Frame-Options",
		`<link rel="stylesheet" href="/static/style.css">`,
		`<script src="/static/headers.js" defer></script>`,
		`href="/admin/"`,
		`href="/boom"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Inline code that a strict Content-Security-Policy (script-src 'self';
// style-src 'self') would block.
var (
	scriptTag      = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	scriptWithSrc  = regexp.MustCompile(`(?i)<script\b[^>]*\ssrc=`)
	styleTag       = regexp.MustCompile(`(?i)<style\b`)
	styleAttr      = regexp.MustCompile(`(?i)\sstyle\s*=`)
	eventAttr      = regexp.MustCompile(`(?i)<[^>]*\son[a-z]+\s*=`)
	javascriptHref = regexp.MustCompile(`(?i)(href|src)\s*=\s*["']?\s*javascript:`)
)

func TestPagesHaveNoInlineCode(t *testing.T) {
	srv := serve(t, newTestApp(t))
	proxied := http.Header{"X-Request-Id": {"r1"}, "X-Forwarded-For": {"198.51.100.7"}}
	for _, path := range []string{"/", "/admin/"} {
		for _, h := range []http.Header{nil, proxied} {
			resp, body := do(t, srv, "GET", path, h, "")
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s = %d", path, resp.StatusCode)
			}
			for _, tag := range scriptTag.FindAllString(body, -1) {
				if !scriptWithSrc.MatchString(tag) {
					t.Errorf("%s: inline script %s", path, tag)
				}
			}
			for name, re := range map[string]*regexp.Regexp{
				"<style> element":  styleTag,
				"style= attribute": styleAttr,
				"event handler":    eventAttr,
				"javascript: URL":  javascriptHref,
			} {
				if m := re.FindString(body); m != "" {
					t.Errorf("%s: %s: %q", path, name, m)
				}
			}
		}
	}
}

// TestInlineCodeDetectors makes sure the checks above can fail.
func TestInlineCodeDetectors(t *testing.T) {
	tests := []struct {
		html string
		re   *regexp.Regexp
	}{
		{`<p style="color:red">`, styleAttr},
		{`<STYLE>p{}</STYLE>`, styleTag},
		{`<button onclick="x()">`, eventAttr},
		{`<a href="javascript:x()">`, javascriptHref},
	}
	for _, tt := range tests {
		if !tt.re.MatchString(tt.html) {
			t.Errorf("%v misses %s", tt.re, tt.html)
		}
	}
	if tag := scriptTag.FindString(`<script>alert(1)</script>`); tag == "" || scriptWithSrc.MatchString(tag) {
		t.Errorf("inline script not told apart from an external one")
	}
}

func TestAdminPage(t *testing.T) {
	srv := serve(t, newTestApp(t))
	resp, body := do(t, srv, "GET", "/admin/", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	for _, want := range []string{"<title>Demo admin area</title>", "<h1>Demo admin area</h1>", "deny", `href="/static/style.css"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestStaticFiles(t *testing.T) {
	srv := serve(t, newTestApp(t))
	tests := []struct {
		path, wantType string
	}{
		{"/static/style.css", "text/css; charset=utf-8"},
		{"/static/headers.js", "text/javascript; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := do(t, srv, "GET", tt.path, nil, "")
			if resp.StatusCode != 200 || body == "" {
				t.Fatalf("status = %d, body %d bytes", resp.StatusCode, len(body))
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			etag := resp.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) {
				t.Fatalf("ETag = %q, want a strong ETag", etag)
			}
			resp, body = do(t, srv, "GET", tt.path, http.Header{"If-None-Match": {etag}}, "")
			if resp.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("revalidation = %d with %d bytes, want 304 and no body", resp.StatusCode, len(body))
			}
		})
	}
}

func TestHeadersScript(t *testing.T) {
	js := string(mustReadAsset("static/headers.js"))
	// The script recognises the banners by value: keep it in step with the backend.
	for _, want := range []string{ServerBanner, PoweredByBanner, `"response-headers"`, `"response-headers-body"`, `"response-headers-status"`} {
		if !strings.Contains(js, want) {
			t.Errorf("headers.js lacks %q", want)
		}
	}
	// It builds the table with text nodes only.
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(js, bad) {
			t.Errorf("headers.js uses %s", bad)
		}
	}
	srv := serve(t, newTestApp(t))
	_, page := do(t, srv, "GET", "/", nil, "")
	for _, id := range []string{`id="response-headers"`, `id="response-headers-body"`, `id="response-headers-status"`} {
		if !strings.Contains(page, id) {
			t.Errorf("index page lacks %s, which headers.js fills in", id)
		}
	}
}
