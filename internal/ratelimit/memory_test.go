package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/testclock"
)

// A rate that does not divide its period: the emission interval is rounded
// up, never down, so no second ever allows more than Rate.
func TestMemoryUnevenInterval(t *testing.T) {
	l := Limit{Name: "third", Rate: 3, Period: time.Second, Burst: 1} // 333,333,333.3ns
	clk := testclock.New(start)
	m := NewMemory(MemoryOptions{Now: clk.Now})
	ctx := context.Background()
	for _, tc := range []struct {
		at      time.Duration
		allowed bool
		retry   time.Duration
	}{
		{0, true, 0},
		{333333333, false, 1},
		{333333334, true, 0},
		{666666667, false, 1},
		{666666668, true, 0},
		{time.Second, false, 2}, // three in the first second, not four
		{time.Second + 2, true, 0},
	} {
		clk.Set(start.Add(tc.at))
		r, _ := m.Take(ctx, "k", l, 1)
		if r.Allowed != tc.allowed || r.RetryAfter != tc.retry {
			t.Errorf("at %dns: allowed %v, retry %v; want %v, %v", tc.at, r.Allowed, r.RetryAfter, tc.allowed, tc.retry)
		}
	}
}

// A full shard makes room by dropping idle states first, else the states
// closest to being full, and never holds more than its share of MaxKeys.
func TestMemoryEviction(t *testing.T) {
	big := Limit{Name: "big", Rate: 10, Period: time.Second, Burst: 100} // 100ms each
	type take struct {
		key string
		n   int
	}
	for _, tc := range []struct {
		name    string
		maxKeys int
		setup   []take        // at start
		at      time.Duration // when newcomer arrives
		wantLen int           // after newcomer
		gone    []string      // states forgotten (a probe finds them full)
		kept    []string      // states kept, still in debt
	}{
		{
			name: "idle states go first, all of them", maxKeys: 4,
			setup: []take{{"a", 1}, {"b", 2}, {"c", 50}, {"d", 60}},
			at:    250 * ms, wantLen: 3,
			kept: []string{"c", "d"},
		},
		{
			name: "else the state closest to full", maxKeys: 4,
			setup: []take{{"a", 3}, {"b", 1}, {"c", 50}, {"d", 2}},
			at:    50 * ms, wantLen: 4,
			gone: []string{"b"}, kept: []string{"a", "c", "d"},
		},
		{
			name: "a sixteenth of the shard at a time", maxKeys: 64,
			setup: func() []take {
				var s []take
				for i := range 64 {
					s = append(s, take{fmt.Sprint("k", 63-i), i + 1})
				}
				return s
			}(),
			wantLen: 61,
			gone:    []string{"k63", "k62", "k61", "k60"},
			kept:    []string{"k59", "k58", "k0"},
		},
		{
			name: "one idle state and the closest to full", maxKeys: 32,
			setup: func() []take {
				s := []take{{"idle", 1}}
				for i := range 31 {
					s = append(s, take{fmt.Sprint("k", i), i + 5})
				}
				return s
			}(),
			at: 150 * ms, wantLen: 31,
			gone: []string{"k0"}, kept: []string{"k1", "k30"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			m := NewMemory(MemoryOptions{MaxKeys: tc.maxKeys, Shards: 1, Now: clk.Now})
			ctx := context.Background()
			for _, s := range tc.setup {
				if r, _ := m.Take(ctx, s.key, big, s.n); !r.Allowed {
					t.Fatalf("setup %q refused", s.key)
				}
			}
			if got := m.Len(); got != tc.maxKeys {
				t.Fatalf("Len after setup = %d, want %d", got, tc.maxKeys)
			}
			clk.Advance(tc.at)
			if r, _ := m.Take(ctx, "newcomer", big, 1); !r.Allowed {
				t.Fatal("newcomer refused")
			}
			if got := m.Len(); got != tc.wantLen {
				t.Errorf("Len = %d, want %d", got, tc.wantLen)
			}
			for _, k := range tc.gone {
				if r := probe(t, m, k, big); r.Reset != 0 {
					t.Errorf("%q was kept (reset %v), want it dropped", k, r.Reset)
				}
			}
			for _, k := range tc.kept {
				if r := probe(t, m, k, big); r.Reset == 0 {
					t.Errorf("%q was dropped, want it kept", k)
				}
			}
		})
	}
}

