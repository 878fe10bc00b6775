package framing

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// attacks are requests with ambiguous framing, each carrying a second
// request that a parser disagreeing with net/http would see on its own.
var attacks = []struct {
	name   string
	raw    string
	status int // 400 from the handler; 501 when net/http refuses first
}{
	{"cl.te", "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
	{"te.cl", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled), 400},
	{"duplicate cl", "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 400},
	{"obs-fold", "POST /a HTTP/1.1\r\nHost: a\r\nX-Pad: 1\r\n Content-Length: 35\r\n\r\n" + smuggled, 400},
	{"te chunked, identity", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 501},
	{"after a valid request", "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
}

func TestListenerRefusesAmbiguousFraming(t *testing.T) {
	ca := newTestCA(t)
	ts, g := startServer(t, func(ln net.Listener) net.Listener { return NewListener(ln, ca.serverConfig(), Options{}) })
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			before := len(g.seen())
			c, err := tls.Dial("tcp", ts.Listener.Addr().String(), ca.clientConfig("http/1.1"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res := exchange(t, c, tc.raw, 0)
			if len(res) == 0 || res[len(res)-1].status != tc.status {
				t.Fatalf("responses %+v, want the last to be %d", res, tc.status)
			}
			for _, r := range res[:len(res)-1] {
				if r.status != http.StatusOK {
					t.Errorf("response before the refusal: %+v, want 200", r)
				}
			}
			if !closedByServer(t, c) {
				t.Error("connection still open after the refusal")
			}
			for _, s := range g.seen()[before:] {
				if strings.Contains(s, "smuggled") || s == "POST /a" {
					t.Errorf("handler served %q", s)
				}
			}
		})
	}
}

func TestListenerServesValidRequests(t *testing.T) {
	ca := newTestCA(t)
	ts, g := startServer(t, func(ln net.Listener) net.Listener { return NewListener(ln, ca.serverConfig(), Options{}) })
	addr := ts.Listener.Addr().String()

	t.Run("pipelined keep-alive", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, ca.clientConfig("http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := len(g.seen())
		raw := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
			"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n" + smuggled +
			"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n" +
			"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" +
			"GET /5 HTTP/1.1\r\nHost: a\r\n\r\n"
		res := exchange(t, c, raw, 5)
		if len(res) != 5 {
			t.Fatalf("got %d responses %+v, want 5", len(res), res)
		}
		for i, r := range res {
			if r.status != http.StatusOK {
				t.Errorf("response %d: %+v, want 200", i+1, r)
			}
		}
		if !strings.Contains(res[0].body, "tls=true conn=true conntls=true") {
			t.Errorf("response 1 %q: want Request.TLS restored and the Conn found", res[0].body)
		}
		want := []string{"GET /1", "POST /2", "POST /3", "GET /5"}
		if got := g.seen()[before:]; !slices.Equal(got, want) {
			t.Errorf("handler served %q, want %q", got, want)
		}
		// Still open for more.
		if res := exchange(t, c, "GET /6 HTTP/1.1\r\nHost: a\r\n\r\n", 1); len(res) != 1 || res[0].status != http.StatusOK {
			t.Errorf("request after the pipeline: %+v, want 200", res)
		}
	})

	t.Run("http.Client over http/1.1", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: ca.clientConfig(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		defer tr.CloseIdleConnections()
		for i := range 3 {
			body := fetch(t, &http.Client{Transport: tr}, "https://"+addr+"/h1", 1)
			if want := "proto=HTTP/1.1 tls=true conn=true conntls=true"; !strings.Contains(body, want) {
				t.Errorf("request %d: %q, want %q", i+1, body, want)
			}
		}
	})

	t.Run("http.Client over h2", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: ca.clientConfig(), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		body := fetch(t, &http.Client{Transport: tr}, "https://"+addr+"/h2", 2)
		if want := "proto=HTTP/2.0 tls=true conn=false"; !strings.Contains(body, want) {
			t.Errorf("%q, want %q", body, want)
		}
	})
}

func fetch(t *testing.T, c *http.Client, url string, major int) string {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.ProtoMajor != major {
		t.Fatalf("GET %s: %s over HTTP/%d, want 200 over HTTP/%d: %s", url, res.Status, res.ProtoMajor, major, body)
	}
	return string(body)
}

func TestPlainListener(t *testing.T) {
	ts, g := startServer(t, func(ln net.Listener) net.Listener { return NewPlainListener(ln, Limits{}) })
	body := fetch(t, ts.Client(), ts.URL+"/plain", 1)
	if want := "proto=HTTP/1.1 tls=false conn=true conntls=false"; !strings.Contains(body, want) {
		t.Errorf("%q, want %q", body, want)
	}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			before := len(g.seen())
			c, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res := exchange(t, c, tc.raw, 0)
			if len(res) == 0 || res[len(res)-1].status != tc.status {
				t.Fatalf("responses %+v, want the last to be %d", res, tc.status)
			}
			for _, s := range g.seen()[before:] {
				if strings.Contains(s, "smuggled") || s == "POST /a" {
					t.Errorf("handler served %q", s)
				}
			}
		})
	}
}

