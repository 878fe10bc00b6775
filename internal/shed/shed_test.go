package shed

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

// patience bounds how long a test waits for something that should happen
// soon, so that a bug fails the test instead of hanging it. It is never a
// measure of speed.
const patience = 10 * time.Second

// long is a QueueWait no test reaches.
const long = time.Hour

type result struct {
	release func()
	ok      bool
}

// start calls Acquire in its own goroutine.
func start(l *Limiter, ctx context.Context) <-chan result {
	ch := make(chan result, 1)
	go func() {
		rel, ok := l.Acquire(ctx)
		ch <- result{rel, ok}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(patience):
		t.Fatalf("%s: Acquire did not return", what)
		return result{}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never true: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queue starts n waiters on l, one after the other, so they queue in order.
func queue(t *testing.T, l *Limiter, ctx context.Context, n int) []<-chan result {
	t.Helper()
	before := l.Queued()
	var chs []<-chan result
	for i := range n {
		chs = append(chs, start(l, ctx))
		eventually(t, fmt.Sprintf("waiter %d queued", i), func() bool { return l.Queued() == before+i+1 })
	}
	return chs
}

// hold takes n slots and returns their release funcs.
func hold(t *testing.T, l *Limiter, n int) []func() {
	t.Helper()
	var rels []func()
	for i := range n {
		rel, ok := l.Acquire(context.Background())
		if !ok {
			t.Fatalf("holding slot %d: refused", i)
		}
		rels = append(rels, rel)
	}
	return rels
}

func checkCounts(t *testing.T, l *Limiter, inFlight, queued int, refused uint64) {
	t.Helper()
	if got := l.InFlight(); got != inFlight {
		t.Errorf("InFlight() = %d, want %d", got, inFlight)
	}
	if got := l.Queued(); got != queued {
		t.Errorf("Queued() = %d, want %d", got, queued)
	}
	if got := l.Refused(); got != refused {
		t.Errorf("Refused() = %d, want %d", got, refused)
	}
}

func TestNilLimiterAdmits(t *testing.T) {
	var l *Limiter
	for i := range 3 {
		rel, ok := l.Acquire(context.Background())
		if !ok {
			t.Fatalf("Acquire %d on nil Limiter refused", i)
		}
		rel()
		rel()
	}
	checkCounts(t, l, 0, 0, 0)
	rel, which, ok := Both(context.Background(), nil, nil)
	if !ok || which != "" {
		t.Fatalf("Both(nil, nil) = %q, %v; want admitted", which, ok)
	}
	rel()
}

func TestNoLimit(t *testing.T) {
	tests := []struct {
		name string
		max  int
	}{
		{"zero", 0},
		{"negative", -5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxInFlight: tt.max})
			rels := hold(t, l, 5000)
			checkCounts(t, l, 5000, 0, 0)
			for _, rel := range rels {
				rel()
			}
			checkCounts(t, l, 0, 0, 0)
		})
	}
}

func TestCapHoldsUnderConcurrency(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		workers  int
		requests int // per worker
	}{
		{"one slot, no queue", Options{MaxInFlight: 1}, 16, 200},
		{"three slots, no queue", Options{MaxInFlight: 3}, 32, 200},
		{"three slots, short queue", Options{MaxInFlight: 3, MaxQueue: 8, QueueWait: 5 * time.Millisecond}, 32, 200},
		{"queue longer than workers", Options{MaxInFlight: 2, MaxQueue: 64, QueueWait: long}, 16, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.opts)
			var inside, peak, over atomic.Int64
			var admitted, refused atomic.Uint64
			var wg sync.WaitGroup
			for range tt.workers {
				wg.Go(func() {
					for range tt.requests {
						rel, ok := l.Acquire(context.Background())
						if !ok {
							refused.Add(1)
							continue
						}
						admitted.Add(1)
						n := inside.Add(1)
						if n > int64(tt.opts.MaxInFlight) {
							over.Store(n)
						}
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						runtime.Gosched()
						inside.Add(-1)
						rel()
					}
				})
			}
			wg.Wait()
			if n := over.Load(); n != 0 {
				t.Errorf("%d requests inside at once, cap %d", n, tt.opts.MaxInFlight)
			}
			if peak.Load() == 0 {
				t.Error("no request was ever admitted")
			}
			if total := admitted.Load() + refused.Load(); total != uint64(tt.workers*tt.requests) {
				t.Errorf("%d answers for %d requests", total, tt.workers*tt.requests)
			}
			checkCounts(t, l, 0, 0, refused.Load())
		})
	}
}

