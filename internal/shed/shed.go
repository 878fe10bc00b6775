// Package shed sheds load. A Limiter caps how many requests are served at
// once, lets a few more wait briefly for a slot, and refuses the rest at
// once, so that the requests already admitted finish in good time instead of
// all of them slowing down together. The gateway answers a refusal with
// 503 Service Unavailable and a Retry-After header.
//
// The gateway holds one global Limiter and one per route and takes a slot in
// both with [Both]. Health endpoints and the admin listener do not go
// through a Limiter at all, so an overloaded gateway still answers its
// probes and its operator.
package shed

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueWait is how long a request waits for a slot when
// Options.QueueWait is not set.
const DefaultQueueWait = 100 * time.Millisecond

// maxIdle is how many free slots a Limiter keeps for reuse, so that taking a
// free slot does not allocate once the gateway has warmed up.
const maxIdle = 1024

// Options configures a Limiter.
type Options struct {
	MaxInFlight int           // requests served at once; 0 (or less) = no limit
	MaxQueue    int           // requests that may wait for a slot; 0 = none wait
	QueueWait   time.Duration // how long one may wait before being refused; default DefaultQueueWait

	// Now, optional (time.Now), is read when a request starts to wait and
	// again when a slot frees for it: a request that has waited QueueWait
	// by this clock is refused rather than admitted late. A timer of
	// QueueWait wakes and refuses a waiter that no freed slot reaches.
	Now func() time.Time
}

// Limiter is a semaphore with a short, bounded, first-come first-served
// queue. Its methods are safe for concurrent use. A nil *Limiter admits
// everything: no limit was configured.
//
// A Limiter fails closed: a request beyond the cap and the queue is refused,
// never admitted, because under overload admitting more makes every request
// slower and the process may run out of memory. Refusing costs little: no
// goroutine is started per request, and waiting happens in the caller's own
// goroutine.
//
// A new Limiter starts with no request in flight: on a config reload, keep
// the Limiter of a limit that did not change, or the requests still running
// under the old one are not counted against the cap.
type Limiter struct {
	max      int // math.MaxInt when there is no limit
	maxQueue int
	wait     time.Duration
	now      func() time.Time

	refused atomic.Uint64

	mu       sync.Mutex
	inFlight int
	queued   int
	queue    waiterList // oldest first; only ever non-empty when inFlight == max
	idle     *slot      // free slots kept for reuse, oldest first
	idleTail *slot
	idleN    int
	spare    *waiter // finished waiters kept for reuse (at most maxQueue)
	spareN   int
}

