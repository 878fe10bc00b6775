package hygiene

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// bodyRequest is a POST with the given Content-Type ("" for none) and
// body; chunked hides its length, as a chunked request does.
func bodyRequest(ct string, body []byte, chunked bool) *http.Request {
	r := httptest.NewRequest("POST", "/u", bytes.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	if chunked {
		r.ContentLength = -1
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return r
}

// readBody reads what Body lets through, one byte at a time when slow, and
// returns it with the rule of the refusal that ended it ("" for none).
func readBody(t *testing.T, c *Checker, r *http.Request, slow bool) ([]byte, string) {
	t.Helper()
	var rd io.Reader = c.Body(r)
	if slow {
		rd = iotest.OneByteReader(rd)
	}
	got, err := io.ReadAll(rd)
	if err == nil {
		return got, ""
	}
	var ref *Refusal
	if !errors.As(err, &ref) {
		t.Fatalf("read error %v is not a refusal", err)
	}
	if _, again := rd.Read(make([]byte, 8)); again != err {
		t.Errorf("after a refusal, Read returns %v, want the same refusal", again)
	}
	return got, ref.Rule
}

func TestBodySize(t *testing.T) {
	c := mustCompile(t, Limits{
		MaxBodyBytes: 100,
		BodyCaps:     map[string]int64{"application/json": 50, "image/*": 200, "image/gif": 20, "video/*": -1},
	})
	tests := []struct {
		name string
		ct   string
		size int
		want int // bytes let through
		rule string
	}{
		{"default at cap", "text/plain", 100, 100, ""},
		{"default over cap", "text/plain", 101, 100, RuleBodySize},
		{"no type over default cap", "", 150, 100, RuleBodySize},
		{"exact type at cap", "application/json", 50, 50, ""},
		{"exact type over cap", "application/json; charset=utf-8", 51, 50, RuleBodySize},
		{"wildcard at cap", "image/png", 200, 200, ""},
		{"wildcard far over cap", "image/png", 5000, 200, RuleBodySize},
		{"exact beats wildcard", "IMAGE/GIF", 21, 20, RuleBodySize},
		{"no cap", "video/mp4", 1 << 16, 1 << 16, ""},
		{"empty", "text/plain", 0, 0, ""},
	}
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			for _, slow := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/chunked=%v/slow=%v", tt.name, chunked, slow), func(t *testing.T) {
					body := bytes.Repeat([]byte("0123456789"), tt.size/10+1)[:tt.size]
					got, rule := readBody(t, c, bodyRequest(tt.ct, body, chunked), slow)
					if rule != tt.rule {
						t.Errorf("rule %q, want %q", rule, tt.rule)
					}
					if !bytes.Equal(got, body[:tt.want]) {
						t.Errorf("let through %d bytes, want the first %d unchanged", len(got), tt.want)
					}
				})
			}
		}
	}
}

func TestBodyUnwrapped(t *testing.T) {
	c := mustCompile(t, Limits{MaxBodyBytes: 100})
	small := bodyRequest("text/plain", []byte("hi"), false)
	if c.Body(small) != small.Body {
		t.Error("a body of declared length within its cap is wrapped for nothing")
	}
	if r := httptest.NewRequest("GET", "/", nil); c.Body(r) != http.NoBody {
		t.Error("no body must stay http.NoBody")
	}
	if r := bodyRequest("text/plain", []byte("hi"), true); c.Body(r) == r.Body {
		t.Error("a chunked body must be counted")
	}
	if r := bodyRequest("application/json", []byte("{}"), false); c.Body(r) == r.Body {
		t.Error("a JSON body must be scanned")
	}
}

