package ftw

import (
	"errors"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{
			name: "defaults",
			in:   Input{Headers: map[string]string{"Host": "localhost"}},
			want: "GET / HTTP/1.1\r\nConnection: close\r\nHost: localhost\r\n\r\n",
		},
		{
			name: "form data is encoded and completed",
			in:   Input{Method: ptr("POST"), URI: ptr("/post"), Headers: map[string]string{"Host": "h"}, Data: ptr("var=1234 OR 1=1&b")},
			want: "POST /post HTTP/1.1\r\nConnection: close\r\nContent-Length: 19\r\nContent-Type: application/x-www-form-urlencoded\r\nHost: h\r\n\r\nvar=1234+OR+1%3D1&b",
		},
		{
			name: "encoded data is kept",
			in:   Input{Method: ptr("POST"), Data: ptr("a=%27x")},
			want: "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 6\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\na=%27x",
		},
		{
			name: "multipart gets CRLF",
			in: Input{Method: ptr("POST"), Headers: map[string]string{"Content-Type": "multipart/form-data; boundary=b"},
				Data: ptr("--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n")},
			want: "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 59\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--\r\n",
		},
		{
			name: "no autocompletion",
			in:   Input{Method: ptr("PUT"), Version: ptr("HTTP/1.0"), AutocompleteHeaders: ptr(false), Data: ptr("x y")},
			want: "PUT / HTTP/1.0\r\n\r\nx y",
		},
		{
			name: "empty body method gets a length",
			in:   Input{Method: ptr("DELETE"), URI: ptr("/x")},
			want: "DELETE /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "repeat template",
			in:   Input{Method: ptr("POST"), Headers: map[string]string{"Content-Type": "text/plain"}, Data: ptr(`a{{ "xy" | repeat 3 }}b`)},
			want: "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 8\r\nContent-Type: text/plain\r\n\r\naxyxyxyb",
		},
		{
			name: "encoded request",
			in:   Input{EncodedRequest: "R0VUIC8gSFRUUC8xLjANCkhv\nc3Q6DQoNCg==", Method: ptr("POST")},
			want: "GET / HTTP/1.0\r\nHost:\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _, err := Build(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", raw, tt.want)
			}
		})
	}
}

func TestParseAndJudge(t *testing.T) {
	f, err := Parse([]byte(`
rule_id: 942100
tests:
  - test_id: 3
    stages:
      - input:
          uri: "/get?x=1"
          headers: {Host: localhost, Content-Length: 0}
        output:
          status: 200
          log:
            expect_ids: [942100]
            no_expect_ids: [920100]
      - stage:
          input: {uri: /b}
          output:
            log_contains: 'id "941100"'
            log:
              match_regex: 'x'
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tests) != 1 || len(f.Tests[0].Stages) != 2 || TestName(f.RuleID, f.Tests[0].ID) != "942100-3" {
		t.Fatalf("parsed %+v", f)
	}
	s0, s1 := f.Tests[0].Stages[0], f.Tests[0].Stages[1]
	if s0.Input.Headers["Content-Length"] != "0" || *s1.Input.URI != "/b" {
		t.Errorf("inputs %+v %+v", s0.Input, s1.Input)
	}
	if s0.Unsupported() != "" || !strings.Contains(s1.Unsupported(), "match_regex") {
		t.Errorf("unsupported: %q %q", s0.Unsupported(), s1.Unsupported())
	}
	tests := []struct {
		name  string
		resp  Response
		ids   []int
		fails int
	}{
		{"pass", Response{Status: 200}, []int{942100, 949110}, 0},
		{"missing id", Response{Status: 200}, []int{949110}, 1},
		{"forbidden id and status", Response{Status: 403}, []int{942100, 920100}, 2},
		{"no response", Response{Err: errors.New("reset")}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := Judge(s0.Output, tt.resp, tt.ids); len(errs) != tt.fails {
				t.Errorf("got %d failures %v, want %d", len(errs), errs, tt.fails)
			}
		})
	}
	if errs := Judge(s1.Output, Response{Status: 200}, []int{941100}); len(errs) != 0 {
		t.Errorf("log_contains: %v", errs)
	}
}
