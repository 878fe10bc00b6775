package ratelimit

import (
	"cmp"
	"context"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configures a Memory store. The zero value is usable.
type MemoryOptions struct {
	// MaxKeys bounds the number of (limit, key) states kept; default
	// 100_000. Memory never holds more.
	MaxKeys int
	// Shards is the number of independently locked parts; default 64,
	// rounded up to a power of two (at most 65,536), and down to MaxKeys.
	Shards int
	// Now is the clock, for tests. Only differences between its readings
	// matter. By default Memory reads the monotonic clock alone, which is
	// cheaper than time.Now and unmoved when the wall clock jumps.
	Now func() time.Time
}

// Memory is a Store for one gateway instance. It is safe for concurrent
// use, and Take never fails.
//
// States live in shards, each a map under its own mutex, chosen by a hash
// of the limit name and key; there is no lock shared by all requests. A
// state is one int64 (the TAT) keyed by a 64-bit hash of the limit name and
// key, seeded at random per Memory, so a client cannot choose keys that
// collide and a long key costs no more memory than a short one; two
// distinct keys share a state with probability about 2^-64 per pair.
//
// Memory is bounded: a shard holds at most MaxKeys/Shards states. When a
// new state does not fit, the shard drops every state that is full again
// (idle: dropping it changes no decision) and, if that frees fewer than
// 1/16 of the shard, the states closest to being full, up to that 1/16.
// Dropping a state that is not full forgets some of its debt: under a flood
// of distinct keys, the clients least in debt gain at most what they would
// have regained soonest. Working in batches keeps the cost of a flood at a
// small constant per new key.
type Memory struct {
	seed     maphash.Seed
	shift    uint // 64 - log2(len(shards))
	perShard int
	epoch    time.Time
	now      func() time.Time // nil: the monotonic clock
	shards   []shard
}

type shard struct {
	mu   sync.Mutex
	m    map[uint64]int64 // hash of (limit name, key) -> TAT, nanoseconds since epoch
	idle []uint64         // reused by evict
	heap []state          // reused by evict: at most MaxKeys/Shards/16
	_    [64]byte         // keeps neighbouring shards' locks off one cache line
}

// NewMemory returns an empty Memory.
func NewMemory(o MemoryOptions) *Memory {
	if o.MaxKeys < 1 {
		o.MaxKeys = 100_000
	}
	if o.Shards < 1 {
		o.Shards = 64
	}
	o.Shards = min(o.Shards, 1<<16)
	n := 1 << bits.Len(uint(o.Shards-1)) // next power of two
	for n > o.MaxKeys {
		n >>= 1
	}
	epoch := time.Now()
	if o.Now != nil {
		epoch = o.Now()
	}
	m := &Memory{
		seed:     maphash.MakeSeed(),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		perShard: o.MaxKeys / n,
		epoch:    epoch,
		now:      o.Now,
		shards:   make([]shard, n),
	}
	for i := range m.shards {
		m.shards[i].m = make(map[uint64]int64)
	}
	return m
}

var _ Store = (*Memory)(nil)

// Take decides one request of cost n for key under l (see Store). It never
// returns an error; a Limit that Validate rejects is refused, failing
// closed. It reads the clock while holding the shard's lock, so that the
// decisions on one key are made in the order of their times (a reading
// taken before the lock can be applied after a later one; see
// golang/go#71360). It allocates nothing for a key it already holds.
func (m *Memory) Take(_ context.Context, key string, l Limit, n int) (Result, error) {
	emit, ok := l.emission()
	if !ok {
		return Result{Limit: l}, nil
	}
	n = max(n, 1)
	h := maphash.String(m.seed, l.Name)*0x9e3779b97f4a7c15 ^ maphash.String(m.seed, key)
	s := &m.shards[h>>m.shift&uint64(len(m.shards)-1)]

	s.mu.Lock()
	now := m.elapsed()
	tat, known := s.m[h]
	d := decide(now, tat, known, int64(emit), int64(l.Burst), int64(n))
	if d.allowed {
		if !known && len(s.m) >= m.perShard {
			s.evict(now, m.perShard)
		}
		s.m[h] = d.tat
	}
	s.mu.Unlock()

	return d.result(l, int64(emit), time.Nanosecond), nil
}

// elapsed reads the clock: nanoseconds since m was made. Without
// MemoryOptions.Now it reads only the monotonic clock, half the cost of
// time.Now.
func (m *Memory) elapsed() int64 {
	if m.now == nil {
		return int64(time.Since(m.epoch))
	}
	return int64(m.now().Sub(m.epoch))
}

// evict makes room in a full shard: it drops every state full again at now
// and, if those are fewer than a sixteenth of capacity, the states with the
// earliest TAT (the closest to full) up to that number. s.mu is held.
func (s *shard) evict(now int64, capacity int) {
	want := max(capacity/16, 1)
	// One pass collects the idle states and keeps, in a max-heap by TAT,
	// the want earliest of the others.
	idle, h := s.idle[:0], s.heap[:0]
	for k, tat := range s.m {
		switch {
		case tat <= now:
			idle = append(idle, k)
		case len(h) < want:
			h = append(h, state{k, tat})
			siftUp(h, len(h)-1)
		case tat < h[0].tat:
			h[0] = state{k, tat}
			siftDown(h, 0)
		}
	}
	for _, k := range idle {
		delete(s.m, k)
	}
	if extra := want - len(idle); extra > 0 {
		// The extra earliest of the heap go.
		slices.SortFunc(h, func(a, b state) int { return cmp.Compare(a.tat, b.tat) })
		for _, st := range h[:min(extra, len(h))] {
			delete(s.m, st.key)
		}
	}
	s.idle, s.heap = idle[:0], h[:0]
}

// state is one entry of a shard, for evict.
type state struct {
	key uint64
	tat int64
}

// siftUp and siftDown keep h a max-heap by TAT.
func siftUp(h []state, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].tat >= h[i].tat {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []state, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1].tat > h[c].tat {
			c++
		}
		if h[i].tat >= h[c].tat {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// Len returns the number of states held. It is safe for concurrent use;
// with concurrent Takes the answer is approximate.
func (m *Memory) Len() int {
	total := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		total += len(s.m)
		s.mu.Unlock()
	}
	return total
}
