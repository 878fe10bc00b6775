package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/audit"
	"github.com/moatgw/moat/internal/server"
	"github.com/moatgw/moat/internal/store"
)

const auditUsage = `Usage: moat audit <verify|tail> [flags]

Read the hash-chained audit log that keeps every security event.

  verify --config FILE     walk the chain and check its signed checkpoints; name the
                           first record edited, deleted, inserted or reordered
  tail --config FILE       print the latest records (--kind K, --since 1h, -n N, --json)`

func runAudit(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, auditUsage)
		return ExitUsage
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], stdio)
	case "tail":
		return runAuditTail(args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, auditUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Err, "moat audit: unknown subcommand %q\n\n%s\n", args[0], auditUsage)
	return ExitUsage
}

func runAuditVerify(args []string, stdio Stdio) int {
	fs := newFlags("audit verify", "moat audit verify --config FILE",
		`Walk the audit log from its first record (or the signed anchor a pruning left) to its
last, recomputing every hash and checking every signed checkpoint. Exits 0 when the log
verifies, 1 naming the first problem otherwise. Records after the last checkpoint are
chained but not yet signed; the report says how far the signatures reach.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*path, stdio, "audit verify")
	if cfg == nil {
		return code
	}
	ctx := context.Background()
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "audit verify")
	if st == nil {
		return code
	}
	defer st.Close()
	signer, err := audit.LoadSigner(ctx, st.Store.Secrets())
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat audit verify: %v\n", err)
		return ExitFailure
	}
	rep, err := audit.Verify(ctx, st.Store.Audit(), signer.Public())
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat audit verify: reading the log: %v\n", err)
		return ExitFailure
	}
	if !rep.OK() {
		fmt.Fprintf(stdio.Out, "FAILED: %s\n(%d records read, %d valid checkpoints before it)\n", rep.Problem, rep.Records, rep.Checkpoints)
		return ExitFailure
	}
	if rep.Records == 0 {
		fmt.Fprintln(stdio.Out, "ok: the audit log is empty")
		return ExitOK
	}
	fmt.Fprintf(stdio.Out, "ok: %d records, seq %d to %d, %d signed checkpoints; signed through seq %d\n",
		rep.Records, rep.First, rep.Last, rep.Checkpoints, rep.SignedThrough)
	return ExitOK
}

func runAuditTail(args []string, stdio Stdio) int {
	fs := newFlags("audit tail", "moat audit tail --config FILE [--kind K] [--since 1h] [-n N] [--json]",
		`Print the latest records of the audit log, oldest first: time, sequence number, kind and
the event. --kind keeps the records whose kind starts with K (waf., login.failed);
--since keeps those newer than the duration; --json prints each record's canonical JSON,
one per line, as stored.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	kind := fs.String("kind", "", "only records whose kind starts with this")
	since := fs.Duration("since", 0, "only records newer than this (e.g. 1h)")
	n := fs.Int("n", 20, "at most this many records")
	asJSON := fs.Bool("json", false, "print the stored JSON of each record")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if *n < 1 {
		fmt.Fprintln(stdio.Err, "moat audit tail: -n must be at least 1")
		return ExitUsage
	}
	cfg, code := loadConfig(*path, stdio, "audit tail")
	if cfg == nil {
		return code
	}
	ctx := context.Background()
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "audit tail")
	if st == nil {
		return code
	}
	defer st.Close()
	var after int64
	if *since > 0 {
		first, err := st.Store.Audit().FirstAt(ctx, time.Now().Add(-*since))
		if err != nil {
			fmt.Fprintln(stdio.Out, "no records in that time")
			return ExitOK
		}
		after = first.Seq - 1
	}
	// Keep the last n matching records while reading forward in pages.
	var keep []*store.AuditRecord
	for {
		page, err := st.Store.Audit().List(ctx, after, 1000)
		if err != nil {
			fmt.Fprintf(stdio.Err, "moat audit tail: reading the log: %v\n", err)
			return ExitFailure
		}
		for _, r := range page {
			if *kind == "" || strings.HasPrefix(r.Kind, *kind) {
				keep = append(keep, r)
				if len(keep) > *n {
					keep = keep[1:]
				}
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Seq
	}
	for _, r := range keep {
		if *asJSON {
			fmt.Fprintln(stdio.Out, string(r.Data))
			continue
		}
		fmt.Fprintf(stdio.Out, "%s  %6d  %-24s %s\n", r.Time.UTC().Format(time.RFC3339), r.Seq, r.Kind, summary(r.Data))
	}
	return ExitOK
}

// summary is a record's event in one short line: its fields other than
// the time and kind, in their stored order.
func summary(data []byte) string {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return ""
	}
	var parts []string
	for _, k := range []string{"event.outcome", "rule.name", "user.name", "source.ip", "url.path", "http.request.id"} {
		if v, ok := m[k]; ok && v != "" {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(k, "event."), v))
		}
	}
	return strings.Join(parts, " ")
}
