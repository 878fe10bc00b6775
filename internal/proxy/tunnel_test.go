package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// wsStats counts what a WebSocket upstream saw.
type wsStats struct {
	handshakes atomic.Int64 // upgrades accepted
	open       atomic.Int64 // connections still being served
}

// wsDial opens a WebSocket through the front server at base and returns the
// connection, a reader on it and the handshake's response. The connection
// is closed when the test ends.
func wsDial(t *testing.T, base string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	must(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\n"+
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	must(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	return conn, br, resp
}

// wsEcho sends msg on an open WebSocket and checks that it comes back.
func wsEcho(t *testing.T, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	_, err := conn.Write(wsFrame(msg, true))
	must(t, err)
	_, payload, err := wsReadFrame(br)
	must(t, err)
	if string(payload) != "echo: "+msg {
		t.Fatalf("got %q, want the echo of %q", payload, msg)
	}
}

// wantClosed checks that Moat closes conn: a read ends with an error that
// is not the test's own deadline.
func wantClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	must(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := br.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read: %v, want the tunnel closed by Moat", err)
	}
}

func TestTunnelsClosedWithProxy(t *testing.T) {
	var stats wsStats
	p, rec := newProxy(t, Options{Upstreams: urls(t, wsEchoUpstream(t, &stats))})
	f := front(t, p, nil)
	conn, br, resp := wsDial(t, f.URL)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	wsEcho(t, conn, br, "hello")

	p.Close() // as a reload does, a grace period after the swap
	wantClosed(t, conn, br)
	waitFor(t, "the upstream connection to close", func() bool { return stats.open.Load() == 0 })
	// The handler forgets its tunnel when it returns, just after both ends close.
	waitFor(t, "the tunnel to be forgotten", func() bool { return p.Tunnels() == 0 })

	_, _, resp = wsDial(t, f.URL)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("upgrade after Close: status %d Retry-After %q, want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if e, ok := rec.find("upstream.tunnel_refused"); !ok || e.Outcome != "denied" || e.Rule != ruleClosed {
		t.Errorf("event %+v (found %v): want upstream.tunnel_refused denied rule %s", e, ok, ruleClosed)
	}
	if n := stats.handshakes.Load(); n != 1 {
		t.Errorf("upstream saw %d handshakes, want 1", n)
	}
}

func TestTunnelIdleTimeout(t *testing.T) {
	var stats wsStats
	p, _ := newProxy(t, Options{Upstreams: urls(t, wsEchoUpstream(t, &stats)), TunnelIdleTimeout: 100 * time.Millisecond})
	conn, br, resp := wsDial(t, front(t, p, nil).URL)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	wsEcho(t, conn, br, "hello")
	wantClosed(t, conn, br)
	waitFor(t, "the upstream connection to close", func() bool { return stats.open.Load() == 0 })
	waitFor(t, "the tunnel to be forgotten", func() bool { return p.Tunnels() == 0 })
}

func TestMaxTunnels(t *testing.T) {
	var stats wsStats
	p, rec := newProxy(t, Options{Upstreams: urls(t, wsEchoUpstream(t, &stats)), MaxTunnels: 1})
	f := front(t, p, nil)
	conn, br, resp := wsDial(t, f.URL)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	wsEcho(t, conn, br, "first")

	_, _, resp = wsDial(t, f.URL)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second upgrade: status %d Retry-After %q, want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(body), "req-") {
		t.Errorf("body %q: want a problem with the request id", body)
	}
	e, ok := rec.find("upstream.tunnel_refused")
	if !ok || e.Outcome != "denied" || e.Rule != ruleMaxTunnels || e.Details["limit"] != "1" || e.RequestID == "" {
		t.Errorf("event %+v (found %v): want upstream.tunnel_refused denied rule %s limit 1", e, ok, ruleMaxTunnels)
	}
	if n := stats.handshakes.Load(); n != 1 {
		t.Errorf("upstream saw %d handshakes, want only the first", n)
	}
	wsEcho(t, conn, br, "still open")

	conn.Close()
	waitFor(t, "the first tunnel to end", func() bool { return p.Tunnels() == 0 })
	conn3, br3, resp := wsDial(t, f.URL)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade once the first ended: status %d, want 101", resp.StatusCode)
	}
	wsEcho(t, conn3, br3, "third")
}

// TestSpliceIdle runs splice between two in-memory pipes in a bubble, where
// time moves only when everything waits, to check when an idle tunnel is
// closed.
func TestSpliceIdle(t *testing.T) {
	const idle = time.Minute
	// every sends one byte from w to r every half idle, four times, and
	// reads them on the other side.
	every := func(w, r net.Conn) {
		go func() { _, _ = io.Copy(io.Discard, r) }()
		for range 4 {
			time.Sleep(idle / 2)
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}
	tests := []struct {
		name string
		run  func(client, upstream net.Conn) // drives the two far ends
		want time.Duration                   // when the tunnel must close
	}{
		{"silent", func(client, upstream net.Conn) {}, idle},
		{"upstream pushes, client silent", func(client, upstream net.Conn) { every(upstream, client) }, 3 * idle},
		{"client sends, upstream silent", func(client, upstream net.Conn) { every(client, upstream) }, 3 * idle},
		{"neither side reads", func(client, upstream net.Conn) {
			// Both directions end up blocked writing; only write
			// deadlines can end them.
			go func() { _, _ = client.Write([]byte("to upstream")) }()
			go func() { _, _ = upstream.Write([]byte("to client")) }()
		}, idle},
		{"client closes", func(client, upstream net.Conn) {
			time.Sleep(idle / 4)
			client.Close()
		}, idle / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, moatClient := net.Pipe()
				moatUp, upstream := net.Pipe()
				defer client.Close()
				defer upstream.Close()
				start := time.Now()
				done := make(chan time.Duration)
				go func() {
					splice(end{moatClient, moatClient}, end{moatUp, moatUp}, idle)
					done <- time.Since(start)
				}()
				go tt.run(client, upstream)
				if got := <-done; got != tt.want {
					t.Errorf("tunnel closed after %v, want %v", got, tt.want)
				}
				for name, c := range map[string]net.Conn{"client": client, "upstream": upstream} {
					if _, err := c.Write([]byte{'x'}); err == nil {
						t.Errorf("%s side still open after the splice", name)
					}
				}
			})
		})
	}
}
