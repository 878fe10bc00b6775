package demoapp

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestEchoHeaders(t *testing.T) {
	srv := serve(t, newTestApp(t))
	sent := http.Header{
		"X-Forwarded-For": {"203.0.113.66"},
		"X-Moat-User":     {"admin"},
		"Zz-Last":         {"z"},
		"Aa-First":        {"a1", "a2"},
		"Cookie":          {"moat_session=s3cr3t; theme=dark"},
		"Authorization":   {"Bearer eyJhbGciOi.secret.token"},
	}
	resp, body := do(t, srv, "GET", "/headers?x=1", sent, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body: %v\n%s", err, body)
	}
	if e.Method != "GET" || e.Path != "/headers" || e.Query != "x=1" || e.Proto != "HTTP/1.1" {
		t.Errorf("request line = %s %s ? %s %s", e.Method, e.Path, e.Query, e.Proto)
	}
	if want := strings.TrimPrefix(srv.URL, "http://"); e.Host != want {
		t.Errorf("host = %q, want %q", e.Host, want)
	}
	if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
		t.Errorf("remote_addr = %q, want the loopback peer", e.RemoteAddr)
	}

	tests := []struct {
		name string
		want []string
	}{
		{"X-Forwarded-For", []string{"203.0.113.66"}},
		{"X-Moat-User", []string{"admin"}},
		{"Aa-First", []string{"a1", "a2"}},
		{"Cookie", []string{"moat_session=[redacted]; theme=[redacted]"}},
		{"Authorization", []string{"Bearer [redacted]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.Headers[tt.name]; !slices.Equal(got, tt.want) {
				t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	if strings.Contains(body, "s3cr3t") || strings.Contains(body, "secret.token") {
		t.Errorf("credentials echoed:\n%s", body)
	}

	// Header names come out sorted, so the echo reads like a list.
	var names []string
	dec := json.NewDecoder(strings.NewReader(body[strings.Index(body, `"headers"`)+len(`"headers":`):]))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		var skip []string
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.IsSorted(names) || len(names) < len(sent) {
		t.Errorf("header names %q, want all of them, sorted", names)
	}
}

func TestRedactHeader(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"Cookie", "a=1; b=2", "a=[redacted]; b=[redacted]"},
		{"cookie", "a=1", "a=[redacted]"},
		{"Cookie", "garbage without equals", "[redacted]"},
		{"Authorization", "Basic dXNlcjpwYXNz", "Basic [redacted]"},
		{"Authorization", "tokenonly", "[redacted]"},
		{"Proxy-Authorization", "Bearer x", "Bearer [redacted]"},
		{"X-Other", "visible", "visible"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.value, func(t *testing.T) {
			if got := redactHeader(tt.name, tt.value); got != tt.want {
				t.Errorf("redactHeader(%q, %q) = %q, want %q", tt.name, tt.value, got, tt.want)
			}
		})
	}
}

func TestBoom(t *testing.T) {
	srv := serve(t, newTestApp(t))
	resp, body := do(t, srv, "GET", "/boom", nil, "")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", resp.StatusCode)
	}
	for _, want := range []string{
		"panic: runtime error",
		"goroutine 1 [running]:",
		"main.handler(...)",
		"/srv/app/internal/secret/db.go:42",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q", want)
		}
	}
	if got := resp.Header.Get("Server"); got != "demo-backend/1.0" {
		t.Errorf("Server = %q", got)
	}
	if got := resp.Header.Get("X-Powered-By"); got != "DemoFramework 3.2" {
		t.Errorf("X-Powered-By = %q", got)
	}
}