func TestCapsHoldThroughBoth(t *testing.T) {
	global := New(Options{MaxInFlight: 4, MaxQueue: 4, QueueWait: 2 * time.Millisecond})
	routes := []*Limiter{
		New(Options{MaxInFlight: 3, MaxQueue: 2, QueueWait: 2 * time.Millisecond}),
		New(Options{MaxInFlight: 2}),
	}
	var inGlobal atomic.Int64
	inRoute := make([]atomic.Int64, len(routes))
	var over atomic.Value
	var byGlobal atomic.Uint64
	byRoute := make([]atomic.Uint64, len(routes))
	var wg sync.WaitGroup
	for i, route := range routes {
		for range 12 {
			wg.Go(func() {
				for range 200 {
					rel, which, ok := Both(context.Background(), global, route)
					if !ok {
						switch which {
						case "global":
							byGlobal.Add(1)
						case "route":
							byRoute[i].Add(1)
						default:
							over.Store(fmt.Sprintf("refused with which = %q", which))
						}
						continue
					}
					if n := inGlobal.Add(1); n > 4 {
						over.Store(fmt.Sprintf("%d requests inside the global cap of 4", n))
					}
					if n := inRoute[i].Add(1); n > int64(route.max) {
						over.Store(fmt.Sprintf("%d requests inside route %d's cap of %d", n, i, route.max))
					}
					runtime.Gosched()
					inRoute[i].Add(-1)
					inGlobal.Add(-1)
					rel()
				}
			})
		}
	}
	wg.Wait()
	if msg := over.Load(); msg != nil {
		t.Error(msg)
	}
	checkCounts(t, global, 0, 0, byGlobal.Load())
	for i, route := range routes {
		t.Run(fmt.Sprintf("route %d", i), func(t *testing.T) {
			checkCounts(t, route, 0, 0, byRoute[i].Load())
		})
	}
}

// shedding is how the gateway uses a Limiter pair: refuse with 503 and
// Retry-After, or serve holding both slots.
func shedding(global, route *Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, _, ok := Both(r.Context(), global, route)
		if !ok {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

func TestHTTPRoundTrip(t *testing.T) {
	global := New(Options{MaxInFlight: 3, MaxQueue: 2, QueueWait: 5 * time.Millisecond})
	route := New(Options{MaxInFlight: 2, MaxQueue: 1, QueueWait: 5 * time.Millisecond})
	var inside, over atomic.Int64
	srv := httptest.NewServer(shedding(global, route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := inside.Add(1); n > 2 {
			over.Store(n)
		}
		time.Sleep(time.Millisecond)
		inside.Add(-1)
	})))
	defer srv.Close()

	var ok200, ok503 atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 20 {
		wg.Go(func() {
			for range 10 {
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusOK:
					ok200.Add(1)
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					ok503.Add(1)
				default:
					select {
					case errs <- fmt.Errorf("got %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After")):
					default:
					}
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if n := over.Load(); n != 0 {
		t.Errorf("%d requests reached the backend at once, route cap 2", n)
	}
	if ok200.Load() == 0 {
		t.Error("no request was served")
	}
	if got, want := ok503.Load(), global.Refused()+route.Refused(); got != want {
		t.Errorf("%d responses 503, limiters counted %d refusals", got, want)
	}
	checkCounts(t, global, 0, 0, global.Refused())
	checkCounts(t, route, 0, 0, route.Refused())
}

func TestWaitersGetFreedSlotsInOrder(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		waiters int
	}{
		{"one slot, one waiter", 1, 1},
		{"one slot, three waiters", 1, 3},
		{"two slots, five waiters", 2, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxInFlight: tt.max, MaxQueue: tt.waiters, QueueWait: long})
			held := hold(t, l, tt.max)
			waiting := queue(t, l, context.Background(), tt.waiters)
			for i, ch := range waiting {
				held[0]()
				held = held[1:]
				r := await(t, ch, fmt.Sprintf("waiter %d", i))
				if !r.ok {
					t.Fatalf("waiter %d refused after a slot freed", i)
				}
				for j, later := range waiting[i+1:] {
					select {
					case <-later:
						t.Fatalf("waiter %d admitted before waiter %d", i+1+j, i)
					default:
					}
				}
				held = append(held, r.release)
				checkCounts(t, l, tt.max, tt.waiters-i-1, 0)
			}
			for _, rel := range held {
				rel()
			}
			checkCounts(t, l, 0, 0, 0)
		})
	}
}

