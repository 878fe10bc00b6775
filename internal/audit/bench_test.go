package audit

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkRecord is Record on the request path with room in the queue,
// the Writer storing on SQLite in the background: the timer stops while
// the queue is flushed every 4096 events.
func BenchmarkRecord(b *testing.B) {
	st, _ := openSQLite(b)
	w := newWriter(b, st, Options{QueueSize: 8192})
	ctx := context.Background()
	e := sampleEvent(1, time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w.Record(ctx, e)
		if i%4096 == 4095 {
			b.StopTimer()
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	if w.Overflows() != 0 {
		b.Fatalf("%d overflows", w.Overflows())
	}
}

// BenchmarkRecordSaturated is Record from every P at once, far faster
// than the store can take: Record does not wait for room here, so this
// is the cost of the full-queue path; overflows/op says how many events
// the store could not keep up with.
func BenchmarkRecordSaturated(b *testing.B) {
	st, _ := openSQLite(b)
	w := newWriter(b, st, Options{EnqueueWait: -1, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	e := sampleEvent(1, time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Record(ctx, e)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(w.Overflows())/float64(b.N), "overflows/op")
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEncode is the canonical encoding of one event.
func BenchmarkEncode(b *testing.B) {
	e := sampleEvent(1, t0)
	b.ReportAllocs()
	for b.Loop() {
		Encode(42, e)
	}
}

// BenchmarkThroughput records b.N events from every P and waits until
// they are stored: events/s is the write throughput of the log.
func BenchmarkThroughput(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st, _ := be.open(b)
			w := newWriter(b, st, Options{EnqueueWait: time.Minute})
			ctx := context.Background()
			e := sampleEvent(1, time.Time{})
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w.Record(ctx, e)
				}
			})
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			if w.Overflows() != 0 {
				b.Fatalf("%d overflows", w.Overflows())
			}
		})
	}
}
