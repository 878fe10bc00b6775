package framing

import (
	"fmt"
	"strings"
	"testing"
)

// get is a small valid request.
func get(target string) string { return "GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n" }

// handed is one request net/http hands to a handler and the rule Next must
// return for it.
type handed struct {
	req  string // method SP request-target
	rule string
}

func ok(req string) handed { return handed{req, ""} }

type scanCase struct {
	name string
	in   string
	lim  Limits
	want []handed
	bad  int // first violating message, 0 for none
}

var smuggled = get("/smuggled")

var scanCases = []scanCase{
	// Valid requests.
	{name: "get", in: get("/"), want: []handed{ok("GET /")}},
	{name: "http 1.0 without host", in: "GET /old HTTP/1.0\r\n\r\n", want: []handed{ok("GET /old")}},
	{name: "http 1.9 is 1.1", in: "GET / HTTP/1.9\r\nHost: a\r\n\r\n", want: []handed{ok("GET /")}},
	{name: "absolute form and query", in: get("http://a.example/p?q=1&r=%20"), want: []handed{ok("GET http://a.example/p?q=1&r=%20")}},
	{name: "field values with colons tabs and obs-text", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b:c\td\xff\r\nX-Empty:\r\nx-lower:1\r\n\r\n", want: []handed{ok("GET /")}},
	{name: "content-length body", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + get("/next"), want: []handed{ok("POST /p"), ok("GET /next")}},
	{name: "content-length zero", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + get("/next"), want: []handed{ok("POST /p"), ok("GET /next")}},
	{name: "content-length ows and leading zeros", in: "PUT /p HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: \t007 \t\r\n\r\n1234567" + get("/next"), want: []handed{ok("PUT /p"), ok("GET /next")}},
	{name: "content-length largest", in: "PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\nabc", want: []handed{ok("PUT /p")}},
	{name: "get with body", in: "GET /g HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + get("/next"), want: []handed{ok("GET /g"), ok("GET /next")}},
	{name: "http 1.0 keep-alive with body", in: "POST /p HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi" + "GET /n HTTP/1.0\r\n\r\n", want: []handed{ok("POST /p"), ok("GET /n")}},
	{name: "request inside a body is no request", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n" + smuggled + get("/next"), want: []handed{ok("POST /p"), ok("GET /next")}},
	{name: "chunked", in: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get("/next"), want: []handed{ok("POST /c"), ok("GET /next")}},
	{name: "chunked any case and hex", in: "POST /c HTTP/1.1\r\nHost: a\r\ntransfer-encoding:ChUnKeD \r\n\r\nA\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n" + get("/next"), want: []handed{ok("POST /c"), ok("GET /next")}},
	{name: "chunked 16 digit size", in: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n000000000000000A\r\n0123456789\r\n0\r\n\r\n" + get("/next"), want: []handed{ok("POST /c"), ok("GET /next")}},
	{name: "chunked with extensions and trailers", in: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val;q=\"x y\"\r\nhello\r\n0;last\r\nX-Checksum: abc\r\nX-Other:1\r\n\r\n" + get("/next"), want: []handed{ok("POST /c"), ok("GET /next")}},
	{name: "framing fields in trailers are plain fields", in: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n" + get("/next"), want: []handed{ok("POST /c"), ok("GET /next")}},
	{name: "pipelined", in: get("/1") + "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" + get("/4"),
		want: []handed{ok("GET /1"), ok("POST /2"), ok("POST /3"), ok("GET /4")}},
	{name: "crlf after post", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n" + get("/next"), want: []handed{ok("POST /p"), ok("GET /next")}},
	{name: "four cr or lf after post", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\n\r\r\n" + get("/next"), want: []handed{ok("POST /p"), ok("GET /next")}},
	{name: "options star passed over", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + get("/x"), want: []handed{ok("GET /x")}},
	{name: "options star handed over", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + get("/x"), want: []handed{ok("OPTIONS *"), ok("GET /x")}},
	{name: "body cut short", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc", want: []handed{ok("POST /p")}},

	// Content-Length and Transfer-Encoding.
	{name: "cl then te", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleCLTE}}, bad: 1},
	{name: "te then cl", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleCLTE}}, bad: 1},
	{name: "cl.te smuggling", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: []handed{{"POST /", RuleCLTE}, {"GET /smuggled", RuleCLTE}}, bad: 1},
	{name: "violation after valid requests", in: get("/1") + "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/3"),
		want: []handed{ok("GET /1"), {"POST /2", RuleCLTE}, {"GET /3", RuleCLTE}}, bad: 2},
	{name: "duplicate cl same value", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", want: []handed{{"POST /", RuleMultipleCL}}, bad: 1},
	{name: "cl list", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", want: []handed{{"POST /", RuleMultipleCL}}, bad: 1},
	{name: "cl list without space", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\nhello", want: []handed{{"POST /", RuleMultipleCL}}, bad: 1},
	{name: "cl plus", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "cl negative", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "cl hex", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "cl empty", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "cl two numbers", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "cl overflow", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", want: []handed{{"POST /", RuleBadCL}}, bad: 1},
	{name: "te list with chunked last", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te chunked identity", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te xchunked", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te chunkedx", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te twice in one value", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked chunked\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te identity", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te empty", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te duplicated", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},
	{name: "te in http 1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []handed{{"POST /", RuleTE}}, bad: 1},

	// Field lines.
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", want: []handed{{"GET /", RuleObsFold}}, bad: 1},
	{name: "obs-fold with tab", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", want: []handed{{"GET /", RuleObsFold}}, bad: 1},
	{name: "folded first line", in: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", want: []handed{{"GET /", RuleObsFold}}, bad: 1},
	{name: "space before colon", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", want: []handed{{"POST /", RuleHeaderName}}, bad: 1},
	{name: "tab before colon", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", want: []handed{{"POST /", RuleHeaderName}}, bad: 1},
	{name: "empty name", in: "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", want: []handed{{"GET /", RuleHeaderName}}, bad: 1},
	{name: "no colon", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", want: []handed{{"GET /", RuleHeaderName}}, bad: 1},
	{name: "control in name", in: "GET / HTTP/1.1\r\nHost: a\r\nX\x00A: 1\r\n\r\n", want: []handed{{"GET /", RuleHeaderName}}, bad: 1},
	{name: "bare lf", in: "GET / HTTP/1.1\nHost: a\n\n", want: []handed{{"GET /", RuleBareLF}}, bad: 1},
	{name: "bare lf in field line", in: "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", want: []handed{{"GET /", RuleBareLF}}, bad: 1},
	{name: "bare lf ends head", in: "GET / HTTP/1.1\r\nHost: a\r\n\n", want: []handed{{"GET /", RuleBareLF}}, bad: 1},
	{name: "bare cr in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", want: []handed{{"GET /", RuleBareCR}}, bad: 1},
	{name: "bare cr ending head", in: "GET / HTTP/1.1\r\nHost: a\r\n\rX", want: []handed{{"GET /", RuleBareCR}}, bad: 1},
	{name: "head too large", in: "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", lim: Limits{MaxHeaderBytes: 100}, want: []handed{{"GET /", RuleTooLarge}}, bad: 1},

	// Request line.
	{name: "double space", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "trailing space", in: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "no version", in: "GET /\r\nHost: a\r\n\r\n", want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "http 2.0", in: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "h2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: []handed{{"PRI *", RuleRequestLine}}, bad: 1},
	{name: "leading space", in: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "control in target", in: "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", want: []handed{{"GET /a\x01", RuleRequestLine}}, bad: 1},
	{name: "crlf before first request", in: "\r\n" + get("/"), want: []handed{{"GET /", RuleRequestLine}}, bad: 1},
	{name: "crlf after get", in: get("/1") + "\r\n" + get("/2"), want: []handed{ok("GET /1"), {"GET /2", RuleRequestLine}}, bad: 2},
	{name: "five cr or lf after post", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n\r\n\n" + get("/2"), want: []handed{ok("POST /p"), {"GET /2", RuleRequestLine}}, bad: 2},

	// Chunked framing.
	{name: "space after size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "space before extension", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "0x size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "empty size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "extension only", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "17 digit size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000A\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "bare lf after size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "control in extension", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "lf in extension", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "no crlf after data", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "bare lf after data", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "chunk line too long", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", 100) + "\r\nhello\r\n0\r\n\r\n", lim: Limits{MaxChunkLine: 50},
		want: []handed{{"POST /", RuleBadChunk}}, bad: 1},
	{name: "bare lf in trailer", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\n" + smuggled, want: []handed{{"POST /", RuleBareLF}}, bad: 1},
	{name: "bare lf ending trailer", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n" + smuggled, want: []handed{{"POST /", RuleBareLF}}, bad: 1},
	{name: "obs-fold in trailer", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n z\r\n\r\n", want: []handed{{"POST /", RuleObsFold}}, bad: 1},
	{name: "trailer too large", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("t", 100) + "\r\n\r\n", lim: Limits{MaxTrailerBytes: 64},
		want: []handed{{"POST /", RuleTooLarge}}, bad: 1},
}

// scanAll feeds in to a new Scanner in pieces of at most size bytes, or in
// one piece when size is 0.
func scanAll(in string, lim Limits, size int) *Scanner {
	s := NewScanner(lim)
	p := []byte(in)
	for len(p) > 0 {
		k := len(p)
		if size > 0 {
			k = min(k, size)
		}
		if n, err := s.Write(p[:k]); n != k || err != nil {
			panic(fmt.Sprintf("Write = %d, %v; want %d, nil", n, err, k))
		}
		p = p[k:]
	}
	return s
}

func checkHanded(t *testing.T, s *Scanner, want []handed) {
	t.Helper()
	for i, h := range want {
		method, target, _ := strings.Cut(h.req, " ")
		if got := s.Next(method, target); got != h.rule {
			t.Errorf("Next(%q) for request %d = %q, want %q", h.req, i+1, got, h.rule)
		}
	}
}

func TestScanner(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			whole := scanAll(tc.in, tc.lim, 0)
			if msg, rule := whole.Violation(); msg != tc.bad {
				t.Errorf("Violation() = %d, %q; want message %d", msg, rule, tc.bad)
			}
			// Every split into two pieces, and one byte at a time, must
			// leave the Scanner exactly as one piece does.
			for cut := 1; cut < len(tc.in); cut++ {
				s := NewScanner(tc.lim)
				_, _ = s.Write([]byte(tc.in[:cut]))
				_, _ = s.Write([]byte(tc.in[cut:]))
				if *s != *whole {
					t.Fatalf("split at %d: state %+v, want %+v", cut, *s, *whole)
				}
			}
			if s := scanAll(tc.in, tc.lim, 1); *s != *whole {
				t.Fatalf("byte at a time: state %+v, want %+v", *s, *whole)
			}
			checkHanded(t, whole, tc.want)
		})
	}
}

func TestScannerZeroValue(t *testing.T) {
	var s Scanner
	_, _ = s.Write([]byte(get("/a")))
	if got := s.Next("GET", "/a"); got != "" {
		t.Errorf("Next = %q, want \"\"", got)
	}
	if s.Messages() != 1 {
		t.Errorf("Messages() = %d, want 1", s.Messages())
	}
}

func TestScannerNext(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []handed
		bad  int
	}{
		{"other request than scanned", get("/a"), []handed{{"GET /b", RuleDesync}}, 1},
		{"other method than scanned", get("/a"), []handed{{"POST /a", RuleDesync}}, 1},
		{"desync is sticky", get("/a") + get("/b"), []handed{{"GET /x", RuleDesync}, {"GET /b", RuleDesync}}, 1},
		{"nothing scanned", "", []handed{{"GET /", RuleDesync}}, 1},
		{"head not complete", "GET / HTTP/1.1\r\nHost: a\r\n", []handed{{"GET /", RuleDesync}}, 1},
		{"more requests than scanned", get("/a"), []handed{ok("GET /a"), {"GET /a", RuleDesync}}, 2},
		{"inside a body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n" + smuggled, []handed{ok("POST /p"), {"GET /smuggled", RuleDesync}}, 2},
		{"options star not passed over for itself", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", []handed{ok("OPTIONS *"), {"OPTIONS *", RuleDesync}}, 2},
		{"handler skipped a request", get("/a") + get("/b") + get("/c"), []handed{ok("GET /a"), {"GET /c", RuleDesync}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := scanAll(tc.in, Limits{}, 0)
			checkHanded(t, s, tc.want)
			if msg, _ := s.Violation(); msg != tc.bad {
				t.Errorf("Violation() message = %d, want %d", msg, tc.bad)
			}
		})
	}
}

func TestScannerPipelineBound(t *testing.T) {
	in := strings.Repeat(get("/p"), ringSize+1)
	s := scanAll(in, Limits{}, 0)
	for i := range ringSize {
		if got := s.Next("GET", "/p"); got != "" {
			t.Fatalf("Next for request %d = %q, want \"\"", i+1, got)
		}
	}
	if got := s.Next("GET", "/p"); got != RulePipeline {
		t.Errorf("Next for request %d = %q, want %q", ringSize+1, got, RulePipeline)
	}

	// Claimed as they come, any number of requests passes.
	s = NewScanner(Limits{})
	for i := range 10 * ringSize {
		_, _ = s.Write([]byte(get("/p")))
		if got := s.Next("GET", "/p"); got != "" {
			t.Fatalf("Next for request %d = %q, want \"\"", i+1, got)
		}
	}
}

func TestScannerDoesNotAllocate(t *testing.T) {
	body := strings.Repeat("b", 64<<10)
	in := []byte("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", len(body), body) +
		"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body)
	allocs := testing.AllocsPerRun(20, func() {
		var s Scanner
		for p := in; len(p) > 0; {
			k := min(len(p), 4096)
			_, _ = s.Write(p[:k])
			p = p[k:]
		}
		if s.Next("POST", "/upload") != "" || s.Next("POST", "/cl") != "" {
			panic("unexpected rule")
		}
	})
	if allocs != 0 {
		t.Errorf("scanning %d bytes allocated %v times, want 0", len(in), allocs)
	}
}

// TestScannerBodyViolationAfterNext follows the order of a server: the
// handler claims a request once its head is read, and a violation in its
// body shows in the requests after it.
func TestScannerBodyViolationAfterNext(t *testing.T) {
	s := NewScanner(Limits{})
	_, _ = s.Write([]byte("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"))
	if got := s.Next("POST", "/c"); got != "" {
		t.Fatalf("Next before the body = %q, want \"\"", got)
	}
	_, _ = s.Write([]byte("5\r\nhelloXX0\r\n\r\n" + get("/next")))
	if got := s.Next("GET", "/next"); got != RuleBadChunk {
		t.Errorf("Next after a bad body = %q, want %q", got, RuleBadChunk)
	}
	if msg, _ := s.Violation(); msg != 1 {
		t.Errorf("Violation() message = %d, want 1", msg)
	}
}
