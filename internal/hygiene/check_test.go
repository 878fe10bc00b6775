package hygiene

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, l Limits) *Checker {
	t.Helper()
	c, err := Compile(l)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

// parse reads a raw HTTP/1.1 request the way Go's server does, so Check
// sees what a handler would. head holds the request line and header fields
// after Host, one per line, without the blank line.
func parse(t testing.TB, head string) *http.Request {
	t.Helper()
	if !strings.Contains(head, " HTTP/1.1\n") {
		head = strings.Replace(head, "\n", " HTTP/1.1\nHost: example.test\n", 1)
	}
	raw := strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("Go refuses %q itself: %v", head, err)
	}
	return r
}

func repeat(format string, n int, sep string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(parts, sep)
}

type checkCase struct {
	name   string
	head   string // request line and fields, see parse
	limits Limits
	mod    func(r *http.Request) // for what Go's parser would not produce
	rule   string                // "" when accepted
	status int                   // 400 when 0 and refused
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCompile(t, tc.limits)
			head := tc.head
			if !strings.Contains(head, "\n") {
				head += "\n"
			}
			r := parse(t, head)
			if tc.mod != nil {
				tc.mod(r)
			}
			ref := c.Check(r)
			switch {
			case tc.rule == "" && ref != nil:
				t.Fatalf("refused by %s (%d), want accepted", ref.Rule, ref.Status)
			case tc.rule == "":
				return
			case ref == nil:
				t.Fatalf("accepted, want refused by %s", tc.rule)
			}
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			if ref.Rule != tc.rule || ref.Status != want {
				t.Errorf("refused by %s (%d), want %s (%d)", ref.Rule, ref.Status, tc.rule, want)
			}
			if ref.Detail == "" || strings.ContainsAny(ref.Detail, "<>%") {
				t.Errorf("detail %q", ref.Detail)
			}
			if p := ref.Problem(); p.Status != want || p.Detail != ref.Detail {
				t.Errorf("problem %+v", p)
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	slashes := Limits{AllowEncodedSlash: true}
	runCheckCases(t, []checkCase{
		{name: "root", head: "GET /"},
		{name: "plain", head: "GET /api/v1/items"},
		{name: "trailing slash", head: "GET /api/"},
		{name: "dots inside names", head: "GET /a.b/c..d/...x/.well-known/e."},
		{name: "encoded space", head: "GET /a%20b"},
		{name: "encoded UTF-8", head: "GET /caf%C3%A9"},
		{name: "raw UTF-8", head: "GET /café"},
		{name: "escaped percent without hex after it", head: "GET /100%25"},
		{name: "escaped percent then one hex digit", head: "GET /a%252"},
		{name: "encoded slash allowed", head: "GET /files/a%2Fb", limits: slashes},

		{name: "double slash at start", head: "GET //admin", rule: RulePath},
		{name: "double slash inside", head: "GET /a//b", rule: RulePath},
		{name: "dot segment", head: "GET /a/./b", rule: RulePath},
		{name: "trailing dot segment", head: "GET /a/.", rule: RulePath},
		{name: "encoded dot segment", head: "GET /a/%2e/b", rule: RulePath},
		{name: "semicolon", head: "GET /admin;x=1", rule: RulePath},
		{name: "encoded semicolon", head: "GET /admin%3Bx", rule: RulePath},
		{name: "backslash", head: `GET /a\b`, rule: RulePath},
		{name: "encoded backslash", head: "GET /a%5Cb", rule: RulePath},
		{name: "asterisk form", head: "OPTIONS *", rule: RulePath},
		{name: "empty path", head: "GET /", mod: func(r *http.Request) { r.URL.Path = "" }, rule: RulePath},
		{name: "encoded double slash even when allowed", head: "GET /a%2F%2Fb", limits: slashes, rule: RulePath},

		{name: "dot-dot", head: "GET /a/../b", rule: RuleTraversal},
		{name: "trailing dot-dot", head: "GET /a/..", rule: RuleTraversal},
		{name: "encoded dot-dot", head: "GET /a/%2e%2e/b", rule: RuleTraversal},
		{name: "upper case encoded dot-dot", head: "GET /a/%2E%2E/b", rule: RuleTraversal},
		{name: "half encoded dot-dot", head: "GET /a/.%2e/b", rule: RuleTraversal},
		{name: "dot-dot before a backslash", head: "GET /a/..%5Cb", rule: RuleTraversal},
		{name: "dot-dot after an allowed encoded slash", head: "GET /a%2F..%2Fb", limits: slashes, rule: RuleTraversal},

		{name: "encoded slash", head: "GET /a%2fb", rule: RuleEncodedSlash},
		{name: "upper case encoded slash", head: "GET /a%2Fb", rule: RuleEncodedSlash},
		{name: "encoded slash at the end", head: "GET /a/%2F", rule: RuleEncodedSlash},

		{name: "double encoded dot-dot", head: "GET /a/%252e%252e/b", rule: RulePercentEncoding},
		{name: "double encoded slash", head: "GET /a%252Fb", rule: RulePercentEncoding},
		{name: "double encoded letter", head: "GET /%2541", rule: RulePercentEncoding},
		{name: "invalid escape in raw path", head: "GET /a",
			mod: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a%zz", "/a%zz" }, rule: RulePercentEncoding},
		{name: "truncated escape in raw path", head: "GET /a",
			mod: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a%2", "/a%2" }, rule: RulePercentEncoding},

		{name: "encoded NUL", head: "GET /a%00b", rule: RuleNUL},
		{name: "encoded NUL at the end", head: "GET /a/%00", rule: RuleNUL},

		{name: "overlong dot-dot", head: "GET /%c0%ae%c0%ae/etc", rule: RuleUTF8},
		{name: "overlong slash", head: "GET /a%c0%afb", rule: RuleUTF8},
		{name: "three byte overlong slash", head: "GET /a%e0%80%afb", rule: RuleUTF8},
		{name: "Latin-1", head: "GET /caf%E9", rule: RuleUTF8},
		{name: "encoded surrogate", head: "GET /%ed%a0%80", rule: RuleUTF8},
	})
}

func TestCheckQuery(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "none", head: "GET /s"},
		{name: "empty", head: "GET /s?"},
		{name: "pairs", head: "GET /s?a=1&b=2&c"},
		{name: "encoded semicolon", head: "GET /s?a=1%3Bb"},
		{name: "double encoding in a nested URL", head: "GET /login?next=https%3A%2F%2Fx.test%2Fa%253Db"},
		{name: "escaped percent", head: "GET /s?q=100%25"},
		{name: "plus and slashes", head: "GET /s?q=a+b/c/../d"},

		{name: "semicolon", head: "GET /s?a=1;b=2", rule: RuleQuery},
		{name: "space", head: "GET /s", mod: func(r *http.Request) { r.URL.RawQuery = "a=b c" }, rule: RuleQuery},
		{name: "control character", head: "GET /s", mod: func(r *http.Request) { r.URL.RawQuery = "a=\x01" }, rule: RuleQuery},
		{name: "DEL", head: "GET /s", mod: func(r *http.Request) { r.URL.RawQuery = "a=\x7f" }, rule: RuleQuery},

		{name: "invalid escape", head: "GET /s?q=%zz", rule: RulePercentEncoding},
		{name: "half escape", head: "GET /s?q=%4", rule: RulePercentEncoding},
		{name: "percent at the end", head: "GET /s?q=%", rule: RulePercentEncoding},

		{name: "encoded NUL", head: "GET /s?q=%00", rule: RuleNUL},
		{name: "encoded NUL in a name", head: "GET /s?a%00=1", rule: RuleNUL},
		{name: "raw NUL", head: "GET /s", mod: func(r *http.Request) { r.URL.RawQuery = "q=\x00" }, rule: RuleNUL},

		{name: "params at the limit", head: "GET /s?" + repeat("p%d=1", 256, "&")},
		{name: "empty params not counted", head: "GET /s?" + repeat("p%d=1", 256, "&&") + "&"},
		{name: "params over the limit", head: "GET /s?" + repeat("p%d=1", 257, "&"), rule: RuleParams},
		{name: "repeated names count", head: "GET /s?" + strings.Repeat("a&", 300), rule: RuleParams},
		{name: "own limit", head: "GET /s?a&b&c", limits: Limits{MaxQueryParams: 2}, rule: RuleParams},
		{name: "limit off", head: "GET /s?" + strings.Repeat("a&", 300), limits: Limits{MaxQueryParams: -1}},
	})
}

