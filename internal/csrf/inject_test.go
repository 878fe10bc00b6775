package csrf

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	page  = "https://app.example.com"
	input = `<input type="hidden" name="moat_csrf" value="TOKEN">`
)

// injectCases use "{T}" to mark where the input must appear in the output;
// the input is the case with the marks removed.
var injectCases = []struct {
	name, doc string
}{
	{"post form", `<p>x</p><form method="post" action="/save">{T}<input name=a></form>`},
	{"upper case", `<FORM METHOD=POST ACTION=/save>{T}</FORM>`},
	{"single quotes", `<form method='post' action='/save'>{T}</form>`},
	{"no action", `<form method=post>{T}</form>`},
	{"empty action", `<form action="" method=post>{T}</form>`},
	{"blank action", `<form action="  " method=post>{T}</form>`},
	{"relative action", `<form action="save?x=1#y" method=post>{T}</form>`},
	{"same origin absolute", `<form action="https://app.example.com/save" method=post>{T}</form>`},
	{"same origin, default port", `<form action="https://APP.example.com:443/save" method=post>{T}</form>`},
	{"same origin, no path", `<form action="https://app.example.com" method=post>{T}</form>`},
	{"several forms", `<form method=post>{T}</form><form method=get></form><form method=post action=/b>{T}</form>`},
	{"self-closing", `<form method="post"/>{T}</form>`},
	{"slash before attribute", `<form/method=post>{T}</form>`},
	{"attributes without spaces", `<form action="/a"method="post">{T}</form>`},
	{"newlines in tag", "<form\n\tmethod\n=\n\"post\"\n>{T}</form>"},
	{"method by reference", `<form method="&#112;ost">{T}</form>`},
	{"first duplicate wins", `<form method=post action="/ok" action="https://evil.test/">{T}</form>`},
	{"boolean attribute before method", `<form novalidate method=post>{T}</form>`},
	{"after doctype", `<!DOCTYPE html><html><body><form method=post>{T}</form>`},
	{"after comment", `<!-- <form method=post> --><form method=post>{T}</form>`},
	{"comment closed by --!>", `<!-- x --!><form method=post>{T}</form>`},
	{"empty comment", `<!--><form method=post>{T}</form>`},
	{"empty comment, three dashes", `<!---><form method=post>{T}</form>`},
	{"after script", `<script>var s = "<form method=post>";</script><form method=post>{T}</form>`},
	{"after script end tag with space", `<script>x</script ><form method=post>{T}</form>`},
	{"after script, upper case end tag", `<script>x</SCRIPT><form method=post>{T}</form>`},
	{"after style", `<style>p{}</style><form method=post>{T}</form>`},
	{"after textarea", `<textarea><form method=post></textarea><form method=post>{T}</form>`},
	{"after title", `<title><form method=post></title><form method=post>{T}</form>`},
	{"after end tag with quoted attribute", `</div title=">"><form method=post>{T}</form>`},
	{"relative base", `<base href="/app/"><form method=post action=save>{T}</form>`},
	{"same-origin base", `<base href="https://app.example.com/x/"><form method=post action=save>{T}</form>`},
	{"foreign base, empty action", `<base href="https://evil.test/"><form method=post>{T}</form>`},
	{"foreign base, absolute action", `<base href="https://evil.test/"><form method=post action="https://app.example.com/a">{T}</form>`},
	{"base without href does not count", `<base target=_top><base href="/x/"><form method=post action=a>{T}</form>`},
	{"nested form tags", `<form method=post>{T}<form method=post>{T}</form></form>`},
	{"lt before tag", `a < b <<form method=post>{T}</form>`},
	{"unquoted value with quote", `<form method=post action=/a"b>{T}</form>`},
	{"script after rawtext lookalike", `<style></stylex></style><form method=post>{T}</form>`},
}

