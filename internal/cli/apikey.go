package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/server"
	"github.com/moatgw/moat/internal/store"
)

const apikeyUsage = `Usage: moat apikey <command> --config FILE [flags]

Manage API keys: credentials for programs, sent as "Authorization: Bearer KEY"
or "X-API-Key: KEY" to routes whose methods list apikey (see docs/identity.md).

  create --name NAME --owner USER|service [--scopes a,b] [--expires 90d]
                       print a new key, once; only its HMAC is stored
  list [--json]        list keys: id, name, owner, scopes, expiry, last use
  revoke ID            refuse the key from now on, on every instance
  rotate ID [--grace 24h]
                       print a new key with the same name, owner and scopes;
                       the old one keeps working for the grace period`

func runAPIKey(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, apikeyUsage)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, apikeyUsage)
		return ExitOK
	case "create":
		return runAPIKeyCreate(args[1:], stdio)
	case "list":
		return runAPIKeyList(args[1:], stdio)
	case "revoke", "rotate":
		return runAPIKeyChange(args[0], args[1:], stdio)
	}
	fmt.Fprintf(stdio.Err, "moat apikey: unknown command %q\n\n%s\n", args[0], apikeyUsage)
	return ExitUsage
}

// openAPIKeys opens the store and the API key service for a command.
func openAPIKeys(ctx context.Context, path string, stdio Stdio, cmd string) (*apikey.Service, *config.Config, *server.State, int) {
	cfg, code := loadConfig(path, stdio, cmd)
	if cfg == nil {
		return nil, nil, nil, code
	}
	st, code := openState(ctx, cfg, server.StateOptions{Migrate: true}, stdio, cmd)
	if st == nil {
		return nil, nil, nil, code
	}
	svc, err := server.OpenAPIKeys(ctx, st)
	if err != nil {
		_ = st.Close()
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return nil, nil, nil, ExitFailure
	}
	return svc, cfg, st, -1
}

func runAPIKeyCreate(args []string, stdio Stdio) int {
	fs := newFlags("apikey create", "moat apikey create --config FILE --name NAME --owner USER|service [--scopes a,b] [--expires 90d]",
		`Create an API key and print it, once: Moat keeps only an HMAC of it. The key
starts with moat_ and ends with a checksum, so secret scanners can spot a leaked
one. Its principal is the owner (a user name, or "service" for a program),
with the key's scopes; an owner that is a user also gets the user's roles.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	name := fs.String("name", "", "what the key is for, such as billing-export (required)")
	owner := fs.String("owner", "", `a user name, or "service" (required)`)
	scopes := fs.String("scopes", "", "comma-separated scopes")
	expires := fs.String("expires", "", "lifetime, such as 90d or 720h; empty: never expires")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() > 0 || *name == "" || *owner == "" {
		fmt.Fprintln(stdio.Err, "moat apikey create: --name and --owner are required and no arguments are taken\nhint: moat apikey create --config moat.yaml --name ci --owner service --scopes deploy --expires 90d")
		return ExitUsage
	}
	var ttl time.Duration
	if *expires != "" {
		d, err := config.ParseDuration(*expires)
		if err != nil || d <= 0 {
			fmt.Fprintf(stdio.Err, "moat apikey create: --expires %q is not a positive duration such as 90d or 12h\n", *expires)
			return ExitUsage
		}
		ttl = d.D()
	}
	ctx := context.Background()
	svc, _, st, code := openAPIKeys(ctx, *path, stdio, "apikey create")
	if svc == nil {
		return code
	}
	defer st.Close()
	if *owner != "service" {
		if _, err := st.Store.Users().GetByUsername(ctx, strings.ToLower(*owner)); err != nil {
			fmt.Fprintf(stdio.Err, "moat apikey create: no user %q\nhint: --owner is a user name from moat user list, or \"service\"\n", *owner)
			return ExitFailure
		}
	}
	key, rec, err := svc.Create(ctx, *name, strings.ToLower(*owner), splitList(*scopes), ttl)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat apikey create: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Err, "created API key %s (%s) for %s; it is shown once, store it now:\n", rec.ID, rec.Name, rec.Owner)
	fmt.Fprintln(stdio.Out, key)
	return ExitOK
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type keyRow struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Owner      string    `json:"owner"`
	Scopes     []string  `json:"scopes"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

func keyState(k *store.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):
		return "revoked"
	case !k.RevokedAt.IsZero():
		return "rotated, valid until " + k.RevokedAt.UTC().Format(time.RFC3339)
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}

func runAPIKeyList(args []string, stdio Stdio) int {
	fs := newFlags("apikey list", "moat apikey list --config FILE [--json]", "List API keys. The keys themselves are never shown again.", stdio)
	path := fs.String("config", "", "path to the config file (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	ctx := context.Background()
	svc, _, st, code := openAPIKeys(ctx, *path, stdio, "apikey list")
	if svc == nil {
		return code
	}
	defer st.Close()
	keys, err := svc.List(ctx)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat apikey list: %v\n", err)
		return ExitFailure
	}
	now := time.Now()
	rows := make([]keyRow, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, keyRow{ID: k.ID, Name: k.Name, Owner: k.Owner, Scopes: k.Scopes, State: keyState(k, now),
			CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt.UTC(), RevokedAt: k.RevokedAt.UTC(), LastUsedAt: k.LastUsedAt.UTC()})
	}
	if *asJSON {
		enc := json.NewEncoder(stdio.Out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
		return ExitOK
	}
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tOWNER\tSCOPES\tSTATE\tEXPIRES\tLAST USED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.Owner, strings.Join(r.Scopes, ","), r.State,
			orNever(r.ExpiresAt), orNever(r.LastUsedAt))
	}
	_ = tw.Flush()
	return ExitOK
}

