package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/moatgw/moat/internal/testclock"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// backupFiles lists the scheduled backup files in dir, oldest first.
func backupFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && fileRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSchedulerRetention(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	dir := t.TempDir()
	foreign := []string{"notes.txt", "moat-backup-latest.age", "moat-backup-20000101T000000Z.age.tmp", "moat-backup-20000101T000000Z.age.bak"}
	for _, n := range foreign {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory with a backup's name is not a backup file either.
	if err := os.Mkdir(filepath.Join(dir, "moat-backup-19990101T000000Z.age"), 0o700); err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	start := clock.Now()
	var results []Result
	sched, err := NewScheduler(SchedulerOptions{
		Store: s, Dir: dir, Interval: time.Hour, Retention: 2,
		Encryption: enc, Decryption: dec, Scratch: ScratchOptions{TempDir: t.TempDir()},
		Now: clock.Now, Logger: testLogger(t),
		OnResult: func(r Result) { results = append(results, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		res, err := sched.RunOnce(t.Context())
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !res.Verified || res.Report == nil || !res.Report.OK || res.Manifest == nil {
			t.Fatalf("run %d: %+v", i, res)
		}
		if want := filepath.Join(dir, FileName(clock.Now())); res.File != want {
			t.Errorf("run %d: file %s, want %s", i, res.File, want)
		}
		wantDeleted := 0
		if i >= 2 {
			wantDeleted = 1
		}
		if len(res.Deleted) != wantDeleted {
			t.Errorf("run %d: deleted %q, want %d file(s)", i, res.Deleted, wantDeleted)
		}
		clock.Advance(time.Hour)
	}

	if len(results) != 4 {
		t.Fatalf("OnResult called %d times, want 4", len(results))
	}
	want := []string{FileName(start.Add(2 * time.Hour)), FileName(start.Add(3 * time.Hour))}
	if got := backupFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("files kept = %q, want %q", got, want)
	}
	for _, n := range append(foreign, "moat-backup-19990101T000000Z.age") {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("retention touched %s: %v", n, err)
		}
	}
	if fi, err := os.Stat(results[3].File); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != results[3].Size {
		t.Errorf("newest file: %v, %v (size %d)", fi, err, results[3].Size)
	}

	recs, err := s.Backups().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]*store.BackupRecord{}
	for _, r := range recs {
		byFile[r.File] = r
	}
	for i, res := range results {
		r := byFile[res.File]
		if r == nil {
			t.Fatalf("no record of %s in %+v", res.File, recs)
		}
		if !r.VerifyOK || r.Error != "" || r.VerifiedAt.IsZero() || r.Size != res.Size || r.SHA256 != res.SHA256 || !r.CreatedAt.Equal(res.Time) {
			t.Errorf("record %d = %+v, result %+v", i, r, res)
		}
	}
	if got := fileSHA256(t, results[3].File); got != results[3].SHA256 {
		t.Errorf("file SHA-256 %s, recorded %s", got, results[3].SHA256)
	}
}

func TestSchedulerFailures(t *testing.T) {
	s := newSQLite(t)
	populate(t, s, "")
	enc, dec := x25519Keys(t)
	_, wrongDec := x25519Keys(t)
	clock := testclock.New(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))

	t.Run("verification fails", func(t *testing.T) {
		dir := t.TempDir()
		old := []string{FileName(clock.Now().Add(-2 * time.Hour)), FileName(clock.Now().Add(-time.Hour))}
		for _, n := range old {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("an older backup"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var got []Result
		sched, err := NewScheduler(SchedulerOptions{
			Store: s, Dir: dir, Interval: time.Hour, Retention: 1,
			Encryption: enc, Decryption: dec, Scratch: ScratchOptions{TempDir: t.TempDir()},
			Now: clock.Now, OnResult: func(r Result) { got = append(got, r) },
		})
		if err != nil {
			t.Fatal(err)
		}
		// NewScheduler refuses an identity that matches no recipient;
		// swap one in afterwards, as a key mix-up would.
		sched.o.Decryption = wrongDec
		res, err := sched.RunOnce(t.Context())
		if !errors.Is(err, ErrWrongKey) || res.Verified || res.File == "" {
			t.Fatalf("RunOnce = %+v, %v; want a file that fails with ErrWrongKey", res, err)
		}
		if len(got) != 1 || !errors.Is(got[0].Err, ErrWrongKey) {
			t.Errorf("OnResult got %+v", got)
		}
		// Nothing was deleted: the older backups may be the good ones.
		if files := backupFiles(t, dir); len(files) != 3 {
			t.Errorf("files = %q, want all 3 kept", files)
		}
		rec := findRecord(t, s, res.File)
		if rec.VerifyOK || !strings.Contains(rec.Error, "cannot decrypt") || rec.VerifiedAt.IsZero() || rec.Size == 0 {
			t.Errorf("record = %+v", rec)
		}
		clock.Advance(time.Second)
	})

	t.Run("verification cannot run", func(t *testing.T) {
		notDir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(notDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		sched, err := NewScheduler(SchedulerOptions{
			Store: s, Dir: dir, Interval: time.Hour, Retention: 1,
			Encryption: enc, Decryption: dec, Scratch: ScratchOptions{TempDir: notDir}, Now: clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		res, err := sched.RunOnce(t.Context())
		if err == nil || res.Verified || res.Report != nil || res.File == "" {
			t.Fatalf("RunOnce = %+v, %v", res, err)
		}
		if rec := findRecord(t, s, res.File); rec.VerifyOK || !strings.Contains(rec.Error, "scratch") {
			t.Errorf("record = %+v", rec)
		}
		clock.Advance(time.Second)
	})

	t.Run("writing fails", func(t *testing.T) {
		notDir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(notDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		sched, err := NewScheduler(SchedulerOptions{
			Store: s, Dir: notDir, Interval: time.Hour, Retention: 1,
			Encryption: enc, Decryption: dec, Now: clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		res, err := sched.RunOnce(t.Context())
		if err == nil || res.File != "" || res.Verified {
			t.Fatalf("RunOnce = %+v, %v", res, err)
		}
		recs, err := s.Backups().List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs {
			found = found || r.CreatedAt.Equal(res.Time) && r.File == "" && strings.Contains(r.Error, "backup directory")
		}
		if !found {
			t.Errorf("no record of the failure in %+v", recs)
		}
	})

	t.Run("cut short by shutdown", func(t *testing.T) {
		before, err := s.Backups().List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		called := false
		sched, err := NewScheduler(SchedulerOptions{
			Store: s, Dir: t.TempDir(), Interval: time.Hour, Retention: 1,
			Encryption: enc, Decryption: dec, Now: clock.Now, OnResult: func(Result) { called = true },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if res, err := sched.RunOnce(ctx); err == nil || res.Verified {
			t.Fatalf("RunOnce = %+v, %v", res, err)
		}
		if called {
			t.Error("an interrupted run was reported as a failure")
		}
		after, err := s.Backups().List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%d records before, %d after an interrupted run", len(before), len(after))
		}
		clock.Advance(time.Second)
	})

	t.Run("bad options", func(t *testing.T) {
		_, err := NewScheduler(SchedulerOptions{Encryption: enc})
		for _, want := range []string{"no store", "no backup directory", "interval", "retention", "no age identity"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to mention %q", err, want)
			}
		}
		_, err = NewScheduler(SchedulerOptions{Store: s, Dir: "d", Interval: time.Hour, Retention: 1, Encryption: enc, Decryption: wrongDec})
		if err == nil || !strings.Contains(err.Error(), "no identity matches a recipient") {
			t.Errorf("err = %v, want a mismatched identity refused", err)
		}
		_, err = NewScheduler(SchedulerOptions{Store: s, Dir: "d", Interval: time.Hour, Retention: 1, Encryption: Encryption{Recipients: enc.Recipients, Passphrase: "p"}, Decryption: dec})
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Errorf("err = %v, want recipients and passphrase refused", err)
		}
	})
}

func findRecord(t *testing.T, s *store.Store, file string) *store.BackupRecord {
	t.Helper()
	recs, err := s.Backups().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.File == file {
			return r
		}
	}
	t.Fatalf("no record of %s", file)
	return nil
}

func TestSchedulerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSQLite(t)
		populate(t, s, "")
		// No Decryption: the scheduler verifies with the passphrase.
		enc, _ := passphraseKeys("scheduled")
		// A verified backup taken 30 minutes ago, before a restart. (The
		// one populate records is dated 2025, in this bubble's future: it
		// must be ignored.)
		last := time.Now().Add(-30 * time.Minute)
		if err := s.Backups().Create(t.Context(), &store.BackupRecord{CreatedAt: last, File: "x", VerifiedAt: last, VerifyOK: true}); err != nil {
			t.Fatal(err)
		}
		var (
			mu      sync.Mutex
			results []Result
		)
		count := func() int { mu.Lock(); defer mu.Unlock(); return len(results) }
		sched, err := NewScheduler(SchedulerOptions{
			Store: s, Dir: t.TempDir(), Interval: time.Hour, Retention: 2,
			Encryption: enc, Scratch: ScratchOptions{TempDir: t.TempDir()},
			Logger: testLogger(t),
			OnResult: func(r Result) {
				mu.Lock()
				defer mu.Unlock()
				results = append(results, r)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- sched.Run(ctx) }()

		time.Sleep(29 * time.Minute)
		synctest.Wait()
		if n := count(); n != 0 {
			t.Fatalf("%d backups within the interval of the last one", n)
		}
		time.Sleep(2*time.Minute + 3*time.Hour)
		synctest.Wait()
		if n := count(); n != 4 {
			t.Fatalf("%d backups after 3h31m, want 4", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for i, r := range results {
			if !r.Verified || r.Err != nil {
				t.Errorf("backup %d: %+v", i, r)
			}
			if want := last.Add(time.Duration(i+1) * time.Hour); !r.Time.Equal(want) {
				t.Errorf("backup %d at %v, want %v", i, r.Time, want)
			}
		}
		if len(results[3].Deleted) != 1 {
			t.Errorf("last run deleted %q, want one file", results[3].Deleted)
		}
	})
}
