package hygiene

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func BenchmarkCheckBrowserGET(b *testing.B) {
	c := mustCompile(b, Limits{})
	r := browserGET(b)
	b.ReportAllocs()
	for b.Loop() {
		if ref := c.Check(r); ref != nil {
			b.Fatal(ref)
		}
	}
}

func BenchmarkCheckJSONPost(b *testing.B) {
	c := mustCompile(b, Limits{
		ContentTypes: []string{"application/json", "application/x-www-form-urlencoded"},
		BodyCaps:     map[string]int64{"application/json": 1 << 20, "image/*": 8 << 20},
	})
	r := parse(b, "POST /api/v1/orders?dry_run=true\nContent-Type: application/json; charset=utf-8\nContent-Length: 1024\nAuthorization: Bearer x\nAccept: application/json")
	b.ReportAllocs()
	for b.Loop() {
		if ref := c.Check(r); ref != nil {
			b.Fatal(ref)
		}
	}
}

// jsonKiB is a 1 KiB JSON document of ordinary shape: objects, arrays,
// strings with escapes, numbers.
func jsonKiB() []byte {
	item := `{"id":12345,"name":"Widget \"Pro\"","tags":["a","b\\c"],"price":{"amount":19.99,"currency":"EUR"},"ok":true},`
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for b.Len()+len(item) < 1024-4 {
		b.WriteString(item)
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte(","))
	out = append(out, "]}"...)
	return append(out, bytes.Repeat([]byte(" "), 1024-len(out))...)
}

func BenchmarkBodyJSONDepth1KiB(b *testing.B) {
	c := mustCompile(b, Limits{})
	data := jsonKiB()
	if len(data) != 1024 {
		b.Fatalf("%d bytes", len(data))
	}
	buf := make([]byte, 32<<10)
	rd := bytes.NewReader(data)
	r := &http.Request{Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: 1024, Body: io.NopCloser(rd)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(data)
		body := c.Body(r)
		for {
			_, err := body.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkBodyCapChunked(b *testing.B) {
	c := mustCompile(b, Limits{})
	data := []byte(strings.Repeat("x", 64<<10))
	buf := make([]byte, 32<<10)
	rd := bytes.NewReader(data)
	r := &http.Request{Header: http.Header{"Content-Type": {"application/octet-stream"}}, ContentLength: -1, Body: io.NopCloser(rd)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(data)
		body := c.Body(r)
		for {
			_, err := body.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
