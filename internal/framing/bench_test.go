package framing

import (
	"fmt"
	"strings"
	"testing"
)

// benchGET is a browser-like GET whose request line and header section take
// about 400 bytes.
var benchGET = "GET /api/v1/orders?page=2&sort=desc HTTP/1.1\r\n" +
	"Host: app.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://app.example.com/orders\r\n" +
	"Cookie: session=3f9a1c0e7b2d4e8f9a1c0e7b2d4e8f9a\r\n" +
	"Connection: keep-alive\r\n\r\n"

// benchPOST is a POST of a 1 KiB JSON body with Content-Length.
var benchPOST = "POST /api/v1/orders HTTP/1.1\r\n" +
	"Host: app.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl\r\n" +
	"Content-Length: 1024\r\n\r\n" +
	`{"items":"` + strings.Repeat("x", 1024-12) + `"}`

// benchChunked is the same body sent chunked in four chunks.
var benchChunked = "POST /api/v1/orders HTTP/1.1\r\n" +
	"Host: app.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Transfer-Encoding: chunked\r\n\r\n" +
	strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 256, strings.Repeat("y", 256)), 4) + "0\r\n\r\n"

// BenchmarkScanner is the cost of scanning one request and claiming it,
// the request arriving in one read as it usually does.
func BenchmarkScanner(b *testing.B) {
	for _, bc := range []struct {
		name, req, method, target string
	}{
		{"GET-400B", benchGET, "GET", "/api/v1/orders?page=2&sort=desc"},
		{"POST-1KiB", benchPOST, "POST", "/api/v1/orders"},
		{"POST-chunked-1KiB", benchChunked, "POST", "/api/v1/orders"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.req)
			s := NewScanner(Limits{})
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = s.Write(in)
				if rule := s.Next(bc.method, bc.target); rule != "" {
					b.Fatalf("Next = %q", rule)
				}
			}
		})
	}
}

// BenchmarkScannerSmallReads is the GET arriving in 16-byte reads, the
// worst case for the per-call overhead.
func BenchmarkScannerSmallReads(b *testing.B) {
	in := []byte(benchGET)
	s := NewScanner(Limits{})
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		for p := in; len(p) > 0; {
			k := min(len(p), 16)
			_, _ = s.Write(p[:k])
			p = p[k:]
		}
		if rule := s.Next("GET", "/api/v1/orders?page=2&sort=desc"); rule != "" {
			b.Fatalf("Next = %q", rule)
		}
	}
}