func TestCheckHost(t *testing.T) {
	host := func(h string) func(*http.Request) { return func(r *http.Request) { r.Host = h } }
	// h2Host leaves a Host field in the header, as Go's HTTP/2 server does
	// when a client sends one next to :authority.
	h2Host := func(vv ...string) func(*http.Request) {
		return func(r *http.Request) { r.Header["Host"] = vv }
	}
	runCheckCases(t, []checkCase{
		{name: "name", head: "GET /"},
		{name: "name and port", head: "GET /", mod: host("api.example.test:8443")},
		{name: "IPv4", head: "GET /", mod: host("127.0.0.1:1")},
		{name: "IPv6", head: "GET /", mod: host("[::1]:8443")},
		{name: "IPv6 without port", head: "GET /", mod: host("[::1]")},
		{name: "none (HTTP/1.0)", head: "GET /", mod: host("")},
		{name: "absolute form wins", head: "GET http://api.example.test/x HTTP/1.1\nHost: other.test"},
		{name: "HTTP/2 Host equal to authority", head: "GET /", mod: h2Host("example.test")},
		{name: "HTTP/2 Host equal but for case", head: "GET /", mod: h2Host("Example.TEST")},

		{name: "comma", head: "GET /", mod: host("api.example.test:,evil.example"), rule: RuleHost},
		{name: "letters in port", head: "GET /", mod: host("a.test:80x"), rule: RuleHost},
		{name: "long port", head: "GET /", mod: host("a.test:123456"), rule: RuleHost},
		{name: "space", head: "GET /", mod: host("a b.test"), rule: RuleHost},
		{name: "unclosed bracket", head: "GET /", mod: host("[::1"), rule: RuleHost},
		{name: "junk after bracket", head: "GET /", mod: host("[::1]x"), rule: RuleHost},
		{name: "user info", head: "GET /", mod: host("user@a.test"), rule: RuleHost},
		{name: "empty name", head: "GET /", mod: host(":443"), rule: RuleHost},
		{name: "HTTP/2 Host differs from authority", head: "GET /", mod: h2Host("evil.test"), rule: RuleHost},
		{name: "HTTP/2 Host differs in port", head: "GET /", mod: h2Host("example.test:443"), rule: RuleHost},
		{name: "HTTP/2 Host twice", head: "GET /", mod: h2Host("example.test", "example.test"), rule: RuleHost},
	})
}

