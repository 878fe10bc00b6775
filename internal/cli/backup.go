package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moatgw/moat/internal/backup"
	"github.com/moatgw/moat/internal/server"
)

const backupUsage = `Usage: moat backup <create|verify|restore> [flags]

  create --config FILE [--out FILE]                take an encrypted backup of the store now
  verify --config FILE [--json] BACKUP             restore BACKUP into a scratch database and check it
  restore --config FILE --yes-overwrite BACKUP     replace the store's contents with BACKUP

Flags come before BACKUP.

Encryption and decryption come from the config's backup section (see docs/backup.md).`

func runBackup(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, backupUsage)
		return ExitUsage
	}
	switch args[0] {
	case "create":
		return runBackupCreate(args[1:], stdio)
	case "verify":
		return runBackupVerify(args[1:], stdio)
	case "restore":
		return runBackupRestore(args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, backupUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Err, "moat backup: unknown subcommand %q\n\n%s\n", args[0], backupUsage)
	return ExitUsage
}

func runBackupCreate(args []string, stdio Stdio) int {
	fs := newFlags("backup create", "moat backup create --config FILE [--out FILE]",
		`Take a consistent backup of the store, encrypted with age to backup.recipients or
with backup.passphrase, into one file (mode 0600), then verify it when the config
can decrypt it (backup.identity or backup.passphrase).`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	out := fs.String("out", "", "backup file to write (default: a new file in backup.dir)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*path, stdio, "backup create")
	if cfg == nil {
		return code
	}
	crypto, err := server.BackupCrypto(cfg)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup create: %v\n", err)
		return ExitUsage
	}
	ctx := context.Background()
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "backup create")
	if st == nil {
		return code
	}
	defer st.Close()
	file := *out
	if file == "" {
		file = filepath.Join(crypto.Dir, backup.FileName(time.Now()))
		if err := os.MkdirAll(crypto.Dir, 0o700); err != nil {
			fmt.Fprintf(stdio.Err, "moat backup create: %v\n", err)
			return ExitFailure
		}
	}
	m, err := backup.CreateFile(ctx, st.Store, file, crypto.Encryption)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup create: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "wrote %s: schema version %d, %d rows in %d tables\n", file, m.SchemaVersion, m.TotalRows(), len(m.Tables))
	if crypto.CanVerify {
		return verifyFile(ctx, file, crypto, stdio, "backup create")
	}
	fmt.Fprintln(stdio.Out, "not verified: set backup.identity to let moat verify backups, or run moat backup verify where the identity is")
	return ExitOK
}

func runBackupVerify(args []string, stdio Stdio) int {
	fs := newFlags("backup verify", "moat backup verify --config FILE [--json] BACKUP",
		`Decrypt BACKUP, restore it into a scratch database (a temporary SQLite file, or a
temporary schema for a PostgreSQL backup), run integrity checks and compare every
table's rows and checksum with the backup's manifest. Exits 1 when it fails.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stdio.Err, "moat backup verify: want exactly one backup file\nhint: moat backup verify --config moat.yaml moat-backup-20260101T000000Z.age")
		return ExitUsage
	}
	cfg, code := loadConfig(*path, stdio, "backup verify")
	if cfg == nil {
		return code
	}
	crypto, err := server.BackupCrypto(cfg)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup verify: %v\n", err)
		return ExitUsage
	}
	if *asJSON {
		crypto.JSON = true
	}
	return verifyFile(context.Background(), fs.Arg(0), crypto, stdio, "backup verify")
}

func verifyFile(ctx context.Context, file string, crypto *server.BackupSettings, stdio Stdio, cmd string) int {
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return ExitFailure
	}
	defer f.Close()
	rep, err := backup.Verify(ctx, f, crypto.Decryption, crypto.Scratch)
	if crypto.JSON && rep != nil {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdio.Out, string(b))
	} else if rep != nil {
		for _, t := range rep.Tables {
			mark := "ok"
			if !t.ChecksumOK || t.Rows != t.Restored {
				mark = "MISMATCH"
			}
			fmt.Fprintf(stdio.Out, "  %-14s %6d rows  %s\n", t.Name, t.Rows, mark)
		}
		for _, n := range rep.Notes {
			fmt.Fprintf(stdio.Out, "  note: %s\n", n)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(stdio.Out, "  problem: %s\n", p)
		}
	}
	if err == nil && rep != nil {
		err = rep.Err()
	}
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat %s: %s failed verification: %v\n", cmd, file, err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "verified %s: restored into a scratch %s database in %s, every table matches\n", file, rep.Scratch, rep.Duration.Round(time.Millisecond))
	return ExitOK
}

func runBackupRestore(args []string, stdio Stdio) int {
	fs := newFlags("backup restore", "moat backup restore --config FILE --yes-overwrite BACKUP",
		`Replace the contents of the configured store with BACKUP. Stop moat serve first.

The store is first migrated to this moat's schema (with database.migrate_url when
set, else database.url); BACKUP must be at that schema version. Then the command
checks that keys.master_key opens the restored key ring: the backup's sealed
values open only with the master key they were written under. If that check
fails, the store has already been replaced: set keys.master_key to that key.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	yes := fs.Bool("yes-overwrite", false, "confirm that the store's current contents are replaced")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stdio.Err, "moat backup restore: want exactly one backup file")
		return ExitUsage
	}
	if !*yes {
		fmt.Fprintln(stdio.Err, "moat backup restore: this replaces everything in the store; add --yes-overwrite to confirm\nhint: run moat backup verify first")
		return ExitUsage
	}
	cfg, code := loadConfig(*path, stdio, "backup restore")
	if cfg == nil {
		return code
	}
	crypto, err := server.BackupCrypto(cfg)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup restore: %v\n", err)
		return ExitUsage
	}
	ctx := context.Background()
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup restore: %v\n", err)
		return ExitFailure
	}
	defer f.Close()
	// The store is opened without the key ring: its current keys are about
	// to be replaced by the backup's.
	st, code := openStore(ctx, *path, true, stdio, "backup restore")
	if st == nil {
		return code
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		fmt.Fprintf(stdio.Err, "moat backup restore: migrating the store: %v\n", err)
		return ExitFailure
	}
	m, err := backup.Restore(ctx, st, f, crypto.Decryption, true)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat backup restore: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "restored %d rows in %d tables from %s (taken %s)\n", m.TotalRows(), len(m.Tables), fs.Arg(0), m.CreatedAt.UTC().Format(time.RFC3339))
	// The restored secrets open only with the master key their data keys
	// are wrapped by: check that it is the configured one.
	check, code := openState(ctx, cfg, server.StateOptions{}, stdio, "backup restore")
	if check == nil {
		fmt.Fprintln(stdio.Err, "hint: the backup's data keys need the master key they were written under; set keys.master_key to it")
		return code
	}
	check.Close()
	fmt.Fprintln(stdio.Out, "the configured master key opens the restored key ring")
	return ExitOK
}
