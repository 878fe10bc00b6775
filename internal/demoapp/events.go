package demoapp

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// events streams server-sent events: a comment at once, then one "tick"
// event per a.tick carrying a counter, a.ticks of them, then a "done"
// event, and the response ends. Each event is flushed as soon as it is
// written, so a client sees them arrive one by one only if every proxy on
// the way passes the stream through unbuffered. The stream stops early when
// the client goes away.
//
// See https://html.spec.whatwg.org/multipage/server-sent-events.html.
func (a *App) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The stream outlives a short server WriteTimeout; give it the time it
	// needs, with a margin for a slow client.
	deadline := time.Now().Add(time.Duration(a.ticks)*a.tick + 30*time.Second)
	if err := rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		a.logger.Debug("extending the write deadline of an event stream", "err", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": %d ticks, one every %s\n\n", a.ticks, a.tick)
	if err := rc.Flush(); err != nil {
		a.logger.Debug("event stream cannot be flushed; events will arrive together", "err", err)
	}

	t := time.NewTicker(a.tick)
	defer t.Stop()
	for n := 1; n <= a.ticks; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		fmt.Fprintf(w, "event: tick\nid: %d\ndata: {\"count\":%d,\"of\":%d}\n\n", n, n, a.ticks)
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return // the client is gone
		}
	}
	fmt.Fprint(w, "event: done\ndata: {}\n\n")
}