func TestCheckSizes(t *testing.T) {
	target := func(n int) string { return "GET /" + strings.Repeat("a", n-1) }
	headers := func(n int) string { return repeat("X-H%d: v", n, "\n") }
	runCheckCases(t, []checkCase{
		{name: "URL at the limit", head: target(DefaultMaxURLBytes)},
		{name: "URL over the limit", head: target(DefaultMaxURLBytes + 1), rule: RuleURLLength, status: 414},
		{name: "URL with query over the limit", head: target(DefaultMaxURLBytes-2) + "?ab", rule: RuleURLLength, status: 414},
		{name: "URL over own limit", head: "GET /abcdef", limits: Limits{MaxURLBytes: 5}, rule: RuleURLLength, status: 414},
		{name: "URL limit off", head: target(DefaultMaxURLBytes + 1), limits: Limits{MaxURLBytes: -1}},
		{name: "URL built in process", head: "GET /",
			mod: func(r *http.Request) {
				r.RequestURI = ""
				r.URL.Path, r.URL.RawQuery = "/"+strings.Repeat("a", 8000), strings.Repeat("b", 500)
			}, rule: RuleURLLength, status: 414},

		{name: "headers at the limit", head: "GET /\n" + headers(DefaultMaxHeaders)},
		{name: "headers over the limit", head: "GET /\n" + headers(DefaultMaxHeaders+1), rule: RuleHeaders, status: 431},
		{name: "one header repeated", head: "GET /\n" + strings.TrimSuffix(strings.Repeat("X-A: 1\n", 101), "\n"), rule: RuleHeaders, status: 431},
		{name: "headers over own limit", head: "GET /\nA: 1\nB: 2", limits: Limits{MaxHeaders: 1}, rule: RuleHeaders, status: 431},

		{name: "cookies at the limit", head: "GET /\nCookie: " + repeat("c%d=v", 64, "; ")},
		{name: "cookies over the limit", head: "GET /\nCookie: " + repeat("c%d=v", 65, "; "), rule: RuleCookies, status: 431},
		{name: "cookies over two fields", head: "GET /\nCookie: " + repeat("a%d=v", 33, "; ") + "\nCookie: " + repeat("b%d=v", 32, ";"), rule: RuleCookies, status: 431},
		{name: "empty cookie pairs not counted", head: "GET /\nCookie: ;; a=1; ;b=2;", limits: Limits{MaxCookies: 2}},
		{name: "cookies over own limit", head: "GET /\nCookie: a=1; b=2; c=3", limits: Limits{MaxCookies: 2}, rule: RuleCookies, status: 431},
	})
}

