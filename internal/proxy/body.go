package proxy

import (
	"errors"
	"github.com/moatgw/moat/internal/hygiene"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// errBodyTooLarge is returned by a requestBody read past its limit.
var errBodyTooLarge = errors.New("request body larger than the route allows")

// Why a requestBody stopped.
const (
	bodyOK       = iota
	bodyTooLarge // the client sent more than the limit
	bodyClientErr
)

// requestBody wraps a client's request body on its way to the upstream. It
// fails at the limit and remembers why it failed, so that the proxy can tell
// a client's fault (413, or a broken upload) from an upstream's. It is read
// by the transport's goroutine and its state by the handler's.
type requestBody struct {
	rc      io.ReadCloser
	left    int64 // bytes still allowed; < 0 means unlimited
	state   atomic.Int32
	refusal atomic.Pointer[hygiene.Refusal] // why the body's own guard refused it
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		// Probe for one more byte: a body exactly at the limit is fine.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.state.Store(bodyTooLarge)
			return 0, errBodyTooLarge
		}
		if err != nil && err != io.EOF {
			b.state.Store(bodyClientErr)
		}
		return 0, err
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if err != nil && err != io.EOF {
		var ref *hygiene.Refusal
		if errors.As(err, &ref) {
			b.refusal.Store(ref)
		}
		b.state.Store(bodyClientErr)
	}
	return n, err
}

func (b *requestBody) Close() error { return b.rc.Close() }

// Bodies and WebSocket frames are copied through pooled buffers: small ones
// for bodies known to be small, the usual case for an API, so that a
// garbage collection emptying the pools costs little to refill.
const (
	smallBufSize = 4 << 10
	largeBufSize = 32 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
)

// getBuf returns a pooled buffer for a body of size bytes (-1 if unknown).
func getBuf(size int64) *[]byte {
	if size >= 0 && size < smallBufSize {
		return smallBufs.Get().(*[]byte)
	}
	return largeBufs.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if len(*b) == smallBufSize {
		smallBufs.Put(b)
	} else {
		largeBufs.Put(b)
	}
}

// Why a response copy stopped early.
var (
	errResponseTooLarge = errors.New("upstream response larger than the route allows")
	errClientWrite      = errors.New("writing the response to the client")
)

// copyResponse copies the upstream body src, of size bytes (-1 if unknown),
// to w through a pooled buffer, flushing after every write when flush is
// set, and stops with errResponseTooLarge once more than limit bytes (when
// limit > 0) have come. A read error from src is returned as is; a write
// error to the client as errClientWrite.
func copyResponse(w http.ResponseWriter, src io.Reader, size int64, flush bool, limit int64) (int64, error) {
	var flusher func() error
	if flush {
		if f, ok := w.(http.Flusher); ok {
			flusher = func() error { f.Flush(); return nil }
		} else {
			flusher = http.NewResponseController(w).Flush
		}
	}
	bp := getBuf(size)
	defer putBuf(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if limit > 0 && written+int64(n) > limit {
				n = int(limit - written)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					written += int64(n)
				}
				return written, errResponseTooLarge
			}
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, errClientWrite
			}
			if flusher != nil {
				if err := flusher(); err != nil {
					return written, errClientWrite
				}
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