// New returns a Limiter for o.
func New(o Options) *Limiter {
	l := &Limiter{max: o.MaxInFlight, maxQueue: max(o.MaxQueue, 0), wait: o.QueueWait, now: o.Now}
	if l.max <= 0 {
		l.max = math.MaxInt
	}
	if l.wait <= 0 {
		l.wait = DefaultQueueWait
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// slot is one unit of a Limiter's capacity, held by one request. Its
// release func is made once, when the slot is made, so handing out a
// reused slot does not allocate.
type slot struct {
	l       *Limiter
	held    bool   // guarded by l.mu
	next    *slot  // in l.idle
	then    func() // called after the slot is freed: the global slot under a route slot (Both)
	release func() // s.free
}

// waiter is a request waiting for a slot. A Limiter reuses them, with their
// channel and timer.
type waiter struct {
	prev, next *waiter
	ready      chan struct{} // one send when done is set
	done       bool          // taken off the queue by a freed slot: granted (slot != nil) or refused
	slot       *slot
	deadline   time.Time // by l.now
	timer      *time.Timer
}

// Acquire takes a slot for one request. A free slot is taken at once,
// without looking at ctx; this does not allocate once the Limiter has served
// as many requests at a time before (free slots are kept for reuse).
// Otherwise the request joins the queue, if there is room, and waits until a
// slot frees for it (the longest waiter gets the next free slot), QueueWait
// passes, or ctx ends. ok is false at once when the queue is full or ctx has already ended, and
// after waiting when QueueWait runs out or ctx ends first; the request should
// then be refused. A request that ends its wait with a slot it no longer
// wants (ctx ended) passes the slot on to the next waiter.
//
// When ok is true, release must be called exactly once, when the request is
// done. Calling it again is ignored while the slot is idle; but a freed
// slot goes straight to a waiting request when there is one, and a second
// call after that frees that request's slot early, so that one more request
// than the cap may be admitted until the slot next falls idle. Call it once,
// with defer. When ok is false, release does nothing.
//
// Acquire is safe for concurrent use. A nil Limiter admits everything.
func (l *Limiter) Acquire(ctx context.Context) (release func(), ok bool) {
	s, ok := l.acquire(ctx)
	if !ok || s == nil {
		return noop, ok
	}
	return s.release, true
}

func noop() {}

// acquire is Acquire returning the slot itself, nil when l is nil.
func (l *Limiter) acquire(ctx context.Context) (*slot, bool) {
	if l == nil {
		return nil, true
	}
	l.mu.Lock()
	if l.inFlight < l.max { // then nobody is queued
		s := l.take()
		l.mu.Unlock()
		return s, true
	}
	if l.queued >= l.maxQueue || ctx.Err() != nil {
		l.mu.Unlock()
		l.refused.Add(1)
		return nil, false
	}
	w := l.newWaiter()
	w.deadline = l.now().Add(l.wait)
	l.queue.push(w)
	l.queued++
	l.mu.Unlock()

	if w.timer == nil {
		w.timer = time.NewTimer(l.wait)
	} else {
		w.timer.Reset(l.wait)
	}
	select {
	case <-w.ready:
	case <-w.timer.C:
	case <-ctx.Done():
	}
	w.timer.Stop()

	l.mu.Lock()
	defer l.mu.Unlock()
	if !w.done { // timed out or ctx ended while queued
		l.queue.remove(w)
		l.queued--
		l.putWaiter(w)
		l.refused.Add(1)
		return nil, false
	}
	select { // the send came with done, under l.mu; empty the channel for reuse
	case <-w.ready:
	default:
	}
	s := w.slot
	l.putWaiter(w)
	if s == nil { // refused, and counted, by the one that freed a slot
		return nil, false
	}
	if ctx.Err() != nil { // granted, but the request is gone: pass the slot on
		l.handOff(s)
		l.refused.Add(1)
		return nil, false
	}
	return s, true
}

// take hands out a free slot. l.mu is held and l.inFlight < l.max.
func (l *Limiter) take() *slot {
	l.inFlight++
	s := l.idle
	if s == nil {
		s = &slot{l: l}
		s.release = s.free
	} else {
		l.idle = s.next
		if l.idle == nil {
			l.idleTail = nil
		}
		s.next = nil
		l.idleN--
	}
	s.held = true
	return s
}

// free is a slot's release func.
func (s *slot) free() {
	l := s.l
	l.mu.Lock()
	if !s.held {
		l.mu.Unlock()
		return
	}
	then := s.then
	s.then = nil
	l.handOff(s)
	l.mu.Unlock()
	if then != nil {
		then()
	}
}

// handOff gives the held slot s to the longest waiter still within its
// QueueWait, refusing those past it, or else makes s idle. l.mu is held.
func (l *Limiter) handOff(s *slot) {
	if l.queue.head != nil {
		now := l.now()
		for w := l.queue.head; w != nil; w = l.queue.head {
			l.queue.remove(w)
			l.queued--
			w.done = true
			if !now.Before(w.deadline) {
				l.refused.Add(1)
				w.ready <- struct{}{}
				continue
			}
			w.slot = s
			w.ready <- struct{}{}
			return
		}
	}
	s.held = false
	l.inFlight--
	if l.idleN >= maxIdle {
		return
	}
	if l.idleTail == nil {
		l.idle = s
	} else {
		l.idleTail.next = s
	}
	l.idleTail = s
	l.idleN++
}

// newWaiter returns a reset waiter. l.mu is held.
func (l *Limiter) newWaiter() *waiter {
	w := l.spare
	if w == nil {
		return &waiter{ready: make(chan struct{}, 1)}
	}
	l.spare = w.next
	l.spareN--
	w.next = nil
	return w
}

// putWaiter keeps w, off the queue and with an empty channel, for reuse.
// l.mu is held.
func (l *Limiter) putWaiter(w *waiter) {
	w.done = false
	w.slot = nil
	if l.spareN >= l.maxQueue {
		return
	}
	w.next = l.spare
	l.spare = w
	l.spareN++
}

// InFlight returns how many requests hold a slot. It is safe for concurrent
// use; a nil Limiter reports 0.
func (l *Limiter) InFlight() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Queued returns how many requests are waiting for a slot. It is safe for
// concurrent use; a nil Limiter reports 0.
func (l *Limiter) Queued() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// Refused counts refusals since start (for metrics): every Acquire, or
// [Both] refused by l, that returned ok false. It is safe for concurrent
// use; a nil Limiter reports 0.
func (l *Limiter) Refused() uint64 {
	if l == nil {
		return 0
	}
	return l.refused.Load()
}

// Both admits a request through a global and a per-route Limiter, either of
// which may be nil. It takes the global slot first, then the route slot;
// release frees them in the reverse order, route then global, with one call
// (the same rules as for Acquire's release). When one refuses, ok is false,
// which says which ("global" or "route"), no slot is kept and release does
// nothing; when ok is true, which is "".
//
// Global first means the global cap bounds everything the process holds,
// requests waiting in a route's queue included, and that the global queue
// orders requests across routes by arrival. A request waiting for its route
// holds a global slot meanwhile, at most for its route's QueueWait, so a
// route's MaxInFlight plus MaxQueue should stay well under the global
// MaxInFlight, leaving room for the other routes. A request may wait in
// both queues, so for up to both QueueWaits.
//
// Both is safe for concurrent use and, like Acquire, does not allocate when
// both slots are free and warm.
func Both(ctx context.Context, global, route *Limiter) (release func(), which string, ok bool) {
	g, ok := global.acquire(ctx)
	if !ok {
		return noop, "global", false
	}
	r, ok := route.acquire(ctx)
	if !ok {
		if g != nil {
			g.free()
		}
		return noop, "route", false
	}
	switch {
	case r == nil && g == nil:
		return noop, "", true
	case r == nil:
		return g.release, "", true
	case g == nil:
		return r.release, "", true
	}
	r.then = g.release // r is ours alone until released
	return r.release, "", true
}

// waiterList is an intrusive doubly linked list of waiters.
type waiterList struct {
	head, tail *waiter
}

func (q *waiterList) push(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail == nil {
		q.head = w
	} else {
		q.tail.next = w
	}
	q.tail = w
}

func (q *waiterList) remove(w *waiter) {
	if w.prev == nil {
		q.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		q.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
}
