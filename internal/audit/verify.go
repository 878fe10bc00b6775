package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// ProblemKind names what is wrong with the log.
type ProblemKind string

// Problem kinds, as Verify names them.
const (
	// Edited: a record's content does not match its hash, its columns
	// do not match its content, or it is not the record the next one was
	// chained to (edited and hashed again, or replaced).
	Edited ProblemKind = "edited"
	// Deleted: sequence numbers are missing, or the head of the log is
	// gone without a signed prune checkpoint.
	Deleted ProblemKind = "deleted"
	// Inserted: records were added and the ones after renumbered.
	Inserted ProblemKind = "inserted"
	// Reordered: records were swapped.
	Reordered ProblemKind = "reordered"
	// BadCheckpoint: a checkpoint's signature does not verify with the
	// key, or it signs a hash the chain does not have.
	BadCheckpoint ProblemKind = "bad checkpoint"
)

// Problem is the first thing Verify found wrong.
type Problem struct {
	Kind   ProblemKind
	Seq    int64 // the record where it shows
	Detail string
}

// String describes the problem in one line.
func (p *Problem) String() string {
	return fmt.Sprintf("%s at seq %d: %s", p.Kind, p.Seq, p.Detail)
}

// Report is the result of Verify.
type Report struct {
	Records     int64 // records read
	First, Last int64 // their sequence numbers, 0 for an empty log
	Checkpoints int   // valid checkpoints read
	// SignedThrough is the last record a valid checkpoint covers. The
	// records after it are chained but not signed yet: someone able to
	// write the database could rewrite them unnoticed.
	SignedThrough int64
	Problem       *Problem // nil when the log verifies
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.Problem == nil }

// verifyPage is the number of records Verify reads at a time.
const verifyPage = 1000

// reader walks the log in pages, with a look-ahead of one record.
type reader struct {
	st    store.Audit
	after int64
	buf   []*store.AuditRecord
	end   bool
}

func (rd *reader) fill(ctx context.Context) error {
	if len(rd.buf) > 1 || rd.end {
		return nil
	}
	page, err := rd.st.List(ctx, rd.after, verifyPage)
	if err != nil {
		return err
	}
	if len(page) < verifyPage {
		rd.end = true
	}
	if len(page) > 0 {
		rd.after = page[len(page)-1].Seq
	}
	rd.buf = append(rd.buf, page...)
	return nil
}

// next returns the next record and the one after it, nil at the end.
func (rd *reader) next(ctx context.Context) (cur, peek *store.AuditRecord, err error) {
	if err := rd.fill(ctx); err != nil {
		return nil, nil, err
	}
	if len(rd.buf) == 0 {
		return nil, nil, nil
	}
	cur, rd.buf = rd.buf[0], rd.buf[1:]
	if err := rd.fill(ctx); err != nil {
		return nil, nil, err
	}
	if len(rd.buf) > 0 {
		peek = rd.buf[0]
	}
	return cur, peek, nil
}

// Verify reads the whole log and checks that every record is the one
// written there: its hash, its sequence number, its link to the record
// before, and every checkpoint's signature with pub. It reports the first
// problem found. An error means the log could not be read; a log that
// fails verification is a Report with a Problem.
//
// A log whose first record is not the first ever written must begin at a
// record a valid prune checkpoint anchors (see Prune). Records deleted
// from the end of the log, or a log emptied, cannot be told from a log
// never written: compare Report.Last with a value kept elsewhere.
func Verify(ctx context.Context, st store.Audit, pub ed25519.PublicKey) (*Report, error) {
	rep := &Report{}
	rd := &reader{st: st}
	var (
		prev      *store.AuditRecord
		firstPrev []byte
		anchored  bool
	)
	for {
		r, peek, err := rd.next(ctx)
		if err != nil {
			return nil, fmt.Errorf("verifying audit log: %w", err)
		}
		if r == nil {
			break
		}
		if prev == nil {
			rep.First, firstPrev = r.Seq, r.PrevHash
			anchored = r.Seq == 1 && len(r.PrevHash) == 0
		}
		rep.Records++
		rep.Last = r.Seq
		c, p := checkRecord(prev, r, peek)
		if p == nil && c != nil {
			if p = checkCheckpoint(c, r, pub); p == nil {
				rep.Checkpoints++
				rep.SignedThrough = r.Seq
				if c.PrunedBefore == rep.First && bytes.Equal(c.Anchor, firstPrev) {
					anchored = true
				}
			}
		}
		if p != nil {
			rep.Problem = p
			return rep, nil
		}
		prev = r
	}
	if rep.Records > 0 && !anchored {
		rep.Problem = &Problem{Kind: Deleted, Seq: rep.First,
			Detail: fmt.Sprintf("the log starts at seq %d and no signed prune checkpoint anchors it", rep.First)}
	}
	return rep, nil
}

