package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/store"
)

// ErrClosed is returned by Flush on a closed Writer.
var ErrClosed = errors.New("audit writer closed")

// Defaults of Options.
const (
	DefaultQueueSize          = 8192
	DefaultBatchSize          = 512
	DefaultEnqueueWait        = 50 * time.Millisecond
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// Retry delays after a failed write that was not a lost race.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Options configure a Writer. Store and Signer are required.
type Options struct {
	Store  store.Audit
	Signer *Signer
	// QueueSize bounds the events waiting to be written.
	QueueSize int
	// BatchSize bounds the records written in one transaction.
	BatchSize int
	// EnqueueWait is how long Record waits for room in a full queue
	// before it gives the event up and counts an overflow. Negative: it
	// does not wait.
	EnqueueWait time.Duration
	// A checkpoint is written after CheckpointEvery records, and after
	// CheckpointInterval when records were written since the last one.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	Logger             *slog.Logger     // nil discards
	Now                func() time.Time // nil is time.Now
}

func (o *Options) defaults() error {
	if o.Store == nil || o.Signer == nil {
		return errors.New("audit writer: a store and a signer are required")
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.EnqueueWait == 0 {
		o.EnqueueWait = DefaultEnqueueWait
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Writer is an event.Recorder that appends events to the audit log. Record
// only queues the event; one goroutine writes the queue in batches, one
// transaction per batch (group commit), chaining each record to the one
// before in memory. When another Moat instance sharing the database
// appended first, the batch is chained again after the new last record.
// Its methods are safe for concurrent use.
type Writer struct {
	o     Options
	log   *slog.Logger
	queue chan event.Event
	flush chan chan error
	stop  chan struct{}
	done  chan struct{}

	ctx    context.Context // of the writes; cancelled when Close gives up
	cancel context.CancelFunc

	mu     sync.RWMutex // Record holds it shared; Close exclusively, to set closed
	closed bool

	overflows  atomic.Uint64
	stored     atomic.Uint64
	lost       atomic.Uint64 // taken from the queue, then abandoned by Close
	logged     atomic.Uint64 // overflows already logged
	lastLogged atomic.Int64  // unix nanoseconds of the last overflow log
	closeOnce  sync.Once
	closeErr   error

	// Owned by run.
	tail           *store.AuditRecord // last record stored, nil for an empty log
	since          int                // records since the last checkpoint
	lastCheckpoint time.Time
}

// NewWriter reads the end of the log and starts the Writer's goroutine.
// Close stops it.
func NewWriter(ctx context.Context, o Options) (*Writer, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	tail, err := o.Store.Last(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("starting audit writer: %w", err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Writer{
		o:              o,
		log:            o.Logger.With("component", "audit"),
		queue:          make(chan event.Event, o.QueueSize),
		flush:          make(chan chan error),
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
		ctx:            wctx,
		cancel:         cancel,
		tail:           tail,
		lastCheckpoint: o.Now(),
	}
	go w.run()
	return w, nil
}

// Record queues e for the log. A zero e.Time is now; an empty e.Kind is
// "unknown". When the queue is full it waits up to Options.EnqueueWait (or
// until ctx ends) for room, then gives e up and counts an overflow, logged
// at most once a second with the count. e.Details must not be changed
// after Record: the map is encoded later, by the Writer's goroutine.
func (w *Writer) Record(ctx context.Context, e event.Event) {
	if e.Time.IsZero() {
		e.Time = w.o.Now()
	}
	if e.Kind == "" {
		e.Kind = "unknown"
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.overflow()
		return
	}
	select {
	case w.queue <- e:
		return
	default:
	}
	if w.o.EnqueueWait > 0 {
		t := time.NewTimer(w.o.EnqueueWait)
		defer t.Stop()
		select {
		case w.queue <- e:
			return
		case <-t.C:
		case <-ctx.Done():
		}
	}
	w.overflow()
}

func (w *Writer) overflow() {
	n := w.overflows.Add(1)
	now := time.Now().UnixNano()
	last := w.lastLogged.Load()
	if now-last < int64(time.Second) || !w.lastLogged.CompareAndSwap(last, now) {
		return
	}
	prev := w.logged.Swap(n)
	w.log.Error("audit queue full: events not recorded", "count", n-prev, "total", n)
}

// Overflows returns how many events Record gave up: the queue stayed
// full, the caller's context ended, or the Writer was closed.
func (w *Writer) Overflows() uint64 { return w.overflows.Load() }

// Queued is the number of events waiting to be written.
func (w *Writer) Queued() int { return len(w.queue) }

// Stored returns how many events the Writer has stored (checkpoints not
// counted).
func (w *Writer) Stored() uint64 { return w.stored.Load() }

// Flush returns once every event queued before it was called is stored,
// with the error of the last write if it failed, ErrClosed after Close, or
// ctx's error.
func (w *Writer) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.flush <- reply:
	case <-w.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking events (later ones count as overflows), stores those
// queued, writes a last checkpoint and stops the goroutine. If ctx ends
// first it abandons what is not stored yet and says how many events that
// is. Calls after the first return its result.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		select {
		case <-w.done:
		case <-ctx.Done():
			w.cancel()
			<-w.done
		}
		w.cancel()
		if n := w.lost.Load() + uint64(len(w.queue)); n > 0 {
			w.closeErr = fmt.Errorf("closing audit writer: %d events not stored", n)
		}
	})
	return w.closeErr
}

// run is the Writer's goroutine: the only one that writes.
func (w *Writer) run() {
	defer close(w.done)
	tick := time.NewTicker(w.o.CheckpointInterval)
	defer tick.Stop()
	batch := make([]event.Event, 0, w.o.BatchSize)
	for {
		select {
		case e := <-w.queue:
			batch = w.take(append(batch[:0], e), w.o.BatchSize)
			w.write(batch, false)
		case reply := <-w.flush:
			reply <- w.drain(batch, false)
		case <-tick.C:
			if w.since > 0 && w.o.Now().Sub(w.lastCheckpoint) >= w.o.CheckpointInterval {
				w.write(nil, true)
			}
		case <-w.stop:
			if err := w.drain(batch, true); err != nil {
				w.log.Error("closing audit writer", "err", err)
			}
			return
		}
	}
}

// take adds to batch what the queue holds, up to max events.
func (w *Writer) take(batch []event.Event, max int) []event.Event {
	for len(batch) < max {
		select {
		case e := <-w.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// drain writes the events queued now, in batches, then a checkpoint if
// final and records were written since the last one.
func (w *Writer) drain(batch []event.Event, final bool) error {
	for n := len(w.queue); n > 0; {
		batch = w.take(batch[:0], min(n, w.o.BatchSize))
		if len(batch) == 0 {
			break
		}
		n -= len(batch)
		if err := w.write(batch, false); err != nil {
			return err
		}
	}
	if final && w.since > 0 {
		return w.write(nil, true)
	}
	return nil
}

// write stores events, and a checkpoint after them if checkpoint is set,
// until it succeeds or the Writer is abandoned. A lost race with another
// appender is retried at once, after reading the new end of the log;
// other failures are logged and retried with growing delays.
func (w *Writer) write(events []event.Event, checkpoint bool) error {
	if len(events) == 0 && !checkpoint {
		return nil
	}
	delay := minRetry
	for {
		recs, since := w.chain(events, checkpoint)
		err := w.o.Store.AppendBatch(w.ctx, recs)
		if err == nil {
			w.tail, w.since = recs[len(recs)-1], since
			if since == 0 {
				w.lastCheckpoint = w.o.Now()
			}
			w.stored.Add(uint64(len(events)))
			return nil
		}
		if w.ctx.Err() != nil {
			w.lost.Add(uint64(len(events)))
			return fmt.Errorf("%d events not stored: %w", len(events), err)
		}
		if errors.Is(err, store.ErrConflict) {
			tail, lerr := w.o.Store.Last(w.ctx)
			if lerr == nil {
				w.tail = tail
				continue
			}
			err = lerr
		}
		w.log.Error("writing audit records", "events", len(events), "retry_in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-w.ctx.Done():
			w.lost.Add(uint64(len(events)))
			return fmt.Errorf("%d events not stored: %w", len(events), err)
		}
		delay = min(2*delay, maxRetry)
	}
}

// chain turns events into records that follow the tail, with a checkpoint
// after every CheckpointEvery records and at the end if checkpoint is set.
// It returns them and the count of records after the last checkpoint.
func (w *Writer) chain(events []event.Event, checkpoint bool) ([]*store.AuditRecord, int) {
	var (
		seq   int64
		prev  []byte
		since = w.since
	)
	if w.tail != nil {
		seq, prev = w.tail.Seq, w.tail.Hash
	}
	recs := make([]*store.AuditRecord, 0, len(events)+len(events)/w.o.CheckpointEvery+1)
	add := func(r *store.AuditRecord) {
		recs = append(recs, r)
		seq, prev = r.Seq, r.Hash
	}
	for _, e := range events {
		data := Encode(seq+1, e)
		add(&store.AuditRecord{Seq: seq + 1, Time: e.Time.UTC().Truncate(time.Microsecond), Kind: e.Kind, Data: data, PrevHash: prev, Hash: Hash(prev, data)})
		if since++; since >= w.o.CheckpointEvery {
			add(w.o.Signer.record(seq+1, w.o.Now(), prev, 0, nil))
			since = 0
		}
	}
	if checkpoint && since > 0 || len(recs) == 0 {
		add(w.o.Signer.record(seq+1, w.o.Now(), prev, 0, nil))
		since = 0
	}
	return recs, since
}
