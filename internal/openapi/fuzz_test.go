package openapi

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var fuzzTemplates = append(generatedTemplates(120),
	"/",
	"/pets/",
	"/files/{name}.json",
	"/files/latest.json",
	"/v{major}.{minor}/info",
	"/reports/{year}-{month}/{kind}.{format}",
	"/a/b/{y}",
	"/a/{x}/c/d",
)

// FuzzRouterLookup looks up arbitrary paths: a lookup never panics, and a
// path it matches is the template with the captured values put back, with
// no empty value and no dot segment.
func FuzzRouterLookup(f *testing.F) {
	for _, p := range []string{"/", "/pets/", "/files/a.b.json", "/v1.2.3/info", "/reports/2024-05/x.y.z",
		"/a/b/c/d", "/api/v2/resource7/x%2Fy/items/%41", "/api/v1/resource0/../search", "//", "/%", "/a/%zz"} {
		f.Add(p)
	}
	rt := buildRouter(f, fuzzTemplates...)
	f.Fuzz(func(t *testing.T, path string) {
		var m match
		if !rt.lookup(path, &m) {
			return
		}
		tsegs := strings.Split(m.ep.template[1:], "/")
		psegs := strings.Split(path[1:], "/")
		if len(tsegs) != len(psegs) {
			t.Fatalf("%q matched %q with another number of segments", path, m.ep.template)
		}
		if m.n != len(m.ep.names) {
			t.Fatalf("%q matched %q with %d values for %d parameters", path, m.ep.template, m.n, len(m.ep.names))
		}
		next := 0
		for i, ts := range tsegs {
			seg, err := url.PathUnescape(psegs[i])
			if err != nil {
				t.Fatalf("%q matched although segment %q does not decode", path, psegs[i])
			}
			if seg == "." || seg == ".." {
				t.Fatalf("%q matched %q with a dot segment", path, m.ep.template)
			}
			var rendered string
			if strings.Contains(ts, "{") {
				parts, names, err := parseSegment(ts)
				if err != nil {
					t.Fatal(err)
				}
				rendered = parts[0]
				for j := range names {
					val := m.vals[next]
					next++
					if val == "" {
						t.Fatalf("%q matched %q with an empty value", path, m.ep.template)
					}
					rendered += val + parts[j+1]
				}
			} else {
				rendered, _ = url.PathUnescape(ts)
			}
			if rendered != seg {
				t.Fatalf("%q matched %q, but segment %d is %q, not %q", path, m.ep.template, i, seg, rendered)
			}
		}
	})
}

// FuzzCheck validates arbitrary requests against the test document: Check
// never panics, answers with one of its statuses, lists only names and
// pointers it has made safe, and leaves the body of an accepted request as
// it was.
func FuzzCheck(f *testing.F) {
	f.Add("POST", "/v1/pets", "application/json", []byte(validPet))
	f.Add("POST", "/v1/pets?x=<b>", "application/json", []byte(`{"name":"<b>","kind":"fish","<i>":{"a":1,"a":2}}`))
	f.Add("POST", "/v1/pets", "application/x-www-form-urlencoded", []byte("name=Rex&kind=dog&age=x&%3C=1"))
	f.Add("GET", "/v1/pets?limit=5&tags=a&tags=b&status=sold", "", []byte(nil))
	f.Add("GET", "/v1/pets/1", "", []byte(nil))
	f.Add("POST", "/v1/pets/3/notes", "text/plain", []byte("note"))
	f.Add("PUT", "/v1/owners/0b0e4d2a-7c43-4a8e-9b1e-2f0c7a9d8e11", "application/json", []byte(`{"name":"A","email":"a@b","address":{"street":"s","city":"c","country":"US"}}`))
	f.Add("DELETE", "/v1/files/x.json", "", []byte("x"))
	v := mustLoad(f, Options{MaxBodyBytes: 4096})
	documented := map[string]bool{}
	for _, op := range v.Operations() {
		for _, p := range op.params {
			documented[p.Name] = true
		}
	}
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		r, err := http.NewRequest(method, "http://gateway.test"+target, bytes.NewReader(body))
		if err != nil || r.URL.Host != "gateway.test" {
			return
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		res := v.Check(r)
		if res.OK() {
			got, err := io.ReadAll(r.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("the body of an accepted request became %q, was %q", got, body)
			}
			return
		}
		switch res.Problem.Status {
		case 400, 404, 413, 415:
		case 405:
			if res.Allow == "" {
				t.Fatal("405 without Allow")
			}
		default:
			t.Fatalf("status %d", res.Problem.Status)
		}
		for _, it := range res.Problem.Errors {
			if it.Detail == "" || it.In == "" {
				t.Fatalf("incomplete violation %+v", it)
			}
			if it.Name != "" && !documented[it.Name] && !isSafe(it.Name) {
				t.Fatalf("unsafe name %q", it.Name)
			}
			if it.Pointer != "" && (!strings.HasPrefix(it.Pointer, "#/") || !isSafe(strings.ReplaceAll(it.Pointer[1:], "/", ""))) {
				t.Fatalf("unsafe pointer %q", it.Pointer)
			}
		}
	})
}

func isSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~%", c) >= 0) {
			return false
		}
	}
	return true
}
