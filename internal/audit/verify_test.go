package audit

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/testclock"
)

// Tampering statements, as someone with write access to the database
// would run them.
const (
	editData       = `UPDATE audit_log SET data = $1 WHERE seq = $2`
	editAll        = `UPDATE audit_log SET data = $1, prev_hash = $2, hash = $3 WHERE seq = $4`
	deleteOne      = `DELETE FROM audit_log WHERE seq = $1`
	deleteHead     = `DELETE FROM audit_log WHERE seq < $1`
	moveAway       = `UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= $1`
	moveBack       = `UPDATE audit_log SET seq = seq - 999999 WHERE seq > 1000000`
	moveOne        = `UPDATE audit_log SET seq = $1 WHERE seq = $2`
	insertRecord   = `INSERT INTO audit_log (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)`
	parkedSeq      = 1000000
	tamperedRecord = 10 // an event; checkpoints are at 21, 42 and 53
)

// writeLog writes 50 events with a checkpoint every 20 and closes the
// Writer: events are at seq 1-20, 22-41 and 43-52.
func writeLog(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	w := newWriter(t, st, Options{CheckpointEvery: 20})
	for i := range 50 {
		w.Record(ctx, sampleEvent(i, t0.Add(time.Duration(i)*time.Second)))
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func record(t *testing.T, st *store.Store, seq int64) *store.AuditRecord {
	t.Helper()
	recs, err := st.Audit().List(context.Background(), seq-1, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("reading record %d: %v", seq, err)
	}
	return recs[0]
}

func exec(t *testing.T, st *store.Store, query string, args ...any) {
	t.Helper()
	if _, err := st.DB().ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("tampering: %v", err)
	}
}

func TestVerifyTampering(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				tamper  func(t *testing.T, st *store.Store)
				key     func(t *testing.T, st *store.Store) ed25519.PublicKey
				want    ProblemKind
				wantSeq int64
			}{
				{
					name: "edited",
					tamper: func(t *testing.T, st *store.Store) {
						e := sampleEvent(9, t0.Add(9*time.Second))
						e.Principal = "mallory"
						exec(t, st, editData, Encode(tamperedRecord, e), tamperedRecord)
					},
					want: Edited, wantSeq: tamperedRecord,
				},
				{
					name: "edited and hashed again",
					tamper: func(t *testing.T, st *store.Store) {
						r := record(t, st, tamperedRecord)
						e := sampleEvent(9, t0.Add(9*time.Second))
						e.Principal = "mallory"
						data := Encode(tamperedRecord, e)
						exec(t, st, editAll, data, r.PrevHash, Hash(r.PrevHash, data), tamperedRecord)
					},
					want: Edited, wantSeq: tamperedRecord,
				},
				{
					name: "whole chain rewritten after an edit",
					tamper: func(t *testing.T, st *store.Store) {
						prev := record(t, st, tamperedRecord).PrevHash
						for seq := int64(tamperedRecord); seq <= 53; seq++ {
							r := record(t, st, seq)
							data := r.Data
							if seq == tamperedRecord {
								e := sampleEvent(9, t0.Add(9*time.Second))
								e.Principal = "mallory"
								data = Encode(seq, e)
							}
							h := Hash(prev, data)
							exec(t, st, editAll, data, prev, h, seq)
							prev = h
						}
					},
					want: BadCheckpoint, wantSeq: 21,
				},
				{
					name:   "deleted",
					tamper: func(t *testing.T, st *store.Store) { exec(t, st, deleteOne, tamperedRecord) },
					want:   Deleted, wantSeq: tamperedRecord,
				},
				{
					name:   "head deleted",
					tamper: func(t *testing.T, st *store.Store) { exec(t, st, deleteHead, tamperedRecord) },
					want:   Deleted, wantSeq: tamperedRecord,
				},
				{
					name: "inserted",
					tamper: func(t *testing.T, st *store.Store) {
						prev := record(t, st, tamperedRecord-1).Hash
						exec(t, st, moveAway, tamperedRecord)
						exec(t, st, moveBack)
						at := t0.Add(9500 * time.Millisecond)
						e := sampleEvent(99, at)
						data := Encode(tamperedRecord, e)
						exec(t, st, insertRecord, tamperedRecord, at.UnixMicro(), e.Kind, data, prev, Hash(prev, data))
					},
					want: Inserted, wantSeq: tamperedRecord,
				},
				{
					name: "reordered",
					tamper: func(t *testing.T, st *store.Store) {
						exec(t, st, moveOne, parkedSeq, tamperedRecord)
						exec(t, st, moveOne, tamperedRecord, tamperedRecord+1)
						exec(t, st, moveOne, tamperedRecord+1, parkedSeq)
					},
					want: Reordered, wantSeq: tamperedRecord,
				},
				{
					name:   "checkpoint signed by another key",
					tamper: func(t *testing.T, st *store.Store) {},
					key: func(t *testing.T, st *store.Store) ed25519.PublicKey {
						pub, _, err := ed25519.GenerateKey(nil)
						if err != nil {
							t.Fatal(err)
						}
						return pub
					},
					want: BadCheckpoint, wantSeq: 21,
				},
			} {
				t.Run(tc.name, func(t *testing.T) {
					st, _ := b.open(t)
					writeLog(t, st)
					pub := loadSigner(t, st).Public()
					if rep := verify(t, st, loadSigner(t, st)); !rep.OK() {
						t.Fatalf("Verify before tampering: %s", rep.Problem)
					}
					tc.tamper(t, st)
					if tc.key != nil {
						pub = tc.key(t, st)
					}
					rep, err := Verify(context.Background(), st.Audit(), pub)
					if err != nil {
						t.Fatal(err)
					}
					if rep.OK() {
						t.Fatalf("Verify found nothing wrong: %+v", rep)
					}
					if rep.Problem.Kind != tc.want || rep.Problem.Seq != tc.wantSeq {
						t.Fatalf("Verify: %s; want %s at seq %d", rep.Problem, tc.want, tc.wantSeq)
					}
				})
			}
		})
	}
}

