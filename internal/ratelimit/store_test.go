package ratelimit

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

// ten10 allows 10 a second, 5 at once: one every 100ms, full after 500ms.
var ten10 = Limit{Name: "t", Rate: 10, Period: time.Second, Burst: 5}

// other is a second limit, to show limits on one key are independent.
var other = Limit{Name: "o", Rate: 1, Period: time.Second, Burst: 2}

const ms = time.Millisecond

// step is one request in a gcraCases sequence and what it must get.
type step struct {
	at        time.Duration // time since start
	key       string        // default "k"
	limit     Limit         // default ten10
	n         int
	allowed   bool
	remaining int
	retry     time.Duration
	reset     time.Duration
}

var gcraCases = []struct {
	name  string
	steps []step
}{
	{"burst then refusal", []step{
		{n: 1, allowed: true, remaining: 4, reset: 100 * ms},
		{n: 1, allowed: true, remaining: 3, reset: 200 * ms},
		{n: 1, allowed: true, remaining: 2, reset: 300 * ms},
		{n: 1, allowed: true, remaining: 1, reset: 400 * ms},
		{n: 1, allowed: true, remaining: 0, reset: 500 * ms},
		{n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
		{n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
	}},
	{"sustained rate after the burst", []step{
		{n: 5, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 99 * ms, n: 1, remaining: 0, retry: 1 * ms, reset: 401 * ms},
		{at: 100 * ms, n: 1, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 150 * ms, n: 1, remaining: 0, retry: 50 * ms, reset: 450 * ms},
		{at: 200 * ms, n: 1, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 300 * ms, n: 1, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 300 * ms, n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
	}},
	{"refill", []step{
		{n: 5, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 250 * ms, n: 1, allowed: true, remaining: 1, reset: 350 * ms},
		{at: 400 * ms, n: 1, allowed: true, remaining: 2, reset: 300 * ms},
		{at: 700 * ms, n: 1, allowed: true, remaining: 4, reset: 100 * ms},
		{at: 10 * time.Second, n: 1, allowed: true, remaining: 4, reset: 100 * ms},
	}},
	{"cost above one", []step{
		{n: 3, allowed: true, remaining: 2, reset: 300 * ms},
		{n: 3, remaining: 2, retry: 100 * ms, reset: 300 * ms},
		{n: 2, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 200 * ms, n: 2, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 700 * ms, n: 5, allowed: true, remaining: 0, reset: 500 * ms},
		{at: 800 * ms, n: 2, remaining: 1, retry: 100 * ms, reset: 400 * ms},
	}},
	{"cost above the burst is refused and changes nothing", []step{
		{n: 6, remaining: 5, retry: 500 * ms, reset: 0},
		{n: 1, allowed: true, remaining: 4, reset: 100 * ms},
		{n: 6, remaining: 4, retry: 500 * ms, reset: 100 * ms},
		{n: 4, allowed: true, remaining: 0, reset: 500 * ms},
	}},
	{"cost below one counts as one", []step{
		{n: 0, allowed: true, remaining: 4, reset: 100 * ms},
		{n: -3, allowed: true, remaining: 3, reset: 200 * ms},
	}},
	{"keys are independent", []step{
		{n: 5, allowed: true, remaining: 0, reset: 500 * ms},
		{n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
		{key: "k2", n: 1, allowed: true, remaining: 4, reset: 100 * ms},
		{key: "", n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
	}},
	{"limits on one key are independent", []step{
		{limit: other, n: 2, allowed: true, remaining: 0, reset: 2 * time.Second},
		{limit: other, n: 1, remaining: 0, retry: time.Second, reset: 2 * time.Second},
		{n: 5, allowed: true, remaining: 0, reset: 500 * ms},
		{n: 1, remaining: 0, retry: 100 * ms, reset: 500 * ms},
		{at: time.Second, limit: other, n: 1, allowed: true, remaining: 0, reset: 2 * time.Second},
		{at: time.Second, n: 5, allowed: true, remaining: 0, reset: 500 * ms},
	}},
	{"same name with another key", []step{
		{limit: other, key: "a", n: 2, allowed: true, remaining: 0, reset: 2 * time.Second},
		{limit: other, key: "b", n: 2, allowed: true, remaining: 0, reset: 2 * time.Second},
	}},
}

// TestGCRA runs the same sequences of requests, at the same fake times,
// against every store: the answers are exact.
func TestGCRA(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			for _, tc := range gcraCases {
				t.Run(tc.name, func(t *testing.T) {
					clk := testclock.New(start)
					s := sc.open(t, clk, 1)[0]
					for i, st := range tc.steps {
						if st.key == "" {
							st.key = "k"
						}
						if st.limit == (Limit{}) {
							st.limit = ten10
						}
						clk.Set(start.Add(st.at))
						got, err := s.Take(context.Background(), st.key, st.limit, st.n)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						want := Result{Allowed: st.allowed, Limit: st.limit, Remaining: st.remaining, RetryAfter: st.retry, Reset: st.reset}
						if got != want {
							t.Errorf("step %d (at %v, %q, n=%d):\n got %+v\nwant %+v", i, st.at, st.key, st.n, got, want)
						}
					}
				})
			}
		})
	}
}

// Many goroutines hammer a few keys while the fake clock moves on, through
// one or two instances (two gateways sharing Redis). Whatever the
// interleaving, each key gets exactly its burst plus one request per
// emission interval elapsed: never more, and, since the clock moves only
// once the previous interval's request was taken, nothing is lost.
func TestConcurrentExact(t *testing.T) {
	const (
		workers = 8
		steps   = 100
	)
	// One a second. Redis expires a state when it is full by the fake
	// clock's reckoning but in real time: the span, 20s, is far longer than
	// the test takes, so no state expires early.
	l := Limit{Name: "c", Rate: 1, Period: time.Second, Burst: 20}
	keys := []string{"a", "b", "c"}
	for _, sc := range storeCases {
		for _, instances := range []int{1, 2} {
			if instances > 1 && sc.name == "memory" {
				continue // one Memory is one instance
			}
			name := sc.name
			if instances > 1 {
				name += " two instances"
			}
			t.Run(name, func(t *testing.T) {
				clk := testclock.New(start)
				stores := sc.open(t, clk, instances)
				allowed := make([]atomic.Int64, len(keys))
				var stop atomic.Bool
				var failed atomic.Value
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						for i := w; !stop.Load(); i++ {
							k := i % len(keys)
							r, err := stores[i%len(stores)].Take(context.Background(), keys[k], l, 1)
							if err != nil {
								failed.CompareAndSwap(nil, err)
								return
							}
							if r.Allowed {
								allowed[k].Add(1)
							}
						}
					})
				}
				deadline := time.Now().Add(time.Minute) // guards against a hang only
				for step := 0; step <= steps; step++ {
					for k := range keys {
						for allowed[k].Load() < int64(l.Burst+step) {
							if time.Now().After(deadline) || failed.Load() != nil {
								stop.Store(true)
								wg.Wait()
								t.Fatalf("step %d: key %q got %d, want %d (err %v)", step, keys[k], allowed[k].Load(), l.Burst+step, failed.Load())
							}
							runtime.Gosched()
						}
					}
					if step < steps {
						clk.Advance(time.Second)
					}
				}
				// Let the workers try a while longer at the final time.
				for range 1000 {
					runtime.Gosched()
				}
				stop.Store(true)
				wg.Wait()
				if err := failed.Load(); err != nil {
					t.Fatal(err)
				}
				for k := range keys {
					if got, want := allowed[k].Load(), int64(l.Burst+steps); got != want {
						t.Errorf("key %q: %d allowed over %d intervals, want exactly %d", keys[k], got, steps, want)
					}
				}
			})
		}
	}
}
