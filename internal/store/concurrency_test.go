package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
)

const (
	writers         = 8
	writesPerWriter = 200
)

// testConcurrentWrites has writers on two instances of the store (as two
// processes would be) write at once: no write may fail or be lost.
func testConcurrentWrites(t *testing.T, b backend) {
	ctx := context.Background()
	s1, c := newStore(t, b)
	s2 := b.reopen(t, s1)
	s2.SetCipher(c)

	var wg sync.WaitGroup
	errs := make(chan error, writers*writesPerWriter)
	for w := range writers {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			for i := range writesPerWriter {
				u := &User{Username: fmt.Sprintf("w%d-u%d", w, i), Email: "x@example.com"}
				if err := s.Users().Create(ctx, u); err != nil {
					errs <- err
					continue
				}
				if i%4 == 0 {
					if err := s.Users().Update(ctx, u); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	var n int
	if err := s1.DB().QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != writers*writesPerWriter {
		t.Fatalf("%d users after %d writes", n, writers*writesPerWriter)
	}
}

// testConcurrentAudit appends from many goroutines on two instances: the
// sequence numbers handed out must be exactly 1..n.
func testConcurrentAudit(t *testing.T, b backend) {
	ctx := context.Background()
	s1, _ := newStore(t, b)
	s2 := b.reopen(t, s1)
	const per = 50

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs []int64
	)
	for w := range writers {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			for i := range per {
				r := &AuditRecord{Kind: "test", Data: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)}
				if err := s.Audit().Append(ctx, r); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, r.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("sequence numbers handed out are not 1..%d: position %d has %d", len(seqs), i, seq)
		}
	}
	recs, err := s1.Audit().List(ctx, 0, 10*writers*per)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != writers*per {
		t.Fatalf("List returned %d records, want %d", len(recs), writers*per)
	}
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Fatalf("stored record %d has Seq %d", i, r.Seq)
		}
	}
}
