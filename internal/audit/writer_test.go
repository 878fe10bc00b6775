package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

func TestWriterChainsAndSigns(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := b.open(t)
			w := newWriter(t, st, Options{CheckpointEvery: 100})
			for i := range 250 {
				w.Record(ctx, sampleEvent(i, t0.Add(time.Duration(i)*time.Second)))
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := w.Stored(); got != 250 {
				t.Fatalf("Stored after Flush = %d, want 250", got)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(ctx); !errors.Is(err, ErrClosed) {
				t.Fatalf("Flush after Close = %v, want ErrClosed", err)
			}
			events, checkpoints := countEvents(t, st)
			if events != 250 || checkpoints != 3 {
				t.Fatalf("log holds %d events and %d checkpoints, want 250 and 3", events, checkpoints)
			}
			rep := verify(t, st, loadSigner(t, st))
			if !rep.OK() {
				t.Fatalf("Verify: %s", rep.Problem)
			}
			if rep.Records != 253 || rep.First != 1 || rep.Last != 253 || rep.Checkpoints != 3 || rep.SignedThrough != 253 {
				t.Fatalf("Verify report = %+v", rep)
			}
			w.Record(ctx, sampleEvent(0, t0))
			if w.Overflows() != 1 {
				t.Fatalf("Overflows after a Record on a closed Writer = %d, want 1", w.Overflows())
			}
		})
	}
}

// TestWriterBurst records 10,000 events from many goroutines on two
// Writers sharing one database, as two Moat instances would: every event
// is stored, once, in one chain that verifies.
func TestWriterBurst(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, reopen := b.open(t)
			st2 := reopen()
			const (
				goroutines = 100
				per        = 100
			)
			ws := []*Writer{
				newWriter(t, st, Options{EnqueueWait: time.Minute}),
				newWriter(t, st2, Options{EnqueueWait: time.Minute}),
			}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range per {
						ws[g%2].Record(ctx, sampleEvent(g*per+i, time.Time{}))
					}
				})
			}
			wg.Wait()
			var stored, overflows uint64
			for _, w := range ws {
				if err := w.Close(ctx); err != nil {
					t.Fatal(err)
				}
				stored += w.Stored()
				overflows += w.Overflows()
			}
			if overflows != 0 || stored != goroutines*per {
				t.Fatalf("stored %d events with %d overflows, want %d and none", stored, overflows, goroutines*per)
			}
			if events, _ := countEvents(t, st); events != goroutines*per {
				t.Fatalf("log holds %d events, want %d", events, goroutines*per)
			}
			if rep := verify(t, st, loadSigner(t, st)); !rep.OK() {
				t.Fatalf("Verify: %s", rep.Problem)
			}
		})
	}
}

// TestWriterOverflow fills a tiny queue while another connection holds
// the SQLite write lock: the events that find no room are counted, the
// others are stored once the lock is released.
func TestWriterOverflow(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	signer := loadSigner(t, st)
	conn, err := st.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const (
		queue = 4
		total = 30
	)
	w := newWriter(t, st, Options{Signer: signer, QueueSize: queue, BatchSize: 1, EnqueueWait: time.Millisecond})
	for i := range total {
		w.Record(ctx, sampleEvent(i, t0))
	}
	// At most the queue and the one event being written found room.
	if got := w.Overflows(); got < total-queue-1 {
		t.Fatalf("Overflows with the store stalled = %d, want at least %d", got, total-queue-1)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	before := w.Overflows()
	w.Record(cancelled, sampleEvent(0, t0))
	if got := w.Overflows(); got != before+1 {
		t.Fatalf("a full queue and an ended request: Overflows = %d, want %d", got, before+1)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Stored() + w.Overflows(); got != total+1 {
		t.Fatalf("stored %d + overflows %d = %d, want every event accounted for (%d)", w.Stored(), w.Overflows(), got, total+1)
	}
	if events, _ := countEvents(t, st); uint64(events) != w.Stored() {
		t.Fatalf("log holds %d events, Stored says %d", events, w.Stored())
	}
}

// TestWriterCheckpointInterval writes a checkpoint when time passes with
// records not yet signed.
func TestWriterCheckpointInterval(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	clock := testclock.New(t0)
	w := newWriter(t, st, Options{CheckpointInterval: time.Millisecond, Now: clock.Now})
	w.Record(ctx, event.Event{Kind: "login", Outcome: event.Success})
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	for {
		if _, checkpoints := countEvents(t, st); checkpoints > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rep := verify(t, st, loadSigner(t, st))
	if !rep.OK() || rep.SignedThrough != 2 {
		t.Fatalf("Verify = %+v, %v; want the event signed by the checkpoint", rep, rep.Problem)
	}
}

func TestLoadSignerStable(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st, reopen := b.open(t)
			s1, s2 := loadSigner(t, st), loadSigner(t, reopen())
			if !s1.Public().Equal(s2.Public()) || s1.KeyID() != s2.KeyID() {
				t.Fatal("two instances on one database loaded different checkpoint keys")
			}
		})
	}
}

func TestNewWriterRequires(t *testing.T) {
	st := storetest.Open(t)
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no store", Options{Signer: loadSigner(t, st)}},
		{"no signer", Options{Store: st.Audit()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w, err := NewWriter(context.Background(), tc.o); err == nil {
				w.Close(context.Background())
				t.Fatal("NewWriter succeeded")
			}
		})
	}
}
