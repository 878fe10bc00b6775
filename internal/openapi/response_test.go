package openapi

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moatgw/moat/internal/problem"
)

func TestResponseReport(t *testing.T) {
	const pet = `{"id":42,"name":"Rex","kind":"dog"}`
	tests := []struct {
		name     string
		target   string
		status   int
		header   map[string]string
		body     string
		findings []problem.Item
	}{
		{name: "valid", target: "/v1/pets/42", status: 200,
			header: map[string]string{"Content-Type": "application/json", "ETag": `"1"`}, body: pet},
		{name: "undocumented property", target: "/v1/pets/42", status: 200,
			header:   map[string]string{"Content-Type": "application/json", "ETag": `"1"`},
			body:     `{"id":42,"name":"Rex","kind":"dog","internal_notes":"bites"}`,
			findings: []problem.Item{{In: "body", Pointer: "#/internal_notes", Detail: "is not a documented property"}}},
		{name: "property of the wrong type", target: "/v1/pets/42", status: 200,
			header:   map[string]string{"Content-Type": "application/json", "ETag": `"1"`},
			body:     `{"id":"42","name":"Rex","kind":"dog"}`,
			findings: []problem.Item{{In: "body", Pointer: "#/id", Detail: "must be an integer"}}},
		{name: "missing documented header", target: "/v1/pets/42", status: 200,
			header: map[string]string{"Content-Type": "application/json"}, body: pet,
			findings: []problem.Item{{In: "header", Name: "ETag", Detail: "is required"}}},
		{name: "undocumented status", target: "/v1/pets/42", status: 500,
			header: map[string]string{"Content-Type": "text/plain"}, body: "stack trace",
			findings: []problem.Item{{In: "status", Detail: "is not documented for this operation"}}},
		{name: "undocumented media type", target: "/v1/pets/42", status: 200,
			header: map[string]string{"Content-Type": "text/html", "ETag": `"1"`}, body: "<p>Rex</p>",
			findings: []problem.Item{{In: "header", Name: "Content-Type", Detail: "is not a documented media type for this status"}}},
		{name: "not json", target: "/v1/pets/42", status: 200,
			header: map[string]string{"Content-Type": "application/json", "ETag": `"1"`}, body: `{"id":`,
			findings: []problem.Item{{In: "body", Detail: "is not valid JSON"}}},
		{name: "body over the cap is not read", target: "/v1/pets/42", status: 200,
			header: map[string]string{"Content-Type": "application/json", "ETag": `"1"`},
			body:   `{"id":42,"name":"Rex","kind":"dog","internal_notes":"` + strings.Repeat("x", 300) + `"}`},
		{name: "documented error", target: "/v1/pets/42", status: 404,
			header: map[string]string{"Content-Type": "application/json"}, body: `{"code":404,"message":"no such pet"}`},
		{name: "default response", target: "/v1/pets", status: 409,
			header: map[string]string{"Content-Type": "application/json"}, body: `{"code":409,"message":"exists","trace":"x"}`,
			findings: []problem.Item{{In: "body", Pointer: "#/trace", Detail: "is not a documented property"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var reports []Report
			v := mustLoad(t, Options{
				Responses:        ResponsesReport,
				MaxResponseBytes: 256,
				Report: func(r Report) {
					mu.Lock()
					reports = append(reports, r)
					mu.Unlock()
				},
			})
			g := startGateway(t, v, func(w http.ResponseWriter, r *http.Request) {
				for k, val := range tt.header {
					w.Header().Set(k, val)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c := checkCase{method: "GET", target: tt.target}
			if tt.target == "/v1/pets" {
				c = checkCase{method: "POST", target: tt.target, header: map[string]string{"Content-Type": "application/json"}, body: `{"name":"Rex","kind":"dog"}`}
			}
			resp, body := send(t, g.url, c)
			if resp.StatusCode != tt.status || string(body) != tt.body {
				t.Errorf("the client got %d %q, want the upstream's %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(tt.findings) == 0 {
				if len(reports) != 0 {
					t.Errorf("reports %+v, want none", reports)
				}
				return
			}
			if len(reports) != 1 {
				t.Fatalf("%d reports, want 1", len(reports))
			}
			r := reports[0]
			if r.Status != tt.status || r.Operation == nil || r.Request == nil {
				t.Errorf("report %+v", r)
			}
			checkItems(t, r.Findings, tt.findings)
		})
	}
}

func TestResponseReportOff(t *testing.T) {
	v := mustLoad(t, Options{})
	g := startGateway(t, v, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	resp, _ := send(t, g.url, checkCase{method: "GET", target: "/v1/pets/1"})
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status %d", resp.StatusCode)
	}
	if err := v.ModifyResponse(resp); err != nil {
		t.Errorf("ModifyResponse: %v", err)
	}
}
