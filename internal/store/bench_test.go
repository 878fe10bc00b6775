package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// The benchmarks report operations per second of the store on each
// backend, from parallel goroutines (GOMAXPROCS of them).

func benchBackends(b *testing.B, run func(b *testing.B, s *Store)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := newStore(b, be)
			run(b, s)
		})
	}
}

func reportRate(b *testing.B) {
	if secs := b.Elapsed().Seconds(); secs > 0 {
		b.ReportMetric(float64(b.N)/secs, "ops/s")
	}
}

func BenchmarkUserCreate(b *testing.B) {
	benchBackends(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				u := &User{Username: fmt.Sprintf("user%d", n.Add(1)), Email: "user@example.com", Roles: []string{"viewer"}}
				if err := s.Users().Create(ctx, u); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
}

func BenchmarkUserGet(b *testing.B) {
	benchBackends(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		ids := make([]string, 1000)
		for i := range ids {
			ids[i] = mustUser(b, s, fmt.Sprintf("user%d", i), "user@example.com").ID
		}
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Users().Get(ctx, ids[n.Add(1)%int64(len(ids))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
}

func BenchmarkAuditAppend(b *testing.B) {
	benchBackends(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		data := []byte(`{"kind":"login","user":"alice","decision":"allow"}`)
		hash := make([]byte, 32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Audit().Append(ctx, &AuditRecord{Kind: "login", Data: data, PrevHash: hash, Hash: hash}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
}
