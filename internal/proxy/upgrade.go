package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/request"
)

// serveUpgrade completes a protocol switch the upstream accepted: it takes
// over the client's connection, sends it the upstream's 101 answer (less
// hop-by-hop and banner headers) and copies bytes both ways until either
// side closes, the tunnel has been idle for the tunnel idle timeout, or tun
// is closed. Only the protocol the client asked for, which upgradeType
// allows (WebSocket), is accepted from the upstream. upConn is the upstream
// connection under resp's body.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, upgrade string, resp *http.Response, tun *tunnel, upConn net.Conn) {
	ctx := r.Context()
	got := resp.Header["Upgrade"]
	if upgrade == "" || tun == nil || len(got) != 1 || !strings.EqualFold(got[0], upgrade) {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade",
			errors.New("upstream switched protocols without being asked to, or to another protocol"))
		return
	}
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || upConn == nil {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade",
			errors.New("upstream connection cannot be written after the switch"))
		return
	}
	if !tun.attach(back) {
		// The Proxy was closed while the upstream answered.
		p.refuseTunnel(w, r, info, ruleClosed)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade", err)
		return
	}
	if !tun.attach(conn) {
		return
	}
	defer conn.Close()

	h := w.Header()
	copyResponseHeader(h, resp.Header)
	setRequestID(h, info, nil)
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = got
	// Hijacking cleared the connection's deadlines: no write may wait for
	// longer than the idle timeout.
	deadline := time.Now().Add(p.tunnelIdle)
	_ = conn.SetWriteDeadline(deadline)
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	// Bytes the client sent right after its handshake may already sit in
	// the server's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		_ = upConn.SetWriteDeadline(deadline)
		if _, err := back.Write(b); err != nil {
			return
		}
		_, _ = brw.Reader.Discard(n)
	}
	p.log.LogAttrs(ctx, slog.LevelDebug, "protocol switched",
		slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.String("protocol", upgrade))
	splice(end{conn, conn}, end{back, upConn}, p.tunnelIdle)
}

// end is one side of a tunnel: the stream its bytes are read from and
// written to, and the connection under it, whose deadlines bound each wait.
type end struct {
	rw   io.ReadWriteCloser
	conn net.Conn
}

// splice copies bytes between a and b in both directions until one
// direction ends, or until no data has moved either way for idle, then
// closes both and waits for the other direction.
func splice(a, b end, idle time.Duration) {
	s := &spliceState{idle: idle}
	s.last.Store(time.Now().UnixNano())
	var once sync.Once
	closeBoth := func() { a.rw.Close(); b.rw.Close() }
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pump(b, a)
		once.Do(closeBoth)
	}()
	s.pump(a, b)
	once.Do(closeBoth)
	<-done
}

// spliceState is what both directions of a splice share: when data last
// moved either way.
type spliceState struct {
	idle time.Duration
	last atomic.Int64 // unix nanoseconds
}

// pump copies src to dst through a pooled buffer. Every wait is bounded: a
// read times out once src has been quiet for idle, and lives on while the
// other direction has moved data within idle; a write that cannot finish
// within idle ends the copy.
func (s *spliceState) pump(dst, src end) {
	bp := getBuf(-1)
	defer putBuf(bp)
	buf := *bp
	_ = src.conn.SetReadDeadline(time.Now().Add(s.idle))
	for {
		n, err := src.rw.Read(buf)
		if n > 0 {
			now := time.Now()
			s.last.Store(now.UnixNano())
			_ = src.conn.SetReadDeadline(now.Add(s.idle))
			_ = dst.conn.SetWriteDeadline(now.Add(s.idle))
			if _, werr := dst.rw.Write(buf[:n]); werr != nil {
				return
			}
			s.last.Store(time.Now().UnixNano())
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return
		}
		// src was quiet for idle: the tunnel is idle unless the other
		// direction moved data since.
		d := time.Unix(0, s.last.Load()).Add(s.idle)
		if !time.Now().Before(d) {
			return
		}
		_ = src.conn.SetReadDeadline(d)
	}
}
