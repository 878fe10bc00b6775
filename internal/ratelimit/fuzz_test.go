package ratelimit

import (
	"context"
	"math/big"
	"strconv"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

// FuzzMemoryTake drives a Memory with arbitrary limits, keys, costs and
// times. Whatever happens it must not panic, its answers must be
// consistent, and no key may ever be allowed more than its burst plus Rate
// per Period over the time since its first request.
//
// ops is read three bytes at a time: how far to move the clock (in 1/64ths
// of the emission interval, cubed, so that both small and large steps
// occur), which of 8 keys, and the cost.
func FuzzMemoryTake(f *testing.F) {
	f.Add(uint32(10), uint32(1000), uint16(5), []byte{0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 9, 0, 1})
	f.Add(uint32(3), uint32(1000), uint16(1), []byte{0, 1, 1, 40, 1, 1, 40, 1, 1, 41, 1, 1})
	f.Add(uint32(3), uint32(1000), uint16(2), []byte{0, 0, 2, 4, 0, 1, 4, 0, 1}) // one emission interval a step
	f.Add(uint32(1), uint32(86_400_000), uint16(100), []byte{0, 2, 50, 0, 2, 60, 255, 2, 60, 255, 3, 101})
	f.Add(uint32(1_000_000), uint32(1000), uint16(3), []byte{1, 0, 0, 1, 1, 2, 1, 2, 3, 1, 3, 4})
	f.Add(uint32(0), uint32(0), uint16(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, rate, periodMS uint32, burst uint16, ops []byte) {
		l := Limit{Name: "f", Rate: int(rate), Period: time.Duration(periodMS) * time.Millisecond, Burst: int(burst)}
		clk := testclock.New(start)
		m := NewMemory(MemoryOptions{Now: clk.Now})
		tiny := NewMemory(MemoryOptions{MaxKeys: 3, Shards: 2, Now: clk.Now})
		ctx := context.Background()

		emit, valid := l.emission()
		if valid != (l.Validate() == nil) {
			t.Fatalf("emission says valid=%v, Validate says %v", valid, l.Validate())
		}
		var first [8]time.Duration
		var seen [8]bool
		var taken [8]int64
		var now time.Duration
		for i := 0; i+2 < len(ops); i += 3 {
			cube := float64(ops[i]) * float64(ops[i]) * float64(ops[i])
			step := time.Duration(cube)
			if valid {
				step = time.Duration(min(cube*float64(emit)/64, float64(maxSpan)))
			}
			if now+step > 100*365*24*time.Hour {
				return // a century of uptime is enough
			}
			now += step
			clk.Set(start.Add(now))
			k := int(ops[i+1] % 8)
			key := strconv.Itoa(k)
			n := int(ops[i+2])

			r, err := m.Take(ctx, key, l, n)
			if err != nil {
				t.Fatalf("Memory.Take: %v", err)
			}
			if _, err := tiny.Take(ctx, key, l, n); err != nil {
				t.Fatalf("Memory.Take: %v", err)
			}
			if tiny.Len() > 3 {
				t.Fatalf("a Memory of 3 keys holds %d", tiny.Len())
			}
			if !valid {
				if r.Allowed {
					t.Fatalf("an invalid limit %+v allowed a request", l)
				}
				continue
			}
			span := l.span()
			cost := int64(max(n, 1))
			switch {
			case r.Remaining < 0 || r.Remaining > l.Burst:
				t.Fatalf("Remaining %d outside 0..%d", r.Remaining, l.Burst)
			case r.Reset < 0 || r.Reset > span:
				t.Fatalf("Reset %v outside 0..%v", r.Reset, span)
			case r.Allowed && r.RetryAfter != 0:
				t.Fatalf("allowed with RetryAfter %v", r.RetryAfter)
			case !r.Allowed && (r.RetryAfter <= 0 || r.RetryAfter > span):
				t.Fatalf("refused with RetryAfter %v, want in (0, %v]", r.RetryAfter, span)
			case cost > int64(l.Burst) && r.Allowed:
				t.Fatalf("cost %d above the burst %d allowed", cost, l.Burst)
			case r.Allowed && int64(r.Remaining) > int64(l.Burst)-cost:
				t.Fatalf("cost %d allowed leaving %d of %d", cost, r.Remaining, l.Burst)
			}
			if !seen[k] {
				seen[k], first[k] = true, now
			}
			if r.Allowed {
				taken[k] += cost
			}
			// taken <= Burst + Rate * elapsed / Period, in integers:
			// taken * Period <= Burst * Period + Rate * elapsed.
			lhs := new(big.Int).Mul(big.NewInt(taken[k]), big.NewInt(int64(l.Period)))
			rhs := new(big.Int).Mul(big.NewInt(int64(l.Burst)), big.NewInt(int64(l.Period)))
			rhs.Add(rhs, new(big.Int).Mul(big.NewInt(int64(l.Rate)), big.NewInt(int64(now-first[k]))))
			if lhs.Cmp(rhs) > 0 {
				t.Fatalf("key %d: %d allowed in %v under %+v: more than the burst plus the rate", k, taken[k], now-first[k], l)
			}
		}
	})
}