// untouchedCases must come out unchanged.
var untouchedCases = []struct {
	name, doc string
}{
	{"get form", `<form method="get" action="/search"></form>`},
	{"no method", `<form action="/search"></form>`},
	{"put is get to a browser", `<form method="put"></form>`},
	{"dialog", `<form method="dialog"></form>`},
	{"method with spaces", `<form method=" post"></form>`},
	{"first method wins", `<form method=get method=post></form>`},
	{"cross-origin action", `<form method=post action="https://evil.test/steal"></form>`},
	{"http action on own host", `<form method=post action="http://app.example.com/x"></form>`},
	{"other port", `<form method=post action="https://app.example.com:8443/x"></form>`},
	{"suffix host", `<form method=post action="https://app.example.com.evil.test/x"></form>`},
	{"user info", `<form method=post action="https://app.example.com@evil.test/x"></form>`},
	{"scheme-relative", `<form method=post action="//evil.test/x"></form>`},
	{"scheme-relative to own host", `<form method=post action="//evil.test@app.example.com/x"></form>`},
	{"backslashes", `<form method=post action="\\evil.test/x"></form>`},
	{"slash backslash", `<form method=post action="/\evil.test/x"></form>`},
	{"https backslashes", `<form method=post action="https:\\evil.test/x"></form>`},
	{"tab in scheme", "<form method=post action=\"ht\ttps://evil.test/\"></form>"},
	{"newline in slashes", "<form method=post action=\"/\n/evil.test/\"></form>"},
	{"leading control", "<form method=post action=\"\x01//evil.test/\"></form>"},
	{"reference for slash", `<form method=post action="&#47;/evil.test/"></form>`},
	{"reference for colon", `<form method=post action="https&colon;//evil.test/"></form>`},
	{"javascript", `<form method=post action="javascript:alert(1)"></form>`},
	{"data", `<form method=post action="data:text/html,x"></form>`},
	{"scheme without slashes", `<form method=post action="https:evil.test"></form>`},
	{"first action wins", `<form method=post action="https://evil.test/" action="/ok"></form>`},
	{"foreign base, relative action", `<base href="https://evil.test/"><form method=post action=save></form>`},
	{"foreign base, absolute path", `<base href="//evil.test/"><form method=post action=/save></form>`},
	{"foreign base, blank action", `<base href="https://evil.test/"><form method=post action=" "></form>`},
	{"in comment", `<!-- <form method=post> -->`},
	{"in comment with dashes", `<!-- a -- b --- <form method=post> -->`},
	{"in bogus comment", `<? <form method=post> ?>`},
	{"in doctype", `<!DOCTYPE <form method=post>`},
	{"in cdata lookalike", `<![CDATA[<form method=post>]]>`},
	{"in script", `<script>document.write('<form method=post>')</script>`},
	{"in script, end tag lookalike", `<script>a = "</scripts><form method=post>"</script>`},
	{"in escaped script", `<script><!-- x = "</a><form method=post>" --></script>`},
	{"in double-escaped script", `<script><!--<script></script><form method=post></script>-->`},
	{"in style", `<style>/* <form method=post> */</style>`},
	{"in textarea", `<textarea><form method=post></textarea>`},
	{"in title", `<title><form method=post></title>`},
	{"in xmp", `<xmp><form method=post></xmp>`},
	{"in iframe", `<iframe><form method=post></iframe>`},
	{"in noscript", `<noscript><form method=post></noscript>`},
	{"in noframes", `<noframes><form method=post></noframes>`},
	{"in noembed", `<noembed><form method=post></noembed>`},
	{"after plaintext", `<plaintext></plaintext><form method=post>`},
	{"in attribute value", `<a title="<form method=post>">x</a>`},
	{"in single-quoted value", `<a title='<form method=post>'>x</a>`},
	{"unquoted value takes the slash", `<form method=post/></form>`},
	{"longer tag name", `<formx method=post></formx>`},
	{"end tag", `</form method=post>`},
	{"unfinished tag", `<form method=post`},
	{"huge action", `<form method=post action="/` + strings.Repeat("a", maxAttrValue) + `"></form>`},
	{"huge base", `<base href="/` + strings.Repeat("a", maxAttrValue) + `"><form method=post action=x></form>`},
	{"no form", `<!doctype html><html><head><title>t</title></head><body><p>Hello</p></body></html>`},
}

func inject(t testing.TB, chunks ...string) string {
	t.Helper()
	var out bytes.Buffer
	f := NewFormInjector(&out, page, "moat_csrf", "TOKEN")
	for _, c := range chunks {
		n, err := f.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c))
		}
	}
	return out.String()
}

