// Command sqlcheck reports SQL queries that are not compile-time constant
// strings, so that no query text is ever built from values: values travel as
// query parameters ($1, ?) instead.
//
// It looks at the calls that take query text: Query, QueryContext,
// QueryRow, QueryRowContext, Exec, ExecContext, Prepare and PrepareContext
// of database/sql's DB, Tx and Conn; Query, QueryRow, Exec and Prepare of
// pgx's Conn and Tx and of pgxpool's Pool, Conn and Tx; pgx's Batch.Queue;
// and Exec, ExecParams and Prepare of pgconn's PgConn. The query argument
// must be a constant expression: a string literal, a named constant, or a
// concatenation of those. Anything else is reported, including a variable
// that only ever holds a constant, and strings made with fmt.Sprintf or a
// strings.Builder.
//
// The one way out is a comment on the line of the call or of the query
// argument:
//
//	db.ExecContext(ctx, "DROP TABLE "+pgx.Identifier{t}.Sanitize()) //sqlcheck:ok quoted identifier
//
// The reason after //sqlcheck:ok is required; use it for identifiers that
// are quoted before they are spliced in, never for values.
//
// Usage, from the repository root (test files are checked too):
//
//	go run ./internal/tools/sqlcheck ./...
//
// It exits 0 when nothing is found and 3 when it reports a query.
package main

import "golang.org/x/tools/go/analysis/singlechecker"

func main() { singlechecker.Main(analyzer) }
