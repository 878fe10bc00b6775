package problem

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	internal := errors.New("dial tcp 10.0.0.5:5432: connection refused")
	e := &Error{Status: http.StatusBadGateway, Detail: "The upstream <b>failed</b>.", Err: internal}
	tests := []struct {
		name, accept, wantType string
	}{
		{"api client", "application/json", "application/problem+json"},
		{"no accept", "", "application/problem+json"},
		{"browser", "text/html,application/xhtml+xml,*/*;q=0.8", "text/html; charset=utf-8"},
		{"json before html", "application/json, text/html", "application/problem+json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w := httptest.NewRecorder()
			Write(w, r, "req-<1>", e)
			if w.Code != http.StatusBadGateway {
				t.Errorf("status %d", w.Code)
			}
			if got := w.Header().Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			body := w.Body.String()
			if strings.Contains(body, "10.0.0.5") || strings.Contains(body, "refused") {
				t.Errorf("internal error leaked: %s", body)
			}
			if strings.Contains(body, "<b>") || strings.Contains(body, "req-<1>") && tt.wantType != "application/problem+json" {
				t.Errorf("unescaped text in a page: %s", body)
			}
			if tt.wantType == "application/problem+json" {
				var p map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				if p["status"] != float64(502) || p["title"] != "Bad Gateway" || p["request_id"] != "req-<1>" {
					t.Errorf("problem %v", p)
				}
			}
		})
	}
	if !errors.Is(e, internal) || !strings.Contains(e.Error(), "refused") {
		t.Error("the internal cause must stay reachable for logs")
	}
}

func TestWriteErrors(t *testing.T) {
	e := &Error{
		Status: http.StatusBadRequest,
		Detail: "The request does not match the API description.",
		Errors: []Item{
			{In: "query", Name: "limit", Detail: "must be at most 100"},
			{In: "body", Pointer: "#/<script>alert(1)</script>", Detail: "is not a documented property"},
		},
	}
	tests := []struct {
		name, accept string
		check        func(t *testing.T, body string)
	}{
		{"json", "application/json", func(t *testing.T, body string) {
			var p struct {
				Errors []Item `json:"errors"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Errors) != 2 || p.Errors[0] != e.Errors[0] || p.Errors[1] != e.Errors[1] {
				t.Errorf("errors %+v, want %+v", p.Errors, e.Errors)
			}
		}},
		{"browser", "text/html", func(t *testing.T, body string) {
			for _, want := range []string{
				"<li><code>query limit</code>: must be at most 100</li>",
				"<li><code>body #/&lt;script&gt;alert(1)&lt;/script&gt;</code>: is not a documented property</li>",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q:\n%s", want, body)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept", tt.accept)
			w := httptest.NewRecorder()
			Write(w, r, "", e)
			body := w.Body.String()
			if strings.Contains(body, "<script>") {
				t.Errorf("raw markup in the response: %s", body)
			}
			tt.check(t, body)
		})
	}
	t.Run("omitted when empty", func(t *testing.T) {
		w := httptest.NewRecorder()
		Write(w, httptest.NewRequest("GET", "/", nil), "", &Error{Status: http.StatusNotFound})
		if strings.Contains(w.Body.String(), "errors") {
			t.Errorf("empty errors member sent: %s", w.Body.String())
		}
	})
}