func orNever(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func runAPIKeyChange(cmd string, args []string, stdio Stdio) int {
	synopsis := "moat apikey revoke ID --config FILE"
	help := "Refuse the key from now on. Other instances refuse it within 2 seconds (their cache)."
	if cmd == "rotate" {
		synopsis = "moat apikey rotate ID --config FILE [--grace 24h]"
		help = "Print a new key with the same name, owner, scopes and lifetime; the old key keeps working for the grace period, then is refused."
	}
	fs := newFlags("apikey "+cmd, synopsis, help, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	grace := fs.String("grace", "24h", "how long the old key keeps working (rotate)")
	id, code := nameAndFlags(fs, args, stdio, "apikey "+cmd)
	if code >= 0 {
		return code
	}
	ctx := context.Background()
	svc, _, st, code := openAPIKeys(ctx, *path, stdio, "apikey "+cmd)
	if svc == nil {
		return code
	}
	defer st.Close()
	if cmd == "revoke" {
		if err := svc.Revoke(ctx, id); err != nil {
			return apikeyFail(stdio, cmd, err)
		}
		fmt.Fprintf(stdio.Out, "API key %s is revoked\n", id)
		return ExitOK
	}
	g, err := config.ParseDuration(*grace)
	if err != nil || g < 0 {
		fmt.Fprintf(stdio.Err, "moat apikey rotate: --grace %q is not a duration such as 24h or 0s\n", *grace)
		return ExitUsage
	}
	key, rec, err := svc.Rotate(ctx, id, g.D())
	if err != nil {
		return apikeyFail(stdio, cmd, err)
	}
	fmt.Fprintf(stdio.Err, "new API key %s replaces %s, which keeps working for %s; it is shown once, store it now:\n", rec.ID, id, g)
	fmt.Fprintln(stdio.Out, key)
	return ExitOK
}

func apikeyFail(stdio Stdio, cmd string, err error) int {
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stdio.Err, "moat apikey %s: no such key\nhint: moat apikey list --config FILE shows the ids\n", cmd)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Err, "moat apikey %s: %v\n", cmd, err)
	return ExitFailure
}
