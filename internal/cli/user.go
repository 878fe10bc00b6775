package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/server"
)

const userUsage = `Usage: moat user <command> NAME --config FILE [flags]

Manage local accounts (see docs/accounts.md). Every command needs --config.

  add NAME --role ROLE [--email E] [--display-name N] [--password-stdin]
                       create a user and print a one-time enrollment link
  list [--json]        list users, their roles, status and second factors
  disable NAME         stop a user from signing in and end their sessions
  enable NAME          let a disabled user sign in again
  reset-password NAME  remove the password, end the sessions, print a new enrollment link
  reset-mfa NAME       remove every second factor (authenticator app, passkeys, recovery codes)
  sessions NAME        list a user's sessions
  revoke-sessions NAME end every session of a user, on every instance

A password is never taken as an argument: with --password-stdin, add reads it
from the first line of standard input.`

func runUser(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, userUsage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, userUsage)
		return ExitOK
	case "add":
		return runUserAdd(rest, stdio)
	case "list":
		return runUserList(rest, stdio)
	case "disable", "enable", "reset-password", "reset-mfa", "sessions", "revoke-sessions":
		return runUserAction(cmd, rest, stdio)
	}
	fmt.Fprintf(stdio.Err, "moat user: unknown command %q\n\n%s\n", cmd, userUsage)
	return ExitUsage
}

// what names the argument a command takes.
func what(cmd string) string {
	if strings.HasPrefix(cmd, "apikey") {
		return "id"
	}
	return "name"
}

// nameAndFlags parses "NAME --flag ..." or "--flag ... NAME" and returns
// NAME; cmd is the command without "moat", such as "user add".
func nameAndFlags(fs *flag.FlagSet, args []string, stdio Stdio, cmd string) (string, int) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return "", code
	}
	extra := fs.NArg()
	if name == "" && extra > 0 {
		name, extra = fs.Arg(0), extra-1
	}
	if extra > 0 {
		// Not echoed: it may be a password typed where it must never go.
		fmt.Fprintf(stdio.Err, "moat %s: unexpected extra argument (not shown)\nhint: flags come with their values (--role admin); a password is never an argument: use --password-stdin\n", cmd)
		return "", ExitUsage
	}
	if name == "" {
		fmt.Fprintf(stdio.Err, "moat %s: the %s is required\nhint: moat %s %s --config moat.yaml\n", cmd, what(cmd), cmd, strings.ToUpper(what(cmd)))
		return "", ExitUsage
	}
	return name, -1
}

// openAccounts opens the store and the accounts service for a user command.
// Security events the command causes are logged on stderr.
func openAccounts(ctx context.Context, path string, stdio Stdio, cmd string) (*server.Accounts, *config.Config, func(), int) {
	cfg, code := loadConfig(path, stdio, cmd)
	if cfg == nil {
		return nil, nil, nil, code
	}
	// Like moat serve, apply pending migrations, so that managing users
	// works on a new data directory before the gateway first ran.
	st, code := openState(ctx, cfg, server.StateOptions{Migrate: true}, stdio, cmd)
	if st == nil {
		return nil, nil, nil, code
	}
	events := event.SlogSink{Logger: newLogger(stdio.Err, "text", "info").With("component", "security")}
	a, err := server.OpenAccounts(ctx, cfg, st, nil, events, quietLogger(stdio), nil)
	if err != nil {
		_ = st.Close()
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return nil, nil, nil, ExitFailure
	}
	return a, cfg, func() { _ = a.Close(); _ = st.Close() }, -1
}

type rolesFlag []string

func (r *rolesFlag) String() string { return strings.Join(*r, ",") }
func (r *rolesFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*r = append(*r, strings.ToLower(p))
		}
	}
	return nil
}