func TestFormInjector(t *testing.T) {
	type tc struct{ name, in, want string }
	var tests []tc
	for _, c := range injectCases {
		tests = append(tests, tc{c.name, strings.ReplaceAll(c.doc, "{T}", ""), strings.ReplaceAll(c.doc, "{T}", input)})
	}
	for _, c := range untouchedCases {
		if strings.Contains(c.doc, "{T}") {
			t.Fatalf("untouched case %q contains {T}", c.name)
		}
		tests = append(tests, tc{"untouched/" + c.name, c.doc, c.doc})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inject(t, tt.in); got != tt.want {
				t.Fatalf("one write:\n got %q\nwant %q", got, tt.want)
			}
			// Split at every byte boundary, in two writes and one
			// byte at a time: always the same output.
			for i := 0; i <= len(tt.in); i++ {
				if got := inject(t, tt.in[:i], tt.in[i:]); got != tt.want {
					t.Fatalf("split at %d:\n got %q\nwant %q", i, got, tt.want)
				}
			}
			bytewise := make([]string, len(tt.in))
			for i := range tt.in {
				bytewise[i] = tt.in[i : i+1]
			}
			if got := inject(t, bytewise...); got != tt.want {
				t.Fatalf("byte at a time:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestFormInjectorBounded feeds one tag with an endless attribute value
// and checks that the injector's memory stays within its bound.
func TestFormInjectorBounded(t *testing.T) {
	f := NewFormInjector(io.Discard, page, "moat_csrf", "TOKEN")
	chunk := []byte(strings.Repeat("/aaaaaaa", 1024))
	if _, err := f.Write([]byte(`<form method=post action="`)); err != nil {
		t.Fatal(err)
	}
	for range 1024 { // 8 MiB
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if cap(f.val) > maxAttrValue || cap(f.action) > maxAttrValue {
		t.Fatalf("injector holds %d and %d bytes, want at most %d", cap(f.val), cap(f.action), maxAttrValue)
	}
	var out bytes.Buffer
	f.dst = &out
	if _, err := f.Write([]byte(`"><form method=post>`)); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), `"><form method=post>`+input; got != want {
		t.Fatalf("after the huge tag got %q, want %q", got, want)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, io.ErrClosedPipe
	}
	w.n--
	return len(p), nil
}

func TestFormInjectorWriteError(t *testing.T) {
	f := NewFormInjector(&failWriter{n: 1}, page, "moat_csrf", "TOKEN")
	if _, err := f.Write([]byte(`<form method=post>x`)); err == nil {
		t.Fatal("Write succeeded on a failing destination")
	}
	if _, err := f.Write([]byte(`x`)); err == nil {
		t.Fatal("Write after a failure succeeded")
	}
}

var tokenInput = regexp.MustCompile(`<input type="hidden" name="moat_csrf" value="([A-Za-z0-9_-]+)">`)

// TestInjectForms serves pages through InjectForms on a loopback server
// and checks what a browser would receive.
func TestInjectForms(t *testing.T) {
	p := newProtection(t, Config{})
	const doc = `<html><body><form method=post action=/save><input name=a></form><form method=post action="https://evil.test/"></form></body></html>`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, doc)
	_ = zw.Close()

	tests := []struct {
		name     string
		header   [][2]string
		body     []byte
		status   int
		injected bool
	}{
		{"html", [][2]string{{"Content-Type", "text/html; charset=utf-8"}}, []byte(doc), 200, true},
		{"html upper case type", [][2]string{{"Content-Type", "TEXT/HTML"}}, []byte(doc), 200, true},
		{"html error page", [][2]string{{"Content-Type", "text/html"}}, []byte(doc), 422, true},
		{"identity encoding", [][2]string{{"Content-Type", "text/html"}, {"Content-Encoding", "identity"}}, []byte(doc), 200, true},
		{"gzip passes", [][2]string{{"Content-Type", "text/html"}, {"Content-Encoding", "gzip"}}, gz.Bytes(), 200, false},
		{"json passes", [][2]string{{"Content-Type", "application/json"}}, []byte(doc), 200, false},
		{"plain text passes", [][2]string{{"Content-Type", "text/plain"}}, []byte(doc), 200, false},
		{"no type passes", nil, []byte(doc), 200, false},
		{"utf-16 passes", [][2]string{{"Content-Type", "text/html; charset=UTF-16LE"}}, []byte(doc), 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w = p.InjectForms(w, r, session)
				for _, h := range tt.header {
					w.Header().Set(h[0], h[1])
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(tt.body)))
				w.WriteHeader(tt.status)
				// Two writes, split inside the first form tag.
				_, _ = w.Write(tt.body[:20])
				http.NewResponseController(w).Flush()
				_, _ = w.Write(tt.body[20:])
			}))
			defer srv.Close()
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if !tt.injected {
				if !bytes.Equal(got, tt.body) {
					t.Fatalf("body changed:\n got %q\nwant %q", got, tt.body)
				}
				if resp.ContentLength != int64(len(tt.body)) {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(tt.body))
				}
				if cc := resp.Header.Get("Cache-Control"); cc != "" {
					t.Errorf("Cache-Control %q added to a response passed through", cc)
				}
				return
			}
			m := tokenInput.FindAllSubmatch(got, -1)
			if len(m) != 1 {
				t.Fatalf("%d token inputs in %q, want 1 (the same-origin form only)", len(m), got)
			}
			if !p.Valid(session, string(m[0][1])) {
				t.Error("injected token is not valid for the session")
			}
			if p.Valid(other, string(m[0][1])) {
				t.Error("injected token is valid for another session")
			}
			if want := strings.Replace(doc, "<input name=a>", string(m[0][0])+"<input name=a>", 1); string(got) != want {
				t.Errorf("body\n got %q\nwant %q", got, want)
			}
			if resp.ContentLength != -1 {
				t.Errorf("Content-Length %d kept on a rewritten body", resp.ContentLength)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "private" {
				t.Errorf("Cache-Control %q on a page with a session's token, want private", cc)
			}
		})
	}
}

