package hygiene

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/moatgw/moat/internal/problem"
)

// answer writes a refusal the way the gateway does.
func answer(w http.ResponseWriter, r *http.Request, ref *Refusal) {
	problem.Write(w, r, "req-1", ref.Problem())
}

// echoHandler checks a request, reads its guarded body and echoes it.
func echoHandler(c *Checker, calls *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if ref := c.Check(r); ref != nil {
			answer(w, r, ref)
			return
		}
		r.Body = c.Body(r)
		b, err := io.ReadAll(r.Body)
		var ref *Refusal
		switch {
		case errors.As(err, &ref):
			answer(w, r, ref)
		case err != nil:
			http.Error(w, "read failed", http.StatusInternalServerError)
		default:
			_, _ = w.Write(b)
		}
	})
}

// problemDetail returns a problem response's detail, failing the test when
// the response is not problem+json.
func problemDetail(t *testing.T, resp *http.Response) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want problem+json", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d in a %d response", p.Status, resp.StatusCode)
	}
	return p.Detail
}

func TestServerRaw(t *testing.T) {
	c := mustCompile(t, Limits{ContentTypes: []string{"application/json"}, BodyCaps: map[string]int64{"application/json": 1000}})
	var calls atomic.Int32
	srv := httptest.NewServer(echoHandler(c, &calls))
	defer srv.Close()
	tests := []struct {
		name    string
		head    string // request line and fields, CRLF added
		status  int
		handled bool // the handler ran, so the answer is Check's
	}{
		{"canonical", "GET /a/b?x=1 HTTP/1.1\nHost: a.test", 200, true},
		{"encoded dot-dot", "GET /a/%2e%2e/admin HTTP/1.1\nHost: a.test", 400, true},
		{"encoded slash", "GET /a%2Fb HTTP/1.1\nHost: a.test", 400, true},
		{"NUL in query", "GET /a?q=%00 HTTP/1.1\nHost: a.test", 400, true},
		{"invalid escape in query", "GET /a?q=%zz HTTP/1.1\nHost: a.test", 400, true},
		{"overlong URL", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\nHost: a.test", 414, true},
		{"too many fields", "GET / HTTP/1.1\nHost: a.test\n" + repeat("X-H%d: 1", 101, "\n"), 431, true},
		{"body over its type's cap", "POST /u HTTP/1.1\nHost: a.test\nContent-Type: application/json\nContent-Length: 1001", 413, true},
		{"type not allowed", "POST /u HTTP/1.1\nHost: a.test\nContent-Type: text/xml\nContent-Length: 5", 415, true},
		{"invalid escape in path", "GET /a%zz HTTP/1.1\nHost: a.test", 400, false},
		{"two Host fields", "GET / HTTP/1.1\nHost: a.test\nHost: b.test", 400, false},
		{"bad Host", "GET / HTTP/1.1\nHost: a b", 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := strings.ReplaceAll(tt.head, "\n", "\r\n")
			if _, err := io.WriteString(conn, head+"\r\nConnection: close\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if handled := calls.Load() > before; handled != tt.handled {
				t.Errorf("handler ran: %v, want %v", handled, tt.handled)
			}
			if tt.handled && tt.status != 200 {
				if d := problemDetail(t, resp); d == "" {
					t.Error("no detail")
				}
			}
		})
	}
}

// unsized hides a reader's length, so that the client sends it chunked.
type unsized struct{ io.Reader }