func TestRefusedAtOnce(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		opts    Options
		waiting int // queued before the request
		ctx     context.Context
	}{
		{"no queue", Options{MaxInFlight: 1}, 0, context.Background()},
		{"queue full", Options{MaxInFlight: 2, MaxQueue: 2, QueueWait: long}, 2, context.Background()},
		{"context already ended", Options{MaxInFlight: 1, MaxQueue: 1, QueueWait: long}, 0, ended},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.opts)
			held := hold(t, l, tt.opts.MaxInFlight)
			waiting := queue(t, l, context.Background(), tt.waiting)
			r := await(t, start(l, tt.ctx), "request beyond the queue")
			if r.ok {
				t.Fatal("admitted beyond cap and queue")
			}
			r.release() // a no-op
			checkCounts(t, l, tt.opts.MaxInFlight, tt.waiting, 1)
			for _, rel := range held {
				rel()
			}
			for i, ch := range waiting {
				r := await(t, ch, fmt.Sprintf("waiter %d", i))
				if !r.ok {
					t.Fatalf("waiter %d refused", i)
				}
				r.release()
			}
			checkCounts(t, l, 0, 0, 1)
		})
	}
}

func TestWaitersTimeOut(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		waiters int
	}{
		{"one waiter", 1, 1},
		{"several waiters", 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxInFlight: tt.max, MaxQueue: tt.waiters, QueueWait: 10 * time.Millisecond})
			held := hold(t, l, tt.max)
			var waiting []<-chan result
			for range tt.waiters {
				waiting = append(waiting, start(l, context.Background()))
			}
			for i, ch := range waiting {
				if r := await(t, ch, fmt.Sprintf("waiter %d", i)); r.ok {
					t.Fatalf("waiter %d admitted while every slot was held", i)
				}
			}
			checkCounts(t, l, tt.max, 0, uint64(tt.waiters))
			for _, rel := range held {
				rel()
			}
			hold(t, l, tt.max)
			checkCounts(t, l, tt.max, 0, uint64(tt.waiters))
		})
	}
}

func TestWaiterPastItsWaitIsSkipped(t *testing.T) {
	clock := testclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	l := New(Options{MaxInFlight: 1, MaxQueue: 2, QueueWait: long, Now: clock.Now})
	held := hold(t, l, 1)
	first := queue(t, l, context.Background(), 1)[0]
	clock.Advance(2 * long)
	second := queue(t, l, context.Background(), 1)[0]
	held[0]()
	if r := await(t, first, "first waiter"); r.ok {
		t.Error("waiter past its QueueWait was admitted")
	}
	r := await(t, second, "second waiter")
	if !r.ok {
		t.Fatal("waiter within its QueueWait was refused")
	}
	checkCounts(t, l, 1, 0, 1)
	r.release()
	checkCounts(t, l, 0, 0, 1)
}

func TestContextCancel(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		waiters int // queued behind the one cancelled
	}{
		{"alone in the queue", 1, 0},
		{"ahead of others", 1, 2},
		{"two slots", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxInFlight: tt.max, MaxQueue: tt.waiters + 1, QueueWait: long})
			held := hold(t, l, tt.max)
			ctx, cancel := context.WithCancel(context.Background())
			cancelled := queue(t, l, ctx, 1)[0]
			others := queue(t, l, context.Background(), tt.waiters)
			cancel()
			if r := await(t, cancelled, "cancelled waiter"); r.ok {
				t.Fatal("admitted after its context ended")
			}
			checkCounts(t, l, tt.max, tt.waiters, 1)

			// Its place in the queue is free again.
			others = append(others, queue(t, l, context.Background(), 1)...)
			for _, rel := range held {
				rel()
			}
			for i, ch := range others {
				r := await(t, ch, fmt.Sprintf("waiter %d", i))
				if !r.ok {
					t.Fatalf("waiter %d refused", i)
				}
				r.release()
			}
			checkCounts(t, l, 0, 0, 1)
		})
	}
}