func runUserAdd(args []string, stdio Stdio) int {
	fs := newFlags("user add", "moat user add NAME --role ROLE --config FILE [flags]",
		`Create a user and print a one-time link where they choose their password (and, for a
role listed in accounts.mfa_roles, enroll a second factor at their first sign-in).
There is never a default password.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	var roles rolesFlag
	fs.Var(&roles, "role", "role to grant (repeat it, or separate roles with commas)")
	email := fs.String("email", "", "e-mail address (stored encrypted)")
	display := fs.String("display-name", "", "name shown on the portal pages")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of printing a link")
	name, code := nameAndFlags(fs, args, stdio, "user add")
	if code >= 0 {
		return code
	}
	var pw string
	if *fromStdin {
		line, err := bufio.NewReader(io.LimitReader(stdio.In, password.MaxPasswordBytes+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stdio.Err, "moat user add: reading the password: %v\n", err)
			return ExitFailure
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			fmt.Fprintln(stdio.Err, "moat user add: --password-stdin given but standard input holds no password")
			return ExitUsage
		}
	}
	ctx := context.Background()
	a, cfg, done, code := openAccounts(ctx, *path, stdio, "user add")
	if a == nil {
		return code
	}
	defer done()
	u, tok, err := a.Service.CreateUser(ctx, name, *email, *display, roles)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat user add: %v\n", err)
		return ExitFailure
	}
	if pw != "" {
		if _, err := a.Service.SetPasswordWithToken(ctx, tok, pw); err != nil {
			fmt.Fprintf(stdio.Err, "moat user add: user %q was created, but the password was refused: %v\nhint: send them the enrollment link instead: moat user reset-password %s --config %s\n", u.Username, err, u.Username, *path)
			return ExitFailure
		}
		fmt.Fprintf(stdio.Out, "created user %q (roles: %s) with the password from standard input\n", u.Username, roleList(u.Roles))
		return ExitOK
	}
	fmt.Fprintf(stdio.Out, "created user %q (roles: %s)\none-time enrollment link (valid %s):\n  %s\n",
		u.Username, roleList(u.Roles), cfg.Accounts.EnrollLinkTTL, server.EnrollLink(cfg, tok))
	return ExitOK
}

func roleList(roles []string) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(roles, ", ")
}

type userRow struct {
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name,omitempty"`
	Roles       []string  `json:"roles"`
	Status      string    `json:"status"`
	Password    bool      `json:"password"`
	TOTP        bool      `json:"totp"`
	Passkeys    int       `json:"passkeys"`
	Recovery    int       `json:"recovery_codes"`
	CreatedAt   time.Time `json:"created_at"`
	LastLoginAt time.Time `json:"last_login_at"`
}

func runUserList(args []string, stdio Stdio) int {
	fs := newFlags("user list", "moat user list --config FILE [--json]", "List every user with their roles, status and factors.", stdio)
	path := fs.String("config", "", "path to the config file (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	ctx := context.Background()
	a, _, done, code := openAccounts(ctx, *path, stdio, "user list")
	if a == nil {
		return code
	}
	defer done()
	users, err := a.Service.Users(ctx)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat user list: %v\n", err)
		return ExitFailure
	}
	rows := make([]userRow, 0, len(users))
	for _, u := range users {
		f, err := a.Service.Factors(ctx, u.ID)
		if err != nil {
			fmt.Fprintf(stdio.Err, "moat user list: %v\n", err)
			return ExitFailure
		}
		rows = append(rows, userRow{
			Username: u.Username, DisplayName: u.DisplayName, Roles: u.Roles, Status: u.Status,
			Password: f[accounts.KindPassword] > 0, TOTP: f[accounts.KindTOTP] > 0,
			Passkeys: f[accounts.KindWebAuthn], Recovery: f[accounts.KindRecovery],
			CreatedAt: u.CreatedAt.UTC(), LastLoginAt: u.LastLoginAt.UTC(),
		})
	}
	if *asJSON {
		enc := json.NewEncoder(stdio.Out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
		return ExitOK
	}
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLES\tSTATUS\tPASSWORD\tTOTP\tPASSKEYS\tRECOVERY CODES\tLAST LOGIN")
	for _, r := range rows {
		last := "never"
		if !r.LastLoginAt.IsZero() && r.LastLoginAt.Unix() > 0 {
			last = r.LastLoginAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Username, roleList(r.Roles), r.Status,
			yesNo(r.Password), yesNo(r.TOTP), r.Passkeys, r.Recovery, last)
	}
	_ = tw.Flush()
	return ExitOK
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

var userActionHelp = map[string]string{
	"disable":         "Stop a user from signing in and end every session they have.",
	"enable":          "Let a disabled user sign in again.",
	"reset-password":  "Remove the user's password at once, end their sessions, and print a new one-time enrollment link.",
	"reset-mfa":       "Remove every second factor of the user (authenticator app, passkeys, recovery codes) and end their sessions. A user whose role requires a second factor enrolls a new one at the next sign-in.",
	"sessions":        "List the user's sessions: when each was created and last used, how the user signed in, and whether it still counts.",
	"revoke-sessions": "End every session of the user, on every instance.",
}

func runUserAction(cmd string, args []string, stdio Stdio) int {
	fs := newFlags("user "+cmd, "moat user "+cmd+" NAME --config FILE", userActionHelp[cmd], stdio)
	path := fs.String("config", "", "path to the config file (required)")
	name, code := nameAndFlags(fs, args, stdio, "user "+cmd)
	if code >= 0 {
		return code
	}
	ctx := context.Background()
	a, cfg, done, code := openAccounts(ctx, *path, stdio, "user "+cmd)
	if a == nil {
		return code
	}
	defer done()
	fail := func(err error) int {
		fmt.Fprintf(stdio.Err, "moat user %s: %v\n", cmd, err)
		return ExitFailure
	}
	svc := a.Service
	switch cmd {
	case "disable", "enable":
		status := accounts.StatusDisabled
		if cmd == "enable" {
			status = accounts.StatusActive
		}
		if err := svc.SetStatus(ctx, name, status); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdio.Out, "user %q is %s\n", name, status)
	case "reset-password":
		tok, err := svc.EnrollmentToken(ctx, name)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdio.Out, "the password of %q is removed and their sessions ended\none-time link to choose a new one (valid %s):\n  %s\n",
			name, cfg.Accounts.EnrollLinkTTL, server.EnrollLink(cfg, tok))
	case "reset-mfa":
		if err := svc.ResetMFA(ctx, name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdio.Out, "every second factor of %q is removed and their sessions ended\n", name)
	case "revoke-sessions":
		n, err := svc.RevokeSessions(ctx, name)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdio.Out, "ended %d session(s) of %q\n", n, name)
	case "sessions":
		list, err := svc.Sessions(ctx, name)
		if err != nil {
			return fail(err)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tSTATE\tMETHODS\tCREATED\tLAST SEEN\tEXPIRES")
		for _, s := range list {
			state := "active"
			switch {
			case !s.RevokedAt.IsZero():
				state = "revoked"
			case !now.Before(s.ExpiresAt):
				state = "expired"
			}
			fmt.Fprintf(tw, "%x\t%s\t%s\t%s\t%s\t%s\n", s.IDHash[:min(6, len(s.IDHash))], state, strings.Join(s.Methods, ","),
				s.CreatedAt.UTC().Format(time.RFC3339), s.LastSeen.UTC().Format(time.RFC3339), s.ExpiresAt.UTC().Format(time.RFC3339))
		}
		_ = tw.Flush()
	}
	return ExitOK
}