func TestCheckBody(t *testing.T) {
	caps := Limits{
		MaxBodyBytes: 100,
		BodyCaps:     map[string]int64{"application/json": 50, "image/*": 1000, "image/svg+xml": 10, "video/*": -1},
	}
	only := Limits{ContentTypes: []string{"application/json", "text/*"}}
	post := func(ct string, n int) string {
		h := fmt.Sprintf("POST /u\nContent-Length: %d", n)
		if ct != "" {
			h += "\nContent-Type: " + ct
		}
		return h
	}
	chunked := "POST /u\nTransfer-Encoding: chunked"
	runCheckCases(t, []checkCase{
		{name: "default cap", head: post("text/plain", DefaultMaxBodyBytes)},
		{name: "over default cap", head: post("text/plain", DefaultMaxBodyBytes+1), rule: RuleBodySize, status: 413},
		{name: "own default", head: post("text/plain", 101), limits: caps, rule: RuleBodySize, status: 413},
		{name: "no type takes the default", head: post("", 101), limits: caps, rule: RuleBodySize, status: 413},
		{name: "exact type at cap", head: post("application/json", 50), limits: caps},
		{name: "exact type over cap", head: post("application/json", 51), limits: caps, rule: RuleBodySize, status: 413},
		{name: "type in another case with parameters", head: post("Application/JSON; charset=utf-8", 51), limits: caps, rule: RuleBodySize, status: 413},
		{name: "wildcard raises the cap", head: post("image/png", 1000), limits: caps},
		{name: "wildcard over cap", head: post("image/png", 1001), limits: caps, rule: RuleBodySize, status: 413},
		{name: "exact beats wildcard", head: post("image/svg+xml", 11), limits: caps, rule: RuleBodySize, status: 413},
		{name: "no cap for a type", head: post("video/mp4", 1<<40), limits: caps},
		{name: "chunked is left to the reader", head: chunked + "\nContent-Type: application/json", limits: caps},
		{name: "cap off", head: post("text/plain", 1<<40), limits: Limits{MaxBodyBytes: -1}},

		{name: "allowed type", head: post("application/json", 2), limits: only},
		{name: "allowed wildcard", head: post("text/csv; charset=utf-8", 2), limits: only},
		{name: "allowed in other case", head: post("TEXT/Plain", 2), limits: only},
		{name: "no body needs no type", head: "GET /u", limits: only},
		{name: "empty body needs no type", head: post("", 0), limits: only},
		{name: "any type when unrestricted", head: post("application/x-custom", 2)},
		{name: "no type when unrestricted", head: post("", 2)},
		{name: "multipart with boundary", head: post(`multipart/form-data; boundary="a b'c"`, 2)},

		{name: "type not allowed", head: post("application/xml", 2), limits: only, rule: RuleContentType, status: 415},
		{name: "suffix is not the type", head: post("application/problem+json", 2), limits: only, rule: RuleContentType, status: 415},
		{name: "body without type", head: post("", 2), limits: only, rule: RuleContentType, status: 415},
		{name: "chunked body without type", head: chunked, limits: only, rule: RuleContentType, status: 415},
		{name: "empty type", head: post(" ", 2), limits: only, rule: RuleContentType, status: 415},
		{name: "malformed type", head: post("json", 2), rule: RuleContentType, status: 415},
		{name: "malformed subtype", head: post("application/js on", 2), rule: RuleContentType, status: 415},
		{name: "two types", head: post("application/json", 2) + "\nContent-Type: text/plain", rule: RuleContentType},
		{name: "multipart without boundary", head: post("multipart/form-data", 2), rule: RuleContentType},
		{name: "multipart boundary too long", head: post("multipart/form-data; boundary="+strings.Repeat("b", 71), 2), rule: RuleContentType},
		{name: "multipart boundary with bad character", head: post(`multipart/form-data; boundary="a\"b"`, 2), rule: RuleContentType},
		{name: "type checked before size", head: post("application/xml", 1<<40), limits: only, rule: RuleContentType, status: 415},
	})
}

