package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// logRecorder is a slog.Handler that writes to the test's output and counts
// messages, so that a test can wait for one. Records that arrive after the
// test ended (from ACME work still winding down) are dropped.
type logRecorder struct {
	inner slog.Handler
	mu    *sync.Mutex
	seen  map[string]int
	ended *bool
}

func testLogger(t *testing.T) (*slog.Logger, *logRecorder) {
	t.Helper()
	r := &logRecorder{
		inner: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}),
		mu:    new(sync.Mutex),
		seen:  make(map[string]int),
		ended: new(bool),
	}
	t.Cleanup(func() {
		r.mu.Lock()
		*r.ended = true
		r.mu.Unlock()
	})
	return slog.New(r), r
}

func (r *logRecorder) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *r.ended {
		return nil
	}
	r.seen[rec.Message]++
	return r.inner.Handle(ctx, rec)
}

func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.inner = r.inner.WithAttrs(attrs)
	return &c
}

func (r *logRecorder) WithGroup(name string) slog.Handler {
	c := *r
	c.inner = r.inner.WithGroup(name)
	return &c
}

// count returns how often msg was logged.
func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[msg]
}

// waitCount waits until msg was logged more than n times.
func (r *logRecorder) waitCount(t *testing.T, msg string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return r.count(msg) > n },
		"log message %q not seen more than %d times", msg, n)
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveTLS serves HTTP over TLS with cfg on a loopback port until the test
// ends and returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok "+r.Proto)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          newDiscardLog(),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// handshake dials addr with cfg and returns the connection state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// newDiscardLog keeps expected handshake failures out of the test output.
func newDiscardLog() *log.Logger { return log.New(io.Discard, "", 0) }