// TestPrune prunes the older half of a log while a Writer keeps writing:
// the log still verifies from the signed anchor, and the Writer chains
// its next records after the prune checkpoint.
func TestPrune(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := b.open(t)
			clock := testclock.New(t0)
			w := newWriter(t, st, Options{CheckpointEvery: 20, Now: clock.Now})
			for i := range 100 {
				clock.Set(t0.Add(time.Duration(i) * time.Minute))
				w.Record(ctx, event.Event{Kind: "login", Outcome: event.Success, Principal: "alice"})
				if err := w.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			signer := loadSigner(t, st)
			// Events 0-19 are at seq 1-20, checkpoint 21, events 20-39 at
			// 22-41, checkpoint 42, event 50 at seq 53.
			n, err := Prune(ctx, st.Audit(), signer, t0.Add(50*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if n != 52 {
				t.Fatalf("Prune deleted %d records, want 52", n)
			}
			rep := verify(t, st, signer)
			if !rep.OK() || rep.First != 53 {
				t.Fatalf("Verify after Prune = %+v, %v; want a verified log from seq 53", rep, rep.Problem)
			}
			if n, err := Prune(ctx, st.Audit(), signer, t0.Add(50*time.Minute)); err != nil || n != 0 {
				t.Fatalf("Prune again = %d, %v; want nothing to delete", n, err)
			}

			w.Record(ctx, event.Event{Kind: "logout", Outcome: event.Success})
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if rep := verify(t, st, signer); !rep.OK() {
				t.Fatalf("Verify after writing past the prune checkpoint: %s", rep.Problem)
			}

			if _, err := Prune(ctx, st.Audit(), signer, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			rep = verify(t, st, signer)
			if !rep.OK() || rep.Records != 1 {
				t.Fatalf("Verify after pruning everything = %+v, %v; want the prune checkpoint alone", rep, rep.Problem)
			}

			w2 := newWriter(t, st, Options{})
			w2.Record(ctx, event.Event{Kind: "login", Outcome: event.Success})
			if err := w2.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if rep := verify(t, st, signer); !rep.OK() {
				t.Fatalf("Verify after writing past a full prune: %s", rep.Problem)
			}
			exec(t, st, deleteOne, rep.First)
			if rep := verify(t, st, signer); rep.OK() || rep.Problem.Kind != Deleted {
				t.Fatalf("Verify after deleting the prune checkpoint = %+v; want deleted", rep)
			}
		})
	}
}