// TestCheckGoRefusesFirst records what never reaches a handler: Go's
// parser refuses these itself, and the server answers 400.
func TestCheckGoRefusesFirst(t *testing.T) {
	for _, head := range []string{
		"GET /a%zz HTTP/1.1\r\nHost: a.test",
		"GET /a%2 HTTP/1.1\r\nHost: a.test",
		"GET /a\x00b HTTP/1.1\r\nHost: a.test",
		"GET /s?q=\x01 HTTP/1.1\r\nHost: a.test",
		"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test",
		"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2",
	} {
		if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\n\r\n"))); err == nil {
			t.Errorf("Go accepts %q; Check must cover it", head)
		}
	}
}

func TestCheckAllocations(t *testing.T) {
	c := mustCompile(t, Limits{ContentTypes: []string{"application/json"}})
	for name, r := range map[string]*http.Request{
		"browser GET": browserGET(t),
		"JSON POST":   parse(t, "POST /api/items?x=1\nContent-Type: application/json; charset=utf-8\nContent-Length: 20"),
	} {
		if n := testing.AllocsPerRun(100, func() {
			if ref := c.Check(r); ref != nil {
				t.Fatal(ref)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per Check, want 0", name, n)
		}
	}
}

func TestRefusalError(t *testing.T) {
	r := &Refusal{Status: 413, Rule: RuleBodySize, Detail: "The request body is too large."}
	if got, want := r.Error(), "hygiene.body_size: 413 Request Entity Too Large"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	p := r.Problem()
	if p.Status != 413 || p.Detail != r.Detail || p.Unwrap() != error(r) {
		t.Errorf("Problem() = %+v", p)
	}
}

// browserGET is what a browser sends for a page: a dozen fields, a query
// of three parameters and three cookies.
func browserGET(t testing.TB) *http.Request {
	return parse(t, `GET /products/shoes/running?color=blue&size=42&sort=price_asc HTTP/1.1
Host: shop.example.test
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8
Accept-Language: en-US,en;q=0.5
Accept-Encoding: gzip, deflate, br, zstd
Referer: https://shop.example.test/products/shoes
Connection: keep-alive
Cookie: session=3q2+7w8AAAEC; theme=dark; consent=analytics%3Dno
Upgrade-Insecure-Requests: 1
Sec-Fetch-Dest: document
Sec-Fetch-Mode: navigate
Sec-Fetch-Site: same-origin
Sec-Fetch-User: ?1
Priority: u=0, i`)
}

// TestCheckConcurrent shares one Checker, and one request for Check,
// between goroutines; run with -race.
func TestCheckConcurrent(t *testing.T) {
	c := mustCompile(t, Limits{MaxJSONDepth: 2})
	get := browserGET(t)
	done := make(chan error)
	for i := range 8 {
		go func() {
			var err error
			for range 50 {
				if ref := c.Check(get); ref != nil {
					err = ref
					break
				}
				r := bodyRequest("application/json", []byte(`[[[`), i%2 == 0)
				if _, rerr := io.ReadAll(c.Body(r)); rerr == nil {
					err = fmt.Errorf("goroutine %d: a JSON body too deep was let through", i)
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