// A flood of a million distinct keys, long ones, never makes Memory hold
// more than MaxKeys states, nor much memory: a state costs the same
// whatever its key's length.
func TestMemoryBound(t *testing.T) {
	t.Parallel()
	const (
		maxKeys = 100_000
		flood   = 1_000_000
	)
	clk := testclock.New(start)
	m := NewMemory(MemoryOptions{MaxKeys: maxKeys, Now: clk.Now})
	ctx := context.Background()
	pad := strings.Repeat("x", 200)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	buf := []byte(pad)
	for i := range flood {
		buf = strconv.AppendInt(buf[:len(pad)], int64(i), 10)
		if r, _ := m.Take(ctx, string(buf), ten10, 1); !r.Allowed {
			t.Fatalf("key %d refused", i)
		}
		if i%1000 == 0 {
			clk.Advance(time.Millisecond) // some states turn idle as the flood goes on
		}
		if i%4096 == 0 {
			if n := m.Len(); n > maxKeys {
				t.Fatalf("after %d keys Len = %d > %d", i+1, n, maxKeys)
			}
		}
	}
	n := m.Len()
	if n > maxKeys || n < maxKeys/2 {
		t.Errorf("Len = %d after the flood, want between %d and %d", n, maxKeys/2, maxKeys)
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d states: heap grew by %d bytes (%d per state)", n, grown, grown/int64(n))
	if limit := int64(128 * maxKeys); grown > limit { // the keys alone would take 200 bytes each
		t.Errorf("heap grew by %d bytes for %d states, want at most %d", grown, n, limit)
	}
	runtime.KeepAlive(m)
}

// MaxKeys is a bound on the total, whatever the shard count.
func TestMemoryShardCounts(t *testing.T) {
	for _, tc := range []struct {
		name            string
		maxKeys, shards int
		wantShards      int
	}{
		{"defaults", 0, 0, 64},
		{"rounded up to a power of two", 1000, 5, 8},
		{"no more shards than keys", 3, 64, 2},
		{"one key", 1, 64, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testclock.New(start)
			m := NewMemory(MemoryOptions{MaxKeys: tc.maxKeys, Shards: tc.shards, Now: clk.Now})
			if len(m.shards) != tc.wantShards {
				t.Errorf("%d shards, want %d", len(m.shards), tc.wantShards)
			}
			max := tc.maxKeys
			if max == 0 {
				max = 100_000
			}
			for i := range 3 * max {
				m.Take(context.Background(), fmt.Sprint(i), ten10, 1)
			}
			if n := m.Len(); n > max || n == 0 {
				t.Errorf("Len = %d, want 1..%d", n, max)
			}
		})
	}
}

// Deciding for a key already held allocates nothing.
func TestMemoryTakeAllocs(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	ctx := context.Background()
	m.Take(ctx, "203.0.113.7", ten10, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		m.Take(ctx, "203.0.113.7", ten10, 1)
	})
	if allocs != 0 {
		t.Errorf("Take allocates %v times per call, want 0", allocs)
	}
}

// An invalid limit is refused, not a panic and not an allowance.
func TestMemoryInvalidLimit(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	for _, l := range []Limit{
		{},
		{Name: "x", Rate: 0, Period: time.Second, Burst: 1},
		{Name: "x", Rate: 1, Period: 0, Burst: 1},
		{Name: "x", Rate: 1, Period: time.Second, Burst: 0},
		{Name: "x", Rate: 1e9, Period: time.Second, Burst: 1},
	} {
		r, err := m.Take(context.Background(), "k", l, 1)
		if err != nil || r.Allowed {
			t.Errorf("%+v: allowed %v, err %v; want refused", l, r.Allowed, err)
		}
	}
	if m.Len() != 0 {
		t.Errorf("Len = %d, want 0", m.Len())
	}
}