// dataSeq is the sequence number a record was written with, -1 if it
// cannot be read.
func dataSeq(r *store.AuditRecord) int64 {
	h, _, err := parseHeader(r.Data)
	if err != nil {
		return -1
	}
	return *h.Sequence
}

// checkRecord checks r, which follows prev (nil for the first record) and
// precedes peek (nil for the last). It returns r's checkpoint, if it is
// one, or the problem found.
func checkRecord(prev, r, peek *store.AuditRecord) (*Checkpoint, *Problem) {
	bad := func(k ProblemKind, seq int64, format string, args ...any) (*Checkpoint, *Problem) {
		return nil, &Problem{Kind: k, Seq: seq, Detail: fmt.Sprintf(format, args...)}
	}
	if prev != nil && r.Seq != prev.Seq+1 {
		return bad(Deleted, prev.Seq+1, "records %d to %d are missing", prev.Seq+1, r.Seq-1)
	}
	if !bytes.Equal(Hash(r.PrevHash, r.Data), r.Hash) {
		return bad(Edited, r.Seq, "the record does not match its hash")
	}
	h, at, err := parseHeader(r.Data)
	if err != nil {
		return bad(Edited, r.Seq, "the record cannot be read: %v", err)
	}
	switch d := *h.Sequence; {
	case d < r.Seq:
		return bad(Inserted, d, "records %d to %d were inserted: the record at seq %d was written as seq %d", d, r.Seq-1, r.Seq, d)
	case d > r.Seq && peek != nil && dataSeq(peek) == r.Seq:
		return bad(Reordered, r.Seq, "the record at seq %d was written as seq %d, and the one at seq %d as seq %d", r.Seq, d, peek.Seq, r.Seq)
	case d > r.Seq:
		return bad(Deleted, r.Seq, "the record at seq %d was written as seq %d: records were deleted and the rest renumbered", r.Seq, d)
	}
	if r.Kind != h.Action || !r.Time.Equal(at) {
		return bad(Edited, r.Seq, "the kind or time column differs from the record")
	}
	if prev != nil && !bytes.Equal(r.PrevHash, prev.Hash) {
		return bad(Edited, prev.Seq, "record %d is not the record %d was chained to: it was replaced, or edited and hashed again", prev.Seq, r.Seq)
	}
	if h.Action != KindCheckpoint {
		return nil, nil
	}
	c, err := h.checkpoint(at)
	if err != nil {
		return bad(BadCheckpoint, r.Seq, "%v", err)
	}
	return c, nil
}

// checkCheckpoint checks that c, read from r, is signed by pub and signs
// the record r follows.
func checkCheckpoint(c *Checkpoint, r *store.AuditRecord, pub ed25519.PublicKey) *Problem {
	if !c.Verify(pub) {
		return &Problem{Kind: BadCheckpoint, Seq: r.Seq, Detail: fmt.Sprintf("the signature (key %s) does not verify with key %s", c.KeyID, KeyID(pub))}
	}
	if c.Covers != r.Seq-1 || !bytes.Equal(c.Hash, r.PrevHash) {
		return &Problem{Kind: BadCheckpoint, Seq: r.Seq, Detail: "the checkpoint signs a record the chain does not have: the log before it was rewritten"}
	}
	return nil
}

// pruneAttempts bounds how often Prune starts again after losing a race
// with another appender.
const pruneAttempts = 20

// Prune deletes the records older than before, from the first record to
// the last one before the first record at or after before, and appends a
// signed checkpoint that anchors the records kept: it states the first
// sequence number kept and the hash the record before it had, so Verify
// starts from a trusted point. It returns the number of records deleted.
// Records written at the same time by a Writer are not lost: whoever
// appends second chains again after the other.
func Prune(ctx context.Context, st store.Audit, s *Signer, before time.Time) (int64, error) {
	for range pruneAttempts {
		tail, err := st.Last(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("pruning audit log: %w", err)
		}
		head, err := st.List(ctx, 0, 1)
		if err != nil {
			return 0, fmt.Errorf("pruning audit log: %w", err)
		}
		if len(head) == 0 {
			continue
		}
		keep, anchor := tail.Seq+1, tail.Hash
		switch r, err := st.FirstAt(ctx, before); {
		case err == nil:
			keep, anchor = r.Seq, r.PrevHash
		case !errors.Is(err, store.ErrNotFound):
			return 0, fmt.Errorf("pruning audit log: %w", err)
		}
		if keep <= head[0].Seq {
			return 0, nil
		}
		cp := s.record(tail.Seq+1, time.Now(), tail.Hash, keep, anchor)
		n, err := st.Prune(ctx, keep, cp)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("pruning audit log: %w", err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("pruning audit log: lost the race for the end of the log %d times", pruneAttempts)
}
