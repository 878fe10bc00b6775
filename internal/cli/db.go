package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/moatgw/moat/internal/dbcheck"
	"github.com/moatgw/moat/internal/server"
	"github.com/moatgw/moat/internal/store"
)

const dbUsage = `Usage: moat db <status|migrate|check> --config FILE

  status                  list the schema migrations and whether each is applied
  migrate [--dry-run]     apply pending migrations (with database.migrate_url when set)
  check                   check the database connection for least privilege (see docs/database.md)`

func runDB(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, dbUsage)
		return ExitUsage
	}
	switch args[0] {
	case "status":
		return runDBStatus(args[1:], stdio)
	case "migrate":
		return runDBMigrate(args[1:], stdio)
	case "check":
		return runDBCheck(args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, dbUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Err, "moat db: unknown subcommand %q\n\n%s\n", args[0], dbUsage)
	return ExitUsage
}

// openStore opens the store without the key ring: migrations and checks do
// not read secrets.
func openStore(ctx context.Context, path string, migrate bool, stdio Stdio, cmd string) (*store.Store, int) {
	cfg, code := loadConfig(path, stdio, cmd)
	if cfg == nil {
		return nil, code
	}
	url, err := server.DatabaseURL(cfg, migrate)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return nil, ExitUsage
	}
	st, err := store.Open(ctx, store.Options{URL: url, DataDir: cfg.DataDir, Logger: quietLogger(stdio)})
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return nil, ExitFailure
	}
	return st, -1
}

func runDBStatus(args []string, stdio Stdio) int {
	fs := newFlags("db status", "moat db status --config FILE", "List the schema migrations Moat knows and whether each is applied to the database.", stdio)
	path := fs.String("config", "", "path to the config file (required)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	ctx := context.Background()
	st, code := openStore(ctx, *path, false, stdio, "db status")
	if st == nil {
		return code
	}
	defer st.Close()
	status, err := st.Status(ctx)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat db status: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "backend %s\n", st.Backend())
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED")
	for _, m := range status {
		state, at := "pending", ""
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
	}
	_ = tw.Flush()
	return ExitOK
}

func runDBMigrate(args []string, stdio Stdio) int {
	fs := newFlags("db migrate", "moat db migrate --config FILE [--dry-run]",
		`Apply pending schema migrations, under a lock so that several instances migrate
once. Uses database.migrate_url when it is set (a role that owns the tables), else
database.url. moat serve migrates at start only when migrations are pending, and
with database.url: a least-privileged runtime role cannot, so run this command
before starting a new moat.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	dry := fs.Bool("dry-run", false, "list what would be applied, change nothing")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	ctx := context.Background()
	st, code := openStore(ctx, *path, true, stdio, "db migrate")
	if st == nil {
		return code
	}
	defer st.Close()
	if *dry {
		pending, err := st.Pending(ctx)
		if err != nil {
			fmt.Fprintf(stdio.Err, "moat db migrate: %v\n", err)
			return ExitFailure
		}
		if len(pending) == 0 {
			fmt.Fprintln(stdio.Out, "nothing to apply: the schema is current")
		}
		for _, m := range pending {
			fmt.Fprintf(stdio.Out, "would apply %d %s\n", m.Version, m.Name)
		}
		return ExitOK
	}
	applied, err := st.Migrate(ctx)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat db migrate: %v\n", err)
		return ExitFailure
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdio.Out, "nothing to apply: the schema is current")
	}
	for _, m := range applied {
		fmt.Fprintf(stdio.Out, "applied %d %s\n", m.Version, m.Name)
	}
	return ExitOK
}

func runDBCheck(args []string, stdio Stdio) int {
	fs := newFlags("db check", "moat db check --config FILE",
		`Check that Moat's database connection has no more privilege than it needs: for
PostgreSQL, the role's attributes and ownership, and TLS to a remote server; for
SQLite, the file and directory permissions. Prints each finding and exits 1 when
any is an error.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*path, stdio, "db check")
	if cfg == nil {
		return code
	}
	url, err := server.DatabaseURL(cfg, false)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat db check: %v\n", err)
		return ExitUsage
	}
	var findings []dbcheck.Finding
	if url == "" {
		findings, err = dbcheck.SQLite(server.SQLitePath(cfg))
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		findings, err = dbcheck.Postgres(ctx, url)
		cancel()
	}
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat db check: %v\n", err)
		return ExitFailure
	}
	errs := 0
	for _, f := range findings {
		fmt.Fprintf(stdio.Out, "%s %s: %s\n", f.Severity, f.Check, f.Message)
		if f.Severity == "error" {
			errs++
		}
	}
	if errs > 0 {
		fmt.Fprintf(stdio.Out, "%d errors\n", errs)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Out, "ok: no privilege beyond what Moat needs")
	return ExitOK
}
