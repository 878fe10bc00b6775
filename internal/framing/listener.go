package framing

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Options configures a Listener. The zero value is the default for each
// field.
type Options struct {
	Limits Limits
	// HandshakeTimeout bounds a TLS handshake, from accept to its end. The
	// default is 10 seconds.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the connections accepted but not yet handed to
	// Accept's caller; while that many are pending, no more are accepted.
	// The default is 1024.
	MaxHandshakes int
	// OnHandshakeError, when set, is called with each failed handshake. It
	// is called from several goroutines at once and must not block.
	OnHandshakeError func(remote net.Addr, err error)
}

// A Listener accepts connections ready for http.Server.Serve: TLS
// connections whose handshake is done, or plain ones. Its methods are safe
// for concurrent use.
//
// Use it with http.Server.Serve, not ServeTLS, and with ConnContext as
// http.Server.ConnContext.
type Listener struct {
	inner net.Listener
	cfg   *tls.Config // nil for plain connections
	opt   Options

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	ready  chan net.Conn
	errc   chan error    // temporary Accept errors of inner
	dead   chan struct{} // closed after a permanent one
	err    error         // the permanent one
	sem    chan struct{} // one per connection accepted and not yet handed over
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	closed   bool
	closeErr error
}

// NewListener returns a Listener that accepts connections from inner and
// completes their TLS handshake with cfg, several at once in their own
// goroutines, so that a slow client does not hold up others. A connection
// whose handshake fails or runs out of time is closed and reported to
// Options.OnHandshakeError; Accept never returns it.
//
// When ALPN selects HTTP/1.1 or no protocol, Accept returns a Conn over the
// *tls.Conn. Otherwise it returns the *tls.Conn itself: net/http needs it
// to serve HTTP/2 ("h2"), and closes connections of protocols it does not
// serve. List the protocols to offer in cfg.NextProtos, for example "h2"
// and "http/1.1"; unlike ServeTLS, a Listener adds none.
func NewListener(inner net.Listener, cfg *tls.Config, o Options) *Listener {
	ctx, cancel := context.WithCancel(context.Background())
	o.HandshakeTimeout = cmp.Or(max(o.HandshakeTimeout, 0), 10*time.Second)
	o.MaxHandshakes = cmp.Or(max(o.MaxHandshakes, 0), 1024)
	return &Listener{
		inner: inner, cfg: cfg, opt: o,
		ctx: ctx, cancel: cancel,
		ready: make(chan net.Conn),
		errc:  make(chan error),
		dead:  make(chan struct{}),
		sem:   make(chan struct{}, o.MaxHandshakes),
	}
}

// NewPlainListener returns a Listener that wraps every connection inner
// accepts in a Conn, for HTTP/1.x without TLS.
func NewPlainListener(inner net.Listener, lim Limits) *Listener {
	ctx, cancel := context.WithCancel(context.Background())
	return &Listener{inner: inner, opt: Options{Limits: lim}, ctx: ctx, cancel: cancel}
}

// Accept returns the next connection: a Conn, or a *tls.Conn for a protocol
// other than HTTP/1.x. After Close it returns an error wrapping
// net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	if l.cfg == nil {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		return Wrap(c, l.opt.Limits), nil
	}
	l.mu.Lock()
	if !l.started && !l.closed {
		l.started = true
		l.wg.Go(l.acceptLoop)
	}
	l.mu.Unlock()
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.dead:
		return nil, l.err
	case <-l.ctx.Done():
		return nil, fmt.Errorf("accept: %w", net.ErrClosed)
	}
}

// Close closes inner, stops the handshakes in progress, closes the
// connections not yet returned by Accept and waits for the goroutines of
// the Listener to end.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	l.cancel()
	l.closeErr = l.inner.Close()
	l.mu.Unlock()
	l.wg.Wait()
	return l.closeErr
}

// Addr returns the address of inner.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func (l *Listener) acceptLoop() {
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		c, err := l.inner.Accept()
		if err != nil {
			<-l.sem
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && l.ctx.Err() == nil {
				select {
				case l.errc <- err:
					continue
				case <-l.ctx.Done():
					return
				}
			}
			l.err = err
			close(l.dead)
			return
		}
		l.wg.Go(func() { l.handshake(c) })
	}
}

func (l *Listener) handshake(raw net.Conn) {
	defer func() { <-l.sem }()
	tc := tls.Server(raw, l.cfg)
	err := raw.SetDeadline(time.Now().Add(l.opt.HandshakeTimeout))
	if err == nil {
		err = tc.HandshakeContext(l.ctx)
	}
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	if err != nil {
		l.refuse(raw, err)
		return
	}
	var c net.Conn = tc
	switch tc.ConnectionState().NegotiatedProtocol {
	case "", "http/1.1", "http/1.0":
		c = Wrap(tc, l.opt.Limits)
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		_ = c.Close()
	}
}

// refuse closes a connection whose handshake failed. Like net/http, it
// answers a client that sent plain HTTP with a short 400 first.
func (l *Listener) refuse(raw net.Conn, err error) {
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		_ = raw.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = raw.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
	}
	_ = raw.Close()
	if l.ctx.Err() == nil && l.opt.OnHandshakeError != nil {
		l.opt.OnHandshakeError(raw.RemoteAddr(), fmt.Errorf("tls handshake: %w", err))
	}
}

// looksLikeHTTP reports whether the first five bytes of a connection are
// the start of a plain HTTP request rather than a TLS record header.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}
