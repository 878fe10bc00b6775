package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Tunnel defaults.
const (
	defaultMaxTunnels = 1024
	defaultTunnelIdle = 5 * time.Minute
	// Seconds a client refused a tunnel is asked to wait.
	tunnelRetryAfter = "5"
)

// Why an upgrade request gets no tunnel.
const (
	ruleMaxTunnels = "max_tunnels" // MaxTunnels are open
	ruleClosed     = "closed"      // the Proxy was closed, by a reload or a shutdown
)

// tunnel is one WebSocket connection passed through, from the moment its
// upgrade request is let in until it ends. Closing it closes the
// connections attached to it. It is safe for concurrent use.
type tunnel struct {
	mu     sync.Mutex
	closed bool
	conns  []io.Closer
}

// attach hands c to t, to be closed with it. When t is closed already it
// closes c at once and reports false.
func (t *tunnel) attach(c io.Closer) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return false
	}
	t.conns = append(t.conns, c)
	t.mu.Unlock()
	return true
}

// close closes t and every connection attached to it.
func (t *tunnel) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// openTunnel registers a new tunnel, or returns nil and the rule that
// refuses it when MaxTunnels are open or the Proxy is closed.
func (p *Proxy) openTunnel() (*tunnel, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, ruleClosed
	case len(p.tunnels) >= p.maxTunnels:
		return nil, ruleMaxTunnels
	}
	if p.tunnels == nil {
		p.tunnels = make(map[*tunnel]struct{})
	}
	t := new(tunnel)
	p.tunnels[t] = struct{}{}
	return t, ""
}

// closeTunnel closes t and forgets it.
func (p *Proxy) closeTunnel(t *tunnel) {
	t.close()
	p.mu.Lock()
	delete(p.tunnels, t)
	p.mu.Unlock()
}

// closeTunnels closes every tunnel; Close calls it once no new one can open.
func (p *Proxy) closeTunnels() {
	p.mu.Lock()
	open := make([]*tunnel, 0, len(p.tunnels))
	for t := range p.tunnels {
		open = append(open, t)
	}
	p.mu.Unlock()
	for _, t := range open {
		t.close()
	}
}

// Tunnels returns how many WebSocket tunnels are open or being opened. It
// is safe for concurrent use.
func (p *Proxy) Tunnels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tunnels)
}

// serveTunnel forwards an upgrade request to up within a tunnel of its own,
// which lasts until the WebSocket ends, or refuses it with 503.
func (p *Proxy) serveTunnel(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, upgrade string) {
	tun, rule := p.openTunnel()
	if tun == nil {
		p.refuseTunnel(w, r, info, rule)
		return
	}
	defer p.closeTunnel(tun)
	p.forward(w, r, info, up, upgrade, tun, p.timeout > 0)
}

// refuseTunnel answers an upgrade request that gets no tunnel with 503 and
// Retry-After, and records an upstream.tunnel_refused event.
func (p *Proxy) refuseTunnel(w http.ResponseWriter, r *http.Request, info *request.Info, rule string) {
	ctx := r.Context()
	p.log.LogAttrs(ctx, slog.LevelDebug, "websocket refused",
		slog.String("request_id", info.ID), slog.String("rule", rule))
	e := event.Event{
		Time: p.now(), Kind: "upstream.tunnel_refused", Outcome: event.Denied,
		ClientIP: addrString(info.ClientIP), Route: p.route, RequestID: info.ID, Rule: rule,
	}
	if rule == ruleMaxTunnels {
		e.Details = map[string]string{"limit": strconv.Itoa(p.maxTunnels)}
	}
	p.events.Record(ctx, e)
	w.Header()["Retry-After"] = []string{tunnelRetryAfter}
	problem.Write(w, r, info.ID, &problem.Error{Status: http.StatusServiceUnavailable,
		Detail: "No WebSocket connection can be opened now; try again later."})
}

// errConnWait ends a round trip that got no upstream connection in time.
var errConnWait = errors.New("no upstream connection free within the route timeout")

// connWatch follows how a request gets its upstream connection: it keeps
// the connection, which a protocol switch needs, and, when bounded, cancels
// the round trip if the request is still queued for a connection after the
// route's Timeout. The wait ends when a connection is handed over or a dial
// starts on the request's behalf; from then on the dial timeout and the
// transport's response header timeout apply.
type connWatch struct {
	cancel context.CancelCauseFunc // nil when not bounded
	timer  *time.Timer
	once   sync.Once // decides between the timer and the connection
	fired  bool      // the timer won; set within once

	mu sync.Mutex
	c  net.Conn
}

// watchConn returns r with a context that cw watches.
func (p *Proxy) watchConn(r *http.Request, bounded bool) (*http.Request, *connWatch) {
	cw := new(connWatch)
	ctx := r.Context()
	if bounded {
		ctx, cw.cancel = context.WithCancelCause(ctx)
		cw.timer = time.AfterFunc(p.timeout, func() {
			cw.once.Do(func() {
				cw.fired = true
				cw.cancel(errConnWait)
			})
		})
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		ConnectStart: func(string, string) { cw.settle() },
		GotConn:      cw.gotConn,
	})
	return r.WithContext(ctx), cw
}

func (cw *connWatch) gotConn(info httptrace.GotConnInfo) {
	cw.settle()
	cw.mu.Lock()
	cw.c = info.Conn
	cw.mu.Unlock()
}

// conn returns the upstream connection of the last round trip, or nil.
func (cw *connWatch) conn() net.Conn {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.c
}

// settle stops the timer, if it has not fired yet, and reports whether it
// fired: whether the round trip was cancelled for want of a connection.
// Either way, the round trip's context is not cancelled afterwards until
// release.
func (cw *connWatch) settle() bool {
	if cw.cancel == nil {
		return false
	}
	cw.timer.Stop()
	cw.once.Do(func() {})
	return cw.fired
}

// release frees the context; the response must be done with.
func (cw *connWatch) release() {
	if cw.cancel != nil {
		cw.settle()
		cw.cancel(context.Canceled)
	}
}
