// Package dbcheck checks that Moat's database connection has no more
// privilege than Moat needs, for `moat db check`.
//
// For PostgreSQL it connects with the configured URL and inspects the role it
// connects as, which it treats as Moat's runtime role: that role should hold
// SELECT, INSERT, UPDATE and DELETE on Moat's tables and nothing else. A
// runtime role that is a superuser, may create roles or databases, bypasses
// row-level security, may replicate, can become a role that does (through
// membership), or owns the database, a schema or a table is an error: a
// compromised gateway holding it could drop or rewrite what it owns. Tables
// and schemas belong to a separate migration role (see docs/database.md). The
// connection URL itself is checked too: a server that is not on this machine
// must be reached with sslmode=verify-full.
//
// For SQLite it checks the file modes of the database file, its write-ahead
// log and shared-memory files, and its directory.
//
// A Finding is a result, not an error: the functions return an error only
// when the check itself could not be made.
package dbcheck

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Severities of a Finding.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Finding is one problem with the database setup.
type Finding struct {
	// Severity is SeverityError or SeverityWarning.
	Severity string
	// Check is a short, stable id such as "pg.superuser".
	Check string
	// Message says what is wrong and how to fix it.
	Message string
}

// String formats a finding as one line: "error pg.superuser: message".
func (f Finding) String() string {
	return f.Severity + " " + f.Check + ": " + f.Message
}

func errorf(check, format string, args ...any) Finding {
	return Finding{Severity: SeverityError, Check: check, Message: fmt.Sprintf(format, args...)}
}

func warningf(check, format string, args ...any) Finding {
	return Finding{Severity: SeverityWarning, Check: check, Message: fmt.Sprintf(format, args...)}
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ident returns a PostgreSQL identifier as it would be written in the SQL a
// message suggests: bare when that is unambiguous, double-quoted otherwise.
func ident(name string) string {
	if plainIdent.MatchString(name) {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}

// list joins up to max names, with ", ..." when there are more.
func list(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + ", ..."
}