func TestBodyJSONDepth(t *testing.T) {
	c := mustCompile(t, Limits{MaxJSONDepth: 3})
	tests := []struct {
		name, ct, body string
		rule           string
		upTo           int // bytes let through when refused
	}{
		{name: "scalar", body: `"x"`},
		{name: "at the limit", body: `[{"a":[1,2]}]`},
		{name: "at the limit twice", body: `[[[1]],[[2]]] {"a":{"b":{}}}`},
		{name: "one deeper", body: `[{"a":[{"b":1}]}]`, rule: RuleJSONDepth, upTo: 7},
		{name: "arrays one deeper", body: `[[[[]]]]`, rule: RuleJSONDepth, upTo: 3},
		{name: "brackets in a string", body: `["[[[[{{{{"]`},
		{name: "escaped quote in a string", body: `["\"[[[[", "\\"]`},
		{name: "escaped backslash ends the string", body: `["\\", [[[1]]]]`, rule: RuleJSONDepth, upTo: 9},
		{name: "unicode escape", body: `["\u005b[[[", {"\"": [1]}]`},
		{name: "closing more than opened", body: `]]]]}}}[[[1]]]`},
		{name: "suffix type", ct: "application/problem+json", body: `[[[[1]]]]`, rule: RuleJSONDepth, upTo: 3},
		{name: "vendor type with parameters", ct: "Application/Vnd.Api+JSON; charset=utf-8", body: `[[[[1]]]]`, rule: RuleJSONDepth, upTo: 3},
		{name: "not JSON", ct: "text/plain", body: `[[[[[[[[1]]]]]]]]`},
		{name: "no type", ct: "-", body: `[[[[[[[[1]]]]]]]]`},
	}
	for _, tt := range tests {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slow=%v", tt.name, slow), func(t *testing.T) {
				ct := tt.ct
				switch ct {
				case "":
					ct = "application/json"
				case "-":
					ct = ""
				}
				got, rule := readBody(t, c, bodyRequest(ct, []byte(tt.body), true), slow)
				if rule != tt.rule {
					t.Fatalf("rule %q, want %q", rule, tt.rule)
				}
				want := tt.body
				if rule != "" {
					want = tt.body[:tt.upTo]
				}
				if string(got) != want {
					t.Errorf("let through %q, want %q", got, want)
				}
			})
		}
	}
}

func TestBodyJSONDepthRefusal(t *testing.T) {
	c := mustCompile(t, Limits{})
	deep := strings.Repeat("[", DefaultMaxJSONDepth+1) + strings.Repeat("]", DefaultMaxJSONDepth+1)
	_, err := io.ReadAll(c.Body(bodyRequest("application/json", []byte(deep), false)))
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Status != http.StatusBadRequest || ref.Rule != RuleJSONDepth {
		t.Fatalf("error %v, want a 400 %s refusal", err, RuleJSONDepth)
	}
	if _, err := io.ReadAll(c.Body(bodyRequest("application/json", []byte(deep[1:len(deep)-1]), false))); err != nil {
		t.Errorf("default depth refused: %v", err)
	}
	off := mustCompile(t, Limits{MaxJSONDepth: -1})
	if _, err := io.ReadAll(off.Body(bodyRequest("application/json", []byte(deep), true))); err != nil {
		t.Errorf("depth limit off: %v", err)
	}
}

func multipartBody(t *testing.T, parts int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := range parts {
		fw, err := w.CreateFormField(fmt.Sprintf("f%d", i))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(fw, "value %d with --%s inside a line", i, w.Boundary())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

func TestBodyFormFields(t *testing.T) {
	c := mustCompile(t, Limits{MaxFormFields: 3})
	at, atType := multipartBody(t, 3)
	over, overType := multipartBody(t, 4)
	none, noneType := multipartBody(t, 0)
	tests := []struct {
		name, ct, body string
		rule           string
	}{
		{"form at the limit", "application/x-www-form-urlencoded", "a=1&b=2&c=3", ""},
		{"form empty fields", "application/x-www-form-urlencoded", "&a=1&&b=2&c=3&", ""},
		{"form over the limit", "application/x-www-form-urlencoded", "a=1&b=2&c=3&d", RuleForm},
		{"multipart at the limit", atType, string(at), ""},
		{"multipart over the limit", overType, string(over), RuleForm},
		{"multipart with no parts", noneType, string(none), ""},
		{"multipart without boundary", "multipart/form-data", "--x\r\n", RuleContentType},
		{"form fields in JSON do not count", "application/json", `{"a":1,"b":2,"c":3,"d":4,"e":"&&&&"}`, ""},
	}
	for _, tt := range tests {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slow=%v", tt.name, slow), func(t *testing.T) {
				got, rule := readBody(t, c, bodyRequest(tt.ct, []byte(tt.body), false), slow)
				if rule != tt.rule {
					t.Fatalf("rule %q, want %q", rule, tt.rule)
				}
				if rule == "" && string(got) != tt.body {
					t.Errorf("body changed: %q", got)
				}
				if rule != "" && !strings.HasPrefix(tt.body, string(got)) {
					t.Errorf("let through %q, not a prefix of the body", got)
				}
			})
		}
	}
	t.Run("Go parses what was let through", func(t *testing.T) {
		r := bodyRequest(atType, at, true)
		r.Body = c.Body(r)
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Fatal(err)
		}
		if len(r.MultipartForm.Value) != 3 {
			t.Errorf("%d fields", len(r.MultipartForm.Value))
		}
	})
}
