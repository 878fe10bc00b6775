package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/request"
)

// recorder keeps the events it is given.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Record(_ context.Context, e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []string
	for _, e := range r.events {
		k = append(k, e.Kind)
	}
	return k
}

func (r *recorder) find(kind string) (event.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return event.Event{}, false
}

// fakeClock is a clock moved by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func testLogger(t testing.TB) *slog.Logger   { return slog.New(slog.NewTextHandler(t.Output(), nil)) }
func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	must(t, err)
	return u
}
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
func urls(t testing.TB, s ...string) []*url.URL {
	var out []*url.URL
	for _, v := range s {
		out = append(out, mustURL(t, v))
	}
	return out
}

// newProxy builds a Proxy from o with a test logger and an event recorder,
// closed when the test ends.
func newProxy(t testing.TB, o Options) (*Proxy, *recorder) {
	t.Helper()
	rec := &recorder{}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Events == nil {
		o.Events = rec
	}
	if o.Route == "" {
		o.Route = "test"
	}
	p, err := New(o)
	must(t, err)
	t.Cleanup(p.Close)
	return p, rec
}

// infoFunc decides the request.Info of a test request.
type infoFunc func(r *http.Request) *request.Info

var reqSeq atomic.Int64

// untrusted describes the loopback client as a direct, untrusted client.
func untrusted(r *http.Request) *request.Info {
	peer := netip.MustParseAddrPort(r.RemoteAddr).Addr()
	return &request.Info{
		ID: "req-" + strconv.FormatInt(reqSeq.Add(1), 10), Start: time.Now(),
		ClientIP: peer, Peer: peer, Scheme: "https",
	}
}

// trustedFrom describes the loopback client as a trusted proxy forwarding
// for client.
func trustedFrom(client string) infoFunc {
	return func(r *http.Request) *request.Info {
		info := untrusted(r)
		info.Trusted = true
		info.ClientIP = netip.MustParseAddr(client)
		return info
	}
}

// front serves p behind a tiny middleware that puts a request.Info in the
// context, as Moat's first stage does.
func front(t testing.TB, p http.Handler, info infoFunc) *httptest.Server {
	t.Helper()
	if info == nil {
		info = untrusted
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(request.With(r.Context(), info(r))))
	}))
	t.Cleanup(s.Close)
	return s
}

// upstreamServer starts a loopback upstream.
func upstreamServer(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// echoHeaders is an upstream that answers with the request it saw as JSON.
type seen struct {
	Method string
	Host   string
	URI    string
	Header http.Header
	Body   string
	Proto  int
}

func echoUpstream(t testing.TB) *httptest.Server {
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.Host, r.RequestURI, r.Header, string(b), r.ProtoMajor})
	})
}

func decodeSeen(t testing.TB, resp *http.Response) seen {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var s seen
	must(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

func do(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	return resp
}

func get(t testing.TB, u string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	must(t, err)
	return do(t, req)
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return string(b)
}

// deadAddr returns a loopback URL on which nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
