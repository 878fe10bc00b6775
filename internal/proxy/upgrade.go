package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/moatgw/moat/internal/request"
)

// serveUpgrade completes a protocol switch the upstream accepted: it takes
// over the client's connection, sends it the upstream's 101 answer (less
// hop-by-hop and banner headers) and copies bytes both ways until either
// side closes. Only the protocol the client asked for, which upgradeType
// allows (WebSocket), is accepted from the upstream.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, info *request.Info, up *upstream, upgrade string, resp *http.Response) {
	ctx := r.Context()
	got := resp.Header["Upgrade"]
	if upgrade == "" || len(got) != 1 || !strings.EqualFold(got[0], upgrade) {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade",
			errors.New("upstream switched protocols without being asked to, or to another protocol"))
		return
	}
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade",
			errors.New("upstream connection cannot be written after the switch"))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.upstreamError(w, r, info, up, http.StatusBadGateway, "bad_upgrade", err)
		return
	}
	defer conn.Close()

	h := w.Header()
	copyResponseHeader(h, resp.Header)
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = got
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
		if _, err := back.Write(b); err != nil {
			return
		}
		_, _ = brw.Reader.Discard(n)
	}
	p.log.LogAttrs(ctx, slog.LevelDebug, "protocol switched",
		slog.String("upstream", up.name), slog.String("request_id", info.ID), slog.String("protocol", upgrade))
	splice(conn, back)
}

// splice copies bytes between a and b in both directions until one
// direction ends, then closes both and waits for the other.
func splice(a, b io.ReadWriteCloser) {
	var once sync.Once
	closeBoth := func() { a.Close(); b.Close() }
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyConn(b, a)
		once.Do(closeBoth)
	}()
	copyConn(a, b)
	once.Do(closeBoth)
	<-done
}

// copyConn copies src to dst through a pooled buffer.
func copyConn(dst io.Writer, src io.Reader) {
	bp := getBuf(-1)
	defer putBuf(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
