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
