package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/moatgw/moat/internal/store"
)

// SchedulerOptions configures a Scheduler.
type SchedulerOptions struct {
	Store *store.Store
	// Dir receives the backup files (made with mode 0700 if missing).
	Dir string
	// Interval is the time between backups.
	Interval time.Duration
	// Retention is the number of backup files kept in Dir.
	Retention int
	// Encryption of each backup; Decryption verifies it. With a
	// passphrase and no Decryption, the passphrase is used for both.
	Encryption Encryption
	Decryption Decryption
	// Scratch is where each backup is verified; see ScratchOptions.
	Scratch ScratchOptions
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per run; the caller scopes it (component
	// "backup"). nil discards.
	Logger *slog.Logger
	// OnResult, if set, receives the result of every run, from the
	// goroutine that runs it.
	OnResult func(Result)
}

// Result is the outcome of one scheduled backup.
type Result struct {
	Time     time.Time // when the run started, by the scheduler's clock
	File     string    // path of the backup file; empty if none was written
	Size     int64
	SHA256   string // hex SHA-256 of the file
	Manifest *Manifest
	Report   *Report // the verification; nil if it could not run
	// Verified is true when the backup was written and verified.
	Verified bool
	Deleted  []string // files removed by retention
	// Err says why the backup, its verification or, when Verified is
	// true, retention failed.
	Err error
}

// Scheduler takes a verified backup every interval and keeps the newest
// few. Its methods are safe for concurrent use; runs never overlap.
type Scheduler struct {
	o      SchedulerOptions
	logger *slog.Logger
	mu     sync.Mutex // held for a run
}

// fileRE matches the names of the files a Scheduler writes, and no other:
// retention never deletes anything else.
var fileRE = regexp.MustCompile(`^moat-backup-[0-9]{8}T[0-9]{6}Z\.age$`)

const fileTimeLayout = "20060102T150405Z"

// FileName is the name of a scheduled backup taken at t.
func FileName(t time.Time) string {
	return "moat-backup-" + t.UTC().Format(fileTimeLayout) + ".age"
}

// NewScheduler checks o and returns a Scheduler.
func NewScheduler(o SchedulerOptions) (*Scheduler, error) {
	if o.Decryption.Passphrase == "" && len(o.Decryption.Identities) == 0 {
		o.Decryption.Passphrase = o.Encryption.Passphrase
	}
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no backup directory"))
	}
	if o.Interval <= 0 {
		errs = append(errs, errors.New("the interval must be positive"))
	}
	if o.Retention < 1 {
		errs = append(errs, errors.New("retention must keep at least one backup"))
	}
	if _, err := o.Encryption.recipients(); err != nil {
		errs = append(errs, err)
	}
	if ids, err := o.Decryption.identities(); err != nil {
		errs = append(errs, fmt.Errorf("verifying backups: %w", err))
	} else if len(o.Encryption.Recipients) > 0 && !matchesRecipient(ids, o.Encryption.Recipients) {
		errs = append(errs, errors.New("verifying backups: no identity matches a recipient, so no backup could be verified"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("backup scheduler: %w", errors.Join(errs...))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{o: o, logger: logger}, nil
}

// Run takes a backup every Interval until ctx is done, then returns nil.
// The first backup is taken at once, unless the store records a verified
// backup younger than Interval (taken before a restart, or by another
// instance sharing the database): then Run waits until it is Interval old.
// A failed run is retried at the next interval, not sooner.
func (s *Scheduler) Run(ctx context.Context) error {
	next := s.firstRun(ctx)
	for {
		if wait := next.Sub(s.o.Now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		res, _ := s.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		next = res.Time.Add(s.o.Interval)
	}
}

// firstRun is when the first backup is due.
func (s *Scheduler) firstRun(ctx context.Context) time.Time {
	now := s.o.Now()
	recs, err := s.o.Store.Backups().List(ctx)
	if err != nil {
		s.logger.Warn("reading the backup records; taking a backup now", "error", err)
		return now
	}
	// A record from the future (a clock that was wrong) is ignored: it
	// would put the next backup off for as long.
	var last time.Time
	for _, r := range recs {
		if r.VerifyOK && r.CreatedAt.After(last) && !r.CreatedAt.After(now) {
			last = r.CreatedAt
		}
	}
	if due := last.Add(s.o.Interval); !last.IsZero() && due.After(now) {
		s.logger.Info("next backup scheduled", "at", due.UTC().Format(time.RFC3339), "last", last.UTC().Format(time.RFC3339))
		return due
	}
	return now
}

// RunOnce takes one backup into Dir, verifies it, records it in the
// store's backup records, applies retention when it verified, and reports
// the result to OnResult. The error is Result.Err. A run cut short by ctx
// is neither recorded nor reported.
func (s *Scheduler) RunOnce(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.runOnce(ctx)
	if res.Err != nil && ctx.Err() != nil {
		// Shutting down: not a failure to report.
		s.logger.Info("backup interrupted", "file", res.File, "error", res.Err)
		return res, res.Err
	}
	switch {
	case res.Verified:
		s.logger.Info("backup taken and verified", "file", res.File, "size", res.Size,
			"rows", res.Manifest.TotalRows(), "deleted", len(res.Deleted))
		if res.Err != nil {
			s.logger.Error("backup retention failed", "error", res.Err)
		}
	default:
		s.logger.Error("backup failed", "file", res.File, "error", res.Err)
	}
	if s.o.OnResult != nil {
		s.o.OnResult(res)
	}
	return res, res.Err
}

func (s *Scheduler) runOnce(ctx context.Context) Result {
	now := s.o.Now()
	res := Result{Time: now}
	rec := &store.BackupRecord{ID: randomHex(16), CreatedAt: now.UTC()}
	res.Err = s.write(ctx, &res)
	rec.File, rec.Size, rec.SHA256 = res.File, res.Size, res.SHA256
	if res.Err != nil {
		rec.Error = res.Err.Error()
		s.record(ctx, rec, false)
		return res
	}
	s.record(ctx, rec, false)

	res.Err = s.verify(ctx, &res)
	rec.VerifiedAt = s.o.Now().UTC()
	rec.VerifyOK = res.Err == nil
	if res.Err != nil {
		rec.Error = res.Err.Error()
	}
	s.record(ctx, rec, true)
	if res.Err != nil {
		// Keep every file: retention after a failure could delete the
		// last backup known to be good.
		return res
	}
	res.Verified = true
	res.Deleted, res.Err = prune(s.o.Dir, s.o.Retention)
	return res
}

// write takes the backup into its file.
func (s *Scheduler) write(ctx context.Context, res *Result) error {
	if err := os.MkdirAll(s.o.Dir, 0o700); err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	path := filepath.Join(s.o.Dir, FileName(res.Time))
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup file %s already exists", path)
	}
	m, info, err := createFile(ctx, s.o.Store, path, s.o.Encryption, res.Time)
	if err != nil {
		return err
	}
	res.File, res.Size, res.SHA256, res.Manifest = path, info.Size, info.SHA256, m
	return nil
}

// verify verifies the file just written.
func (s *Scheduler) verify(ctx context.Context, res *Result) error {
	f, err := os.Open(res.File)
	if err != nil {
		return fmt.Errorf("verifying backup: %w", err)
	}
	defer f.Close()
	rep, err := Verify(ctx, f, s.o.Decryption, s.o.Scratch)
	if err != nil {
		return err
	}
	res.Report = rep
	if err := rep.Err(); err != nil {
		return fmt.Errorf("backup %s did not verify: %w", res.File, err)
	}
	return nil
}

// record saves rec in the store, creating it the first time.
func (s *Scheduler) record(ctx context.Context, rec *store.BackupRecord, update bool) {
	if ctx.Err() != nil {
		return
	}
	var err error
	if update {
		err = s.o.Store.Backups().Update(ctx, rec)
	} else {
		err = s.o.Store.Backups().Create(ctx, rec)
	}
	if err != nil {
		s.logger.Warn("recording the backup in the store", "file", rec.File, "error", err)
	}
}

// prune deletes the oldest backup files in dir beyond the newest keep.
// Only regular files named as the Scheduler names them are considered.
func prune(dir string, keep int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("applying retention: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && fileRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	// The names sort by time.
	slices.Sort(names)
	var deleted []string
	var errs []error
	for _, n := range names[:max(0, len(names)-keep)] {
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, p)
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("applying retention: %w", errors.Join(errs...))
	}
	return deleted, nil
}

// matchesRecipient reports whether one of ids is the identity of one of
// recipients.
func matchesRecipient(ids []age.Identity, recipients []string) bool {
	for _, id := range ids {
		var r string
		switch id := id.(type) {
		case *age.X25519Identity:
			r = id.Recipient().String()
		case *age.HybridIdentity:
			r = id.Recipient().String()
		default:
			continue
		}
		for _, want := range recipients {
			if strings.TrimSpace(want) == r {
				return true
			}
		}
	}
	return false
}
