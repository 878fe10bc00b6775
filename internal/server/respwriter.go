package server

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/moatgw/moat/internal/headers"
)

// responseWriter records the status and size of a response for the access
// log and metrics, and applies the route's security headers at the moment
// the header is written, so that nothing written before (an upstream's
// headers) can weaken them. It is pooled; one is used by one request.
type responseWriter struct {
	http.ResponseWriter
	hdrs    *headers.Set
	status  int
	written int64
}

var rwPool = sync.Pool{New: func() any { return new(responseWriter) }}

func newResponseWriter(w http.ResponseWriter, hdrs *headers.Set) *responseWriter {
	rw := rwPool.Get().(*responseWriter)
	rw.ResponseWriter, rw.hdrs, rw.status, rw.written = w, hdrs, 0, 0
	return rw
}

func (rw *responseWriter) release() {
	rw.ResponseWriter, rw.hdrs = nil, nil
	rwPool.Put(rw)
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.status = code
		if rw.hdrs != nil {
			rw.hdrs.Apply(rw.ResponseWriter.Header())
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.written += int64(n)
	return n, err
}

// Flush passes a flush through, for streaming responses.
func (rw *responseWriter) Flush() {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes a hijack through, for protocol upgrades.
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.status == 0 {
		rw.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(rw.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