func TestKeepPrivate(t *testing.T) {
	tests := []struct {
		name             string
		cc, etag         []string
		wantCC, wantETag string
	}{
		{"none", nil, nil, "private", ""},
		{"public", []string{"public, max-age=60"}, []string{`"abc"`}, "max-age=60, private", `W/"abc"`},
		{"shared max age", []string{"max-age=60", "s-maxage=600"}, nil, "max-age=60, private", ""},
		{"already private", []string{"private, max-age=0"}, []string{`W/"x"`}, "private, max-age=0", `W/"x"`},
		{"no-store", []string{"no-store"}, nil, "no-store", ""},
		{"qualified private", []string{`private="Set-Cookie"`}, nil, `private="Set-Cookie", private`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cache-Control": tt.cc, "Etag": tt.etag}
			keepPrivate(h)
			if got := h.Values("Cache-Control"); len(got) != 1 || got[0] != tt.wantCC {
				t.Errorf("Cache-Control %q, want %q", got, tt.wantCC)
			}
			if got := h.Get("ETag"); got != tt.wantETag {
				t.Errorf("ETag %q, want %q", got, tt.wantETag)
			}
		})
	}
}

func TestInjectFormsNoBinding(t *testing.T) {
	p := newProtection(t, Config{})
	w := httptest.NewRecorder()
	if got := p.InjectForms(w, httptest.NewRequest("GET", "https://"+host+"/", nil), nil); got != w {
		t.Fatal("InjectForms wrapped a response without a session")
	}
}

func TestClassifyURL(t *testing.T) {
	tests := []struct {
		in   string
		want actionTarget
	}{
		{"", targetRelative},
		{"save", targetRelative},
		{"/save", targetRelative},
		{"?q", targetRelative},
		{"#f", targetRelative},
		{"./a:b", targetRelative},
		{"a/b:c", targetRelative},
		{"https://app.example.com", targetSame},
		{"https://app.example.com/", targetSame},
		{"HTTPS://APP.EXAMPLE.COM:443/x", targetSame},
		{"https://app.example.com:443", targetSame},
		{"https://app.example.com:8443/", targetForeign},
		{"https://app.example.com.evil.test/", targetForeign},
		{"https://evil.test/?https://app.example.com", targetForeign},
		{"https://evil.test#@app.example.com", targetForeign},
		{"https://app.example.com\\@evil.test", targetSame}, // a browser reads the backslash as a slash too
		{"https://app.example.com%2f@evil.test", targetForeign},
		{"//app.example.com/x", targetSame},
		{"//evil.test", targetForeign},
		{"\\/evil.test", targetForeign},
		{" \x00//evil.test", targetForeign},
		{"http://app.example.com/", targetForeign},
		{"mailto:x@app.example.com", targetForeign},
		{"save:x", targetForeign},
		{"https:save", targetForeign},
		{"https://[", targetForeign},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := classifyURL(tt.in, page); got != tt.want {
				t.Fatalf("classifyURL(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}
