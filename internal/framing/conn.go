package framing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// A Conn is an HTTP/1.x server connection whose bytes read pass through a
// Scanner before net/http sees them. Its methods are safe for concurrent
// use; net/http reads from one goroutine at a time while a handler calls
// Next from another.
//
// net/http treats a Conn like any net.Conn that is not a *tls.Conn: it sets
// the deadlines of http.Server.ReadHeaderTimeout, ReadTimeout, WriteTimeout
// and IdleTimeout on it, which a Conn forwards, and it does not handshake.
// A Conn over TLS also has the ConnectionState method through which
// net/http fills in http.Request.TLS.
type Conn struct {
	nc  net.Conn
	tls *tls.Conn // nc, when it is TLS

	rmu sync.Mutex // one Read at a time, so that sc sees the stream in order
	mu  sync.Mutex // guards sc
	sc  Scanner
}

// Wrap returns nc as a Conn. When nc is a *tls.Conn, whose handshake must
// be complete, the result also has a ConnectionState method.
func Wrap(nc net.Conn, lim Limits) net.Conn {
	c := &Conn{nc: nc}
	c.sc.init(lim)
	if tc, ok := nc.(*tls.Conn); ok {
		c.tls = tc
		return tlsConn{c}
	}
	return c
}

// tlsConn is a Conn over TLS. net/http takes the state of the connection
// from ConnectionState, which a plain Conn must not have.
type tlsConn struct{ *Conn }

// ConnectionState returns the state of the TLS connection.
func (c tlsConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// Read reads from the connection and scans what it read.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, err := c.nc.Read(p)
	if n > 0 {
		c.mu.Lock()
		_, _ = c.sc.Write(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// Next reports on r, the request net/http is handing to its handler: the
// framing rule r or a request before it on the connection broke, or "". The
// handler calls it exactly once per request, before anything else, with r
// as net/http made it (Method and RequestURI are compared with the bytes
// scanned). On a rule it must answer 400 with "Connection: close": the
// bytes that follow on the connection cannot be trusted to start a request.
//
// Requests that arrive over HTTP/2 on a plain connection (prior knowledge,
// when http.Server.Protocols allows it) have no framing to check: Next
// returns "" for them.
func (c *Conn) Next(r *http.Request) string {
	if r.ProtoMajor != 1 && r.Method != "PRI" {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sc.Next(r.Method, r.RequestURI)
}

// Violation returns the number of the first request on the connection that
// broke a rule, counting from 1, and the rule; or 0, "".
func (c *Conn) Violation() (msg int, rule string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sc.Violation()
}

// TLS returns the state of the TLS connection the Conn reads, or nil when
// it is a plain one.
func (c *Conn) TLS() *tls.ConnectionState {
	if c.tls == nil {
		return nil
	}
	st := c.tls.ConnectionState()
	return &st
}

// NetConn returns the connection the Conn reads: a *tls.Conn or a plain one.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Write writes to the connection.
func (c *Conn) Write(p []byte) (int, error) { return c.nc.Write(p) }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// CloseWrite shuts down the writing side of the connection when it can,
// which net/http does before closing a connection it still reads from.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("close write: %w", errors.ErrUnsupported)
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the address of the client.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

type ctxKey struct{}

// ConnContext returns ctx carrying c when c is a Conn. It has the type of
// http.Server.ConnContext; set it there so that FromContext finds the Conn
// of a request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	switch c := c.(type) {
	case *Conn:
		return context.WithValue(ctx, ctxKey{}, c)
	case tlsConn:
		return context.WithValue(ctx, ctxKey{}, c.Conn)
	}
	return ctx
}

// FromContext returns the Conn a request arrived on, from the request's
// context. It finds none for HTTP/2 over TLS, which NewListener leaves
// unwrapped; an HTTP/1.x request without one means the server was not set
// up with ConnContext and a listener of this package, which a handler should
// treat as a fault rather than as a pass.
func FromContext(ctx context.Context) (*Conn, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Conn)
	return c, ok
}
