package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"
)

// chained returns n records that follow (seq, prev), hashed like the
// audit writer hashes them.
func chained(seq int64, prev []byte, n int, at time.Time) []*AuditRecord {
	out := make([]*AuditRecord, n)
	for i := range out {
		data := fmt.Appendf(nil, `{"n":%d}`, seq+int64(i)+1)
		h := sha256.Sum256(append(append([]byte(nil), prev...), data...))
		out[i] = &AuditRecord{Seq: seq + int64(i) + 1, Time: at.Add(time.Duration(i) * time.Second), Kind: "test", Data: data, PrevHash: prev, Hash: h[:]}
		prev = h[:]
	}
	return out
}

func TestAuditBatch(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := newStore(t, b)
			as := s.Audit()
			first := chained(0, nil, 3, t0)
			if err := as.AppendBatch(ctx, first); err != nil {
				t.Fatal(err)
			}
			last, err := as.Last(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if last.Seq != 3 || string(last.Hash) != string(first[2].Hash) {
				t.Fatalf("Last = seq %d, want 3 with the batch's last hash", last.Seq)
			}
			for _, tc := range []struct {
				name string
				recs []*AuditRecord
			}{
				{"stale seq", chained(2, first[1].Hash, 2, t0)},
				{"wrong previous hash", chained(3, first[1].Hash, 2, t0)},
				{"empty-log start on a full log", chained(0, nil, 1, t0)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					wantErr(t, "AppendBatch", as.AppendBatch(ctx, tc.recs), ErrConflict)
				})
			}
			broken := chained(3, first[2].Hash, 3, t0)
			broken[2].PrevHash = []byte("not the hash")
			if err := as.AppendBatch(ctx, broken); err == nil || errors.Is(err, ErrConflict) {
				t.Fatalf("AppendBatch of an unchained batch = %v, want a validation error", err)
			}
			recs, err := as.List(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 3 {
				t.Fatalf("after refused batches the log holds %d records, want 3", len(recs))
			}

			more := chained(3, first[2].Hash, 4, t0.Add(time.Hour))
			if err := as.AppendBatch(ctx, more); err != nil {
				t.Fatal(err)
			}
			r, err := as.FirstAt(ctx, t0.Add(time.Hour+time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq != 5 {
				t.Fatalf("FirstAt = seq %d, want 5", r.Seq)
			}
			_, err = as.FirstAt(ctx, t0.Add(2*time.Hour))
			wantErr(t, "FirstAt past the end", err, ErrNotFound)

			cp := chained(7, more[3].Hash, 1, t0.Add(2*time.Hour))[0]
			if _, err := as.Prune(ctx, 9, cp); err == nil {
				t.Fatal("Prune past its checkpoint succeeded")
			}
			stale := chained(6, more[2].Hash, 1, t0.Add(2*time.Hour))[0]
			_, err = as.Prune(ctx, 5, stale)
			wantErr(t, "Prune with a stale checkpoint", err, ErrConflict)
			n, err := as.Prune(ctx, 5, cp)
			if err != nil {
				t.Fatal(err)
			}
			if n != 4 {
				t.Fatalf("Prune deleted %d records, want 4", n)
			}
			recs, err = as.List(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 4 || recs[0].Seq != 5 || recs[3].Seq != 8 {
				t.Fatalf("after Prune the log holds %d records from seq %d, want 4 from 5", len(recs), recs[0].Seq)
			}
		})
	}
}

// TestAuditBatchRace appends from two stores on one database, each
// re-reading the tail on conflict: the log stays one chain.
func TestAuditBatchRace(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s1, _ := newStore(t, b)
			s2 := b.reopen(t, s1)
			const per = 20
			errc := make(chan error, 2)
			for _, s := range []*Store{s1, s2} {
				go func() {
					for done := 0; done < per; {
						var (
							seq  int64
							prev []byte
						)
						last, err := s.Audit().Last(ctx)
						switch {
						case err == nil:
							seq, prev = last.Seq, last.Hash
						case !errors.Is(err, ErrNotFound):
							errc <- err
							return
						}
						err = s.Audit().AppendBatch(ctx, chained(seq, prev, 5, t0))
						switch {
						case err == nil:
							done++
						case !errors.Is(err, ErrConflict):
							errc <- err
							return
						}
					}
					errc <- nil
				}()
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			recs, err := s1.Audit().List(ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2*per*5 {
				t.Fatalf("log holds %d records, want %d", len(recs), 2*per*5)
			}
			for i, r := range recs {
				if r.Seq != int64(i+1) {
					t.Fatalf("record %d has seq %d", i, r.Seq)
				}
				if i > 0 && string(r.PrevHash) != string(recs[i-1].Hash) {
					t.Fatalf("record %d does not chain to record %d", r.Seq, recs[i-1].Seq)
				}
			}
		})
	}
}