func TestServerBodies(t *testing.T) {
	c := mustCompile(t, Limits{BodyCaps: map[string]int64{"application/json": 100, "text/*": 50}, MaxJSONDepth: 4})
	var calls atomic.Int32
	srv := httptest.NewServer(echoHandler(c, &calls))
	defer srv.Close()
	tests := []struct {
		name    string
		ct      string
		body    string
		chunked bool
		status  int
	}{
		{"JSON within limits", "application/json", `{"a":[[{"b":"[[[[[["}]]]}`, true, 200},
		{"JSON too deep", "application/json", `{"a":[[{"b":[1]}]]}`, true, 400},
		{"text at its cap, chunked", "text/plain", strings.Repeat("x", 50), true, 200},
		{"text over its cap, chunked", "text/plain", strings.Repeat("x", 51), true, 413},
		{"text over its cap, sized", "text/plain", strings.Repeat("x", 51), false, 413},
		{"JSON over its cap, chunked", "application/json", "[" + strings.Repeat("1,", 60) + "1]", true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = unsized{body}
			}
			req, err := http.NewRequest("POST", srv.URL+"/u", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.ct)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 200 {
				got, _ := io.ReadAll(resp.Body)
				if string(got) != tt.body {
					t.Errorf("echo %q, want the body unchanged", got)
				}
			} else if d := problemDetail(t, resp); d == "" {
				t.Error("no detail")
			}
		})
	}
}

// TestServerProxy puts Check and Body in front of httputil.ReverseProxy:
// a body refused while it streams upstream reaches the proxy's error
// handler as a Refusal, which answers its status instead of 502, and the
// upstream never gets the whole body.
func TestServerProxy(t *testing.T) {
	var complete atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		complete.Add(1)
		_, _ = w.Write(b)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var ref *Refusal
			if errors.As(err, &ref) {
				answer(w, r, ref)
				return
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	c := mustCompile(t, Limits{MaxBodyBytes: 64 << 10, MaxJSONDepth: 8})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := c.Check(r); ref != nil {
			answer(w, r, ref)
			return
		}
		r.Body = c.Body(r)
		proxy.ServeHTTP(w, r)
	}))
	defer gw.Close()

	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	deep := strings.Repeat("[", 9) + strings.Repeat("]", 9)
	tests := []struct {
		name     string
		ct       string
		body     io.Reader
		status   int
		complete bool
	}{
		{"small body", "application/octet-stream", unsized{strings.NewReader("hello")}, 200, true},
		{"chunked body over the cap", "application/octet-stream", unsized{bytes.NewReader(big)}, 413, false},
		{"JSON too deep", "application/json", unsized{io.MultiReader(strings.NewReader(deep), bytes.NewReader(big[:32<<10]))}, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := complete.Load()
			req, _ := http.NewRequest("POST", gw.URL+"/", tt.body)
			req.Header.Set("Content-Type", tt.ct)
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := complete.Load() > before; got != tt.complete {
				t.Errorf("upstream read a complete body: %v, want %v", got, tt.complete)
			}
		})
	}
}

// TestServerHTTP2Host sends HTTP/2 requests with a Host field next to
// :authority, which Go's client never does, through a raw framer.
func TestServerHTTP2Host(t *testing.T) {
	c := mustCompile(t, Limits{})
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(echoHandler(c, &calls))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	tests := []struct {
		name   string
		host   []string // Host fields after :authority
		status string
	}{
		{"authority alone", nil, "200"},
		{"Host equal to authority", []string{"api.example.test"}, "200"},
		{"Host naming another authority", []string{"admin.example.test"}, "400"},
		{"Host twice", []string{"api.example.test", "api.example.test"}, "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Fatalf("negotiated %q", p)
			}
			before := calls.Load()
			if got := h2Status(t, conn, "api.example.test", tt.host); got != tt.status {
				t.Errorf(":status %s, want %s", got, tt.status)
			}
			if calls.Load() == before {
				t.Error("the handler did not run, so the answer is not Check's")
			}
		})
	}
}

// h2Status sends one GET on a new HTTP/2 connection and returns the
// response's :status.
func h2Status(t *testing.T, conn net.Conn, authority string, hosts []string) string {
	t.Helper()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: "/x"},
	}
	for _, h := range hosts {
		fields = append(fields, hpack.HeaderField{Name: "host", Value: h})
	}
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				return f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			return fmt.Sprintf("reset %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return fmt.Sprintf("goaway %v", f.ErrCode)
		}
	}
}
