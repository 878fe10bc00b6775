package hygiene

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCheck feeds arbitrary paths, hosts, queries, cookies and content
// types to Check: whatever it accepts must be canonical, and nothing may
// make it panic.
func FuzzCheck(f *testing.F) {
	f.Add("/a/b", "example.com:8443", "x=1", "a=1; b=2", "application/json", int64(10))
	f.Add("/admin;x", "a.test:,evil", "a b", "", "json", int64(-1))
	f.Add("/x/%2e%2e/admin", "[::1]:80", "", ";;", "multipart/form-data; boundary=x", int64(0))
	f.Add("//admin", "", "q=%00", "=", "text/*;", int64(1<<40))
	f.Add("/a%2Fb/%252e/%c0%ae", "A.TEST", "next=%2F%253D&a;b", "a", " Application/Problem+JSON ; x", int64(5))
	f.Fuzz(func(t *testing.T, rawPath, host, query, cookie, ct string, cl int64) {
		u := &url.URL{Path: rawPath, RawQuery: query}
		if p, err := url.PathUnescape(rawPath); err == nil {
			u.Path, u.RawPath = p, rawPath
		}
		r := &http.Request{Method: "POST", URL: u, Host: host, Header: http.Header{}, ContentLength: cl, Body: io.NopCloser(strings.NewReader(""))}
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		c, err := Compile(Limits{MaxBodyBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if ref := c.Check(r); ref != nil {
			if ref.Status < 400 || ref.Status > 499 || !strings.HasPrefix(ref.Rule, "hygiene.") || ref.Detail == "" {
				t.Fatalf("refusal %+v", ref)
			}
			return
		}
		p := r.URL.Path
		for _, bad := range []string{"//", "/../", "/./", ";", "\\", "\x00"} {
			if strings.Contains(p, bad) {
				t.Fatalf("accepted path %q containing %q", p, bad)
			}
		}
		if strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") || !strings.HasPrefix(p, "/") || !utf8.ValidString(p) {
			t.Fatalf("accepted path %q", p)
		}
		if clean := path.Clean(p); clean != p && clean+"/" != p {
			t.Fatalf("accepted path %q, which cleans to %q", p, clean)
		}
		if again, err := url.PathUnescape(p); err == nil && again != p {
			t.Fatalf("accepted path %q, which decodes again to %q", p, again)
		}
		if raw := strings.ToLower(r.URL.RawPath); strings.Contains(raw, "%2f") {
			t.Fatalf("accepted raw path %q with an encoded slash", r.URL.RawPath)
		}
		if strings.ContainsAny(host, ",; /\\@") {
			t.Fatalf("accepted host %q", host)
		}
		if strings.ContainsAny(query, " \r\n\t\x00;") || strings.Contains(query, "%00") {
			t.Fatalf("accepted query %q", query)
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("accepted query %q that Go cannot parse: %v", query, err)
		}
		n := 0
		for _, vv := range vals {
			n += len(vv)
		}
		if n > DefaultMaxQueryParams {
			t.Fatalf("accepted %d query parameters", n)
		}
		if len((&http.Request{Header: http.Header{"Cookie": {cookie}}}).Cookies()) > DefaultMaxCookies {
			t.Fatalf("accepted more than %d cookies", DefaultMaxCookies)
		}
		if cl > 1<<20 {
			t.Fatalf("accepted Content-Length %d over the cap", cl)
		}
	})
}

// jsonDepthOf is the nesting of a decoded JSON value.
func jsonDepthOf(v any) int {
	d := 0
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			d = max(d, jsonDepthOf(e))
		}
		return d + 1
	case map[string]any:
		for _, e := range v {
			d = max(d, jsonDepthOf(e))
		}
		return d + 1
	}
	return 0
}

// chunks reads from r at most n bytes at a time.
type chunks struct {
	r io.Reader
	n int
}

func (c chunks) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// FuzzJSONDepth reads arbitrary bytes through the JSON guard in reads of
// arbitrary sizes: it never panics, passes what it accepts unchanged and
// only a prefix of what it refuses, and agrees with encoding/json about
// the depth of valid JSON.
func FuzzJSONDepth(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"[["}]}`), uint8(2), uint8(3))
	f.Add([]byte(`[[["\"]]]\\"]]]`), uint8(3), uint8(1))
	f.Add([]byte(`"\\\"[[[" [[[]]]`), uint8(2), uint8(200))
	f.Add([]byte(`]]]}}}[[`), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, maxDepth, chunk uint8) {
		limit := int(maxDepth%16) + 1
		c, err := Compile(Limits{MaxJSONDepth: limit})
		if err != nil {
			t.Fatal(err)
		}
		r := bodyRequest("application/json", data, true)
		got, err := io.ReadAll(chunks{c.Body(r), int(chunk%64) + 1})
		var ref *Refusal
		refused := errors.As(err, &ref)
		switch {
		case err != nil && !refused:
			t.Fatalf("read error %v", err)
		case refused && ref.Rule != RuleJSONDepth:
			t.Fatalf("refused by %s", ref.Rule)
		case !refused && !bytes.Equal(got, data):
			t.Fatalf("accepted body changed: %q, want %q", got, data)
		case refused && (!bytes.HasPrefix(data, got) || len(got) == len(data)):
			t.Fatalf("refused body let through %q of %q", got, data)
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		if want := jsonDepthOf(v) <= limit; want == refused {
			t.Fatalf("depth %d with limit %d: refused=%v", jsonDepthOf(v), limit, refused)
		}
	})
}

// FuzzFormParts reads multipart bodies with fuzzed contents and part
// counts, and arbitrary bytes as a multipart and a URL-encoded body.
func FuzzFormParts(f *testing.F) {
	f.Add([]byte("hello"), uint8(3), uint8(2), uint8(5))
	f.Add([]byte("--x\r\n--x--"), uint8(0), uint8(0), uint8(1))
	f.Add([]byte("a=1&&b=2&"), uint8(9), uint8(2), uint8(2))
	f.Fuzz(func(t *testing.T, content []byte, parts, maxParts, chunk uint8) {
		limit := int(maxParts%8) + 1
		c, err := Compile(Limits{MaxFormFields: limit})
		if err != nil {
			t.Fatal(err)
		}
		read := func(ct string, body []byte) ([]byte, *Refusal) {
			got, err := io.ReadAll(chunks{c.Body(bodyRequest(ct, body, true)), int(chunk%64) + 1})
			var ref *Refusal
			if err != nil && !errors.As(err, &ref) {
				t.Fatalf("read error %v", err)
			}
			if ref == nil && !bytes.Equal(got, body) || ref != nil && !bytes.HasPrefix(body, got) {
				t.Fatalf("let through %q of %q", got, body)
			}
			return got, ref
		}
		read("multipart/form-data; boundary=x", content)
		if _, ref := read("application/x-www-form-urlencoded", content); ref == nil {
			if vals, err := url.ParseQuery(string(content)); err == nil && len(vals) > limit {
				t.Fatalf("accepted %d form fields, limit %d", len(vals), limit)
			}
		}

		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		if bytes.Contains(content, []byte(w.Boundary())) {
			return
		}
		n := int(parts % 12)
		for i := range n {
			fw, err := w.CreateFormField(fmt.Sprint("f", i))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = fw.Write(content)
		}
		_ = w.Close()
		if _, ref := read(w.FormDataContentType(), buf.Bytes()); (ref == nil) != (n <= limit) {
			t.Fatalf("%d parts with limit %d: refused=%v", n, limit, ref != nil)
		}
	})
}