// TestPlainListenerUnencryptedHTTP2 serves HTTP/2 with prior knowledge
// on a plain listener: the requests have no HTTP/1 framing to check.
func TestPlainListenerUnencryptedHTTP2(t *testing.T) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	g := &gateway{}
	ts := httptest.NewUnstartedServer(g)
	ts.Listener = NewPlainListener(ts.Listener, Limits{})
	ts.Config.ConnContext = ConnContext
	ts.Config.Protocols = &protos
	ts.Start()
	t.Cleanup(ts.Close)

	var client http.Protocols
	client.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &client}
	defer tr.CloseIdleConnections()
	for i := range 3 {
		body := fetch(t, &http.Client{Transport: tr}, ts.URL+"/h2c", 2)
		if want := "proto=HTTP/2.0 tls=false conn=true"; !strings.Contains(body, want) {
			t.Errorf("request %d: %q, want %q", i+1, body, want)
		}
	}
}

// TestConnDeadlines checks that the deadlines net/http sets reach the
// connection: a client that never finishes its header is cut off.
func TestConnDeadlines(t *testing.T) {
	g := &gateway{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g, ConnContext: ConnContext, ReadHeaderTimeout: 50 * time.Millisecond}
	go func() { _ = srv.Serve(NewPlainListener(ln, Limits{})) }()
	t.Cleanup(func() { _ = srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n"); err != nil {
		t.Fatal(err)
	}
	if !closedByServer(t, c) {
		t.Error("server kept a connection with an unfinished header open past ReadHeaderTimeout")
	}
}

func TestListenerHandshakeFailure(t *testing.T) {
	ca := newTestCA(t)
	var mu sync.Mutex
	var failures []error
	ts, _ := startServer(t, func(ln net.Listener) net.Listener {
		return NewListener(ln, ca.serverConfig(), Options{OnHandshakeError: func(_ net.Addr, err error) {
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
		}})
	})
	addr := ts.Listener.Addr().String()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(reply), "HTTP/1.0 400 Bad Request") {
		t.Errorf("plain HTTP to the TLS listener: reply %q, want a 400", reply)
	}

	// The listener goes on serving.
	tr := &http.Transport{TLSClientConfig: ca.clientConfig()}
	defer tr.CloseIdleConnections()
	fetch(t, &http.Client{Transport: tr}, "https://"+addr+"/after", 1)

	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 1 {
		t.Fatalf("handshake failures reported: %v, want 1", failures)
	}
	var re tls.RecordHeaderError
	if !errors.As(failures[0], &re) {
		t.Errorf("reported %v, want a tls.RecordHeaderError", failures[0])
	}
}

// pipeListener hands out the server ends of net.Pipe connections.
type pipeListener struct {
	conns    chan net.Conn
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	accepted int
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn, 16), done: make(chan struct{})}
}

func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		l.mu.Lock()
		l.accepted++
		l.mu.Unlock()
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestListenerHandshakeBounds runs in a synctest bubble: a client that
// never speaks holds its handshake slot until HandshakeTimeout, and no
// more connections than MaxHandshakes are accepted meanwhile.
func TestListenerHandshakeBounds(t *testing.T) {
	ca := newTestCA(t)
	synctest.Test(t, func(t *testing.T) {
		pl := newPipeListener()
		failed := make(chan error, 4)
		l := NewListener(pl, ca.serverConfig(), Options{
			HandshakeTimeout: 5 * time.Second,
			MaxHandshakes:    1,
			OnHandshakeError: func(_ net.Addr, err error) { failed <- err },
		})
		accepted := make(chan net.Conn)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}
		}()

		silent := pl.dial()
		defer silent.Close()
		client := pl.dial()
		defer client.Close()
		synctest.Wait()
		if n := pl.count(); n != 1 {
			t.Fatalf("accepted %d connections while one handshake was pending, want 1", n)
		}

		time.Sleep(5 * time.Second)
		synctest.Wait()
		select {
		case err := <-failed:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("silent client: %v, want a deadline error", err)
			}
		default:
			t.Fatal("silent client: no handshake failure reported after HandshakeTimeout")
		}
		if n := pl.count(); n != 2 {
			t.Fatalf("accepted %d connections after the first handshake ended, want 2", n)
		}

		tc := tls.Client(client, ca.clientConfig("http/1.1"))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("client handshake: %v", err)
		}
		c := <-accepted
		conn, ok := c.(interface{ ConnectionState() tls.ConnectionState })
		if _, found := FromContext(ConnContext(t.Context(), c)); !ok || !found {
			t.Fatalf("Accept returned %T, want a Conn over TLS", c)
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1", p)
		}
		_ = c.Close()

		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, ok := <-accepted; ok {
			t.Error("Accept returned a connection after Close")
		}
	})
}

func TestListenerH2IsTLSConn(t *testing.T) {
	ca := newTestCA(t)
	synctest.Test(t, func(t *testing.T) {
		pl := newPipeListener()
		l := NewListener(pl, ca.serverConfig(), Options{})
		defer l.Close()
		client := pl.dial()
		defer client.Close()
		go func() { _ = tls.Client(client, ca.clientConfig("h2")).Handshake() }()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(*tls.Conn); !ok {
			t.Errorf("Accept returned %T for h2, want *tls.Conn", c)
		}
	})
}
