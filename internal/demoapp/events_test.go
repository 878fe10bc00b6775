package demoapp

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// flushRecorder records what was written between flushes, and when.
type flushRecorder struct {
	header  http.Header
	status  int
	start   time.Time
	pending strings.Builder
	flushes []flush
}

type flush struct {
	at   time.Duration
	data string
}

func (f *flushRecorder) Header() http.Header { return f.header }
func (f *flushRecorder) WriteHeader(code int) {
	if f.status == 0 {
		f.status = code
	}
}
func (f *flushRecorder) Write(b []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	return f.pending.Write(b)
}
func (f *flushRecorder) Flush() {
	f.flushes = append(f.flushes, flush{at: time.Since(f.start), data: f.pending.String()})
	f.pending.Reset()
}

func TestEventsTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestApp(t)
		w := &flushRecorder{header: http.Header{}, start: time.Now()}
		a.ServeHTTP(w, httptest.NewRequest("GET", "/events", nil))

		if w.status != 200 || w.header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d, Content-Type %q", w.status, w.header.Get("Content-Type"))
		}
		if got := w.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q", got)
		}
		if len(w.flushes) != 11 {
			t.Fatalf("%d flushes, want 11 (headers, then one per tick): %+v", len(w.flushes), w.flushes)
		}
		if f := w.flushes[0]; f.at != 0 || !strings.HasPrefix(f.data, ":") {
			t.Errorf("first flush at %v with %q, want a comment at once", f.at, f.data)
		}
		for n := 1; n <= 10; n++ {
			f := w.flushes[n]
			if want := time.Duration(n) * time.Second; f.at != want {
				t.Errorf("tick %d flushed at %v, want %v", n, f.at, want)
			}
			want := fmt.Sprintf("event: tick\nid: %d\ndata: {\"count\":%d,\"of\":10}\n\n", n, n)
			if f.data != want {
				t.Errorf("tick %d = %q, want %q", n, f.data, want)
			}
		}
		if got := w.pending.String(); got != "event: done\ndata: {}\n\n" {
			t.Errorf("stream ends with %q, want a done event", got)
		}
		if d := time.Since(w.start); d != 10*time.Second {
			t.Errorf("stream lasted %v, want 10s", d)
		}
	})
}

func TestEventsStopWhenClientLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestApp(t)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(2500*time.Millisecond, cancel)
		w := &flushRecorder{header: http.Header{}, start: time.Now()}
		a.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", "/events", nil))
		if d := time.Since(w.start); d != 2500*time.Millisecond {
			t.Errorf("handler returned after %v, want as soon as the client left at 2.5s", d)
		}
		if len(w.flushes) != 3 {
			t.Errorf("%d flushes, want the comment and 2 ticks", len(w.flushes))
		}
		if strings.Contains(w.pending.String(), "done") {
			t.Errorf("done event sent to a client that left")
		}
	})
}

// TestEventsStreamOverHTTP reads the first event from a real server while
// the stream is still going: the backend does not hold events back.
func TestEventsStreamOverHTTP(t *testing.T) {
	a := newTestApp(t)
	a.tick = 20 * time.Millisecond
	a.ticks = 500 // 10s if the whole stream had to end before the first event arrived
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.ServeHTTP(w, r)
		ended <- r.Context().Err()
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("X-Accel-Buffering = %q, want no", resp.Header.Get("X-Accel-Buffering"))
	}
	sc := bufio.NewScanner(resp.Body)
	found := false
	for !found && sc.Scan() {
		found = sc.Text() == `data: {"count":1,"of":500}`
	}
	if !found {
		t.Fatalf("the first tick never arrived (%v)", sc.Err())
	}
	cancel() // leave after the first tick

	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the handler ran to the end: the first event only arrived with the last")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler kept streaming after the client left")
	}
}