// A waiter whose context ends just as a slot is handed to it does not keep
// the slot: it is passed on, here to nobody, so it falls idle.
func TestCancelledWaiterPassesGrantedSlotOn(t *testing.T) {
	l := New(Options{MaxInFlight: 1, MaxQueue: 1, QueueWait: long})
	s, ok := l.acquire(context.Background())
	if !ok {
		t.Fatal("refused with the limiter idle")
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiter := queue(t, l, ctx, 1)[0]

	// Both happen before the waiter can look: it is granted the slot and
	// its context has ended.
	l.mu.Lock()
	cancel()
	l.handOff(s)
	l.mu.Unlock()

	if r := await(t, waiter, "waiter"); r.ok {
		t.Fatal("admitted after its context ended")
	}
	checkCounts(t, l, 0, 0, 1)
	rel, ok := l.Acquire(context.Background())
	if !ok {
		t.Fatal("refused after the granted slot was given back")
	}
	rel()
}

func TestEndedContextTakesFreeSlot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := New(Options{MaxInFlight: 1})
	rel, ok := l.Acquire(ctx)
	if !ok {
		t.Fatal("free slot refused to a request whose context ended")
	}
	rel()
	checkCounts(t, l, 0, 0, 0)
}

func TestReleaseTwiceIsIgnored(t *testing.T) {
	tests := []struct {
		name    string
		acquire func(global, route *Limiter) (func(), bool)
	}{
		{"Acquire", func(global, _ *Limiter) (func(), bool) {
			return global.Acquire(context.Background())
		}},
		{"Both", func(global, route *Limiter) (func(), bool) {
			rel, _, ok := Both(context.Background(), global, route)
			return rel, ok
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			global, route := New(Options{MaxInFlight: 2}), New(Options{MaxInFlight: 2})
			first, ok := tt.acquire(global, route)
			if !ok {
				t.Fatal("first request refused")
			}
			second, ok := tt.acquire(global, route)
			if !ok {
				t.Fatal("second request refused")
			}
			first()
			first()
			if got := global.InFlight(); got != 1 {
				t.Fatalf("InFlight() = %d after one request released twice, want 1", got)
			}
			third, ok := tt.acquire(global, route)
			if !ok {
				t.Fatal("third request refused with a slot free")
			}
			if _, ok := tt.acquire(global, route); ok {
				t.Fatal("admitted a third request at once with a cap of 2")
			}
			second()
			third()
			third()
			checkCounts(t, global, 0, 0, global.Refused())
			checkCounts(t, route, 0, 0, route.Refused())
		})
	}
}

func TestBoth(t *testing.T) {
	const none = -1 // a nil Limiter
	tests := []struct {
		name                  string
		global, route         int  // MaxInFlight, or none
		globalFull, routeFull bool // every slot held before the request
		which                 string
		ok                    bool
	}{
		{"both admit", 1, 1, false, false, "", true},
		{"global refuses", 1, 1, true, false, "global", false},
		{"route refuses", 1, 1, false, true, "route", false},
		{"both full", 1, 1, true, true, "global", false},
		{"nil global", none, 1, false, false, "", true},
		{"nil global, route refuses", none, 1, false, true, "route", false},
		{"nil route", 1, none, false, false, "", true},
		{"nil route, global refuses", 1, none, true, false, "global", false},
		{"both nil", none, none, false, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var global, route *Limiter
			if tt.global != none {
				global = New(Options{MaxInFlight: tt.global})
			}
			if tt.route != none {
				route = New(Options{MaxInFlight: tt.route})
			}
			var held []func()
			if tt.globalFull {
				held = append(held, hold(t, global, tt.global)...)
			}
			if tt.routeFull {
				held = append(held, hold(t, route, tt.route)...)
			}
			gBefore, rBefore := global.InFlight(), route.InFlight()

			release, which, ok := Both(context.Background(), global, route)
			if ok != tt.ok || which != tt.which {
				t.Fatalf("Both = %q, %v; want %q, %v", which, ok, tt.which, tt.ok)
			}
			want := func(l *Limiter, name string, inFlight int, refused uint64) {
				t.Helper()
				if l == nil {
					return
				}
				if got := l.InFlight(); got != inFlight {
					t.Errorf("%s InFlight() = %d, want %d", name, got, inFlight)
				}
				if got := l.Refused(); got != refused {
					t.Errorf("%s Refused() = %d, want %d", name, got, refused)
				}
			}
			switch tt.which {
			case "":
				want(global, "global", gBefore+1, 0)
				want(route, "route", rBefore+1, 0)
			case "global": // the route was not asked
				want(global, "global", gBefore, 1)
				want(route, "route", rBefore, 0)
			case "route": // the global slot was given back
				want(global, "global", gBefore, 0)
				want(route, "route", rBefore, 1)
			}
			release()
			want(global, "global", gBefore, global.Refused())
			want(route, "route", rBefore, route.Refused())
			for _, rel := range held {
				rel()
			}
		})
	}
}

// A Limiter reads its clock when it hands a freed slot to a waiter, so with a
// waiter on each limiter the clock reads show the order of release.
func TestBothReleasesRouteFirst(t *testing.T) {
	var mu sync.Mutex
	var reads []string
	clock := func(name string) func() time.Time {
		return func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			reads = append(reads, name)
			return time.Now()
		}
	}
	global := New(Options{MaxInFlight: 1, MaxQueue: 1, QueueWait: long, Now: clock("global")})
	route := New(Options{MaxInFlight: 1, MaxQueue: 1, QueueWait: long, Now: clock("route")})
	release, _, ok := Both(context.Background(), global, route)
	if !ok {
		t.Fatal("refused with both limiters idle")
	}
	globalWaiter := queue(t, global, context.Background(), 1)[0]
	routeWaiter := queue(t, route, context.Background(), 1)[0]
	mu.Lock()
	reads = nil
	mu.Unlock()

	release()
	mu.Lock()
	got := slices.Clone(reads)
	mu.Unlock()
	if want := []string{"route", "global"}; !slices.Equal(got, want) {
		t.Errorf("slots freed in order %q, want %q", got, want)
	}
	for _, ch := range []<-chan result{globalWaiter, routeWaiter} {
		r := await(t, ch, "waiter")
		if !r.ok {
			t.Fatal("waiter refused after Both's release")
		}
		r.release()
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("limited", func(b *testing.B) {
		l := New(Options{MaxInFlight: 100, MaxQueue: 10})
		b.ReportAllocs()
		for b.Loop() {
			rel, _ := l.Acquire(ctx)
			rel()
		}
	})
	b.Run("unlimited", func(b *testing.B) {
		l := New(Options{})
		b.ReportAllocs()
		for b.Loop() {
			rel, _ := l.Acquire(ctx)
			rel()
		}
	})
	b.Run("both", func(b *testing.B) {
		global, route := New(Options{MaxInFlight: 1000}), New(Options{MaxInFlight: 100})
		b.ReportAllocs()
		for b.Loop() {
			rel, _, _ := Both(ctx, global, route)
			rel()
		}
	})
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	ctx := context.Background()
	b.Run("limited", func(b *testing.B) {
		l := New(Options{MaxInFlight: 1 << 16})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rel, ok := l.Acquire(ctx)
				if !ok {
					b.Error("refused below the cap")
					return
				}
				rel()
			}
		})
	})
	b.Run("both", func(b *testing.B) {
		global, route := New(Options{MaxInFlight: 1 << 16}), New(Options{MaxInFlight: 1 << 16})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rel, _, ok := Both(ctx, global, route)
				if !ok {
					b.Error("refused below the cap")
					return
				}
				rel()
			}
		})
	})
	// Many more goroutines than slots: most requests wait in the queue and
	// get their slot handed over.
	b.Run("queued", func(b *testing.B) {
		l := New(Options{MaxInFlight: 2, MaxQueue: 1 << 10, QueueWait: long})
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rel, ok := l.Acquire(ctx)
				if !ok {
					b.Error("refused with room in the queue")
					return
				}
				rel()
			}
		})
	})
}
