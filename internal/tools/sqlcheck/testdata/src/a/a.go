// Package a holds queries the analyzer must report and queries it must
// accept.
package a

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const usersTable = "users"

const byName = "SELECT id FROM " + usersTable + " WHERE name = $1"

type query string

const typed query = "SELECT 1"

// Good: constant queries, values as parameters.
func good(ctx context.Context, db *sql.DB, tx *sql.Tx, conn *sql.Conn, name string) {
	db.Query("SELECT id FROM users WHERE name = ?", name)
	db.QueryContext(ctx, byName, name)
	db.QueryRow(`SELECT id FROM users WHERE name = $1`, name)
	db.QueryRowContext(ctx, "SELECT id FROM "+usersTable+" WHERE name = $1", name)
	db.Exec("DELETE FROM users WHERE name = $1", name)
	db.ExecContext(ctx, ("UPDATE users SET name = $1"), name)
	db.Prepare(byName)
	db.PrepareContext(ctx, byName)
	tx.QueryContext(ctx, byName, name)
	conn.ExecContext(ctx, "DELETE FROM users")
	db.QueryContext(ctx, string(typed))
	// Building the arguments is fine: only the query text must be constant.
	db.QueryContext(ctx, byName, fmt.Sprintf("%s%%", name))
}

func goodPgx(ctx context.Context, c *pgx.Conn, tx pgx.Tx, p *pgxpool.Pool, b *pgx.Batch, name string) {
	c.Query(ctx, byName, name)
	c.QueryRow(ctx, byName, name)
	c.Exec(ctx, "DELETE FROM users WHERE name = $1", name)
	c.Prepare(ctx, fmt.Sprint("stmt", name), byName) // the statement's name is not query text
	tx.Exec(ctx, byName, name)
	p.QueryRow(ctx, byName, name)
	b.Queue(byName, name)
}

// Bad: query text built from values.
func bad(ctx context.Context, db *sql.DB, tx *sql.Tx, conn *sql.Conn, name string) {
	db.Query("SELECT * FROM users WHERE name = '" + name + "'")                      // want `the query passed to sql.DB.Query is not a constant string \(it is concatenated from values\)`
	db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", name)) // want `sql.DB.QueryContext is not a constant string \(it is built with fmt.Sprintf\)`
	db.QueryRow("SELECT * FROM users WHERE name = '" + name + "'")                   // want `sql.DB.QueryRow`
	db.QueryRowContext(ctx, "SELECT * FROM "+name)                                   // want `sql.DB.QueryRowContext`
	db.Exec("DELETE FROM " + name)                                                   // want `sql.DB.Exec`
	db.ExecContext(ctx, "DELETE FROM "+name)                                         // want `sql.DB.ExecContext`
	db.Prepare("SELECT " + name)                                                     // want `sql.DB.Prepare`
	db.PrepareContext(ctx, "SELECT "+name)                                           // want `sql.DB.PrepareContext`
	tx.ExecContext(ctx, "DELETE FROM "+name)                                         // want `sql.Tx.ExecContext`
	conn.QueryContext(ctx, "SELECT "+name)                                           // want `sql.Conn.QueryContext`
	tx.Prepare(strings.Join([]string{"SELECT", name}, " "))                          // want `sql.Tx.Prepare is not a constant string \(it is built with strings.Join\)`

	// A variable is reported even when it only ever holds a constant.
	q := "SELECT 1"
	db.Query(q) // want `sql.DB.Query is not a constant string: pass values as query parameters`

	var sb strings.Builder
	sb.WriteString("SELECT * FROM users WHERE name = '")
	sb.WriteString(name)
	db.Query(sb.String()) // want `\(it is built with a strings.Builder\)`

	var buf bytes.Buffer
	db.Query(buf.String()) // want `\(it is built with a bytes.Buffer\)`
}

func badPgx(ctx context.Context, c *pgx.Conn, tx pgx.Tx, p *pgxpool.Pool, b *pgx.Batch, pc *pgconn.PgConn, name string) {
	c.Query(ctx, "SELECT * FROM users WHERE name = '"+name+"'") // want `pgx.Conn.Query`
	c.QueryRow(ctx, fmt.Sprintf("SELECT %s", name))             // want `pgx.Conn.QueryRow .*fmt.Sprintf`
	c.Exec(ctx, "DELETE FROM "+name)                            // want `pgx.Conn.Exec`
	c.Prepare(ctx, "stmt", "SELECT "+name)                      // want `pgx.Conn.Prepare`
	tx.Query(ctx, "SELECT "+name)                               // want `pgx.Tx.Query`
	tx.QueryRow(ctx, "SELECT "+name)                            // want `pgx.Tx.QueryRow`
	tx.Exec(ctx, "SELECT "+name)                                // want `pgx.Tx.Exec`
	p.Query(ctx, "SELECT "+name)                                // want `pgxpool.Pool.Query`
	p.QueryRow(ctx, "SELECT "+name)                             // want `pgxpool.Pool.QueryRow`
	p.Exec(ctx, "SELECT "+name)                                 // want `pgxpool.Pool.Exec`
	b.Queue("SELECT " + name)                                   // want `pgx.Batch.Queue`
	pc.Exec(ctx, "SELECT "+name)                                // want `pgconn.PgConn.Exec`
}

// store embeds *sql.DB: its promoted methods are sql.DB's.
type store struct{ *sql.DB }

func embedded(ctx context.Context, s store, name string) {
	s.QueryContext(ctx, byName, name)
	s.QueryContext(ctx, "SELECT "+name) // want `sql.DB.QueryContext`
}

// The escape hatch, for quoted identifiers.
func allowed(ctx context.Context, db *sql.DB, c *pgx.Conn, table string) {
	db.ExecContext(ctx, "DROP TABLE "+pgx.Identifier{table}.Sanitize()) //sqlcheck:ok quoted identifier
	c.Exec(ctx,                                                         //sqlcheck:ok quoted identifier, on the call's line
		"TRUNCATE "+pgx.Identifier{table}.Sanitize())
	c.Exec(ctx,
		"TRUNCATE "+pgx.Identifier{table}.Sanitize(), //sqlcheck:ok quoted identifier, on the argument's line
	)
	db.ExecContext(ctx, //sqlcheck:ok
		"DROP TABLE "+table, // want `//sqlcheck:ok without a reason`
	)
	db.ExecContext(ctx, "DROP TABLE "+table) //sqlcheck:okay is not the directive // want `sql.DB.ExecContext`
}

// Methods of the same names on other types are not checked.
type cache struct{}

func (cache) Query(s string) {}

func other(c cache, name string) {
	c.Query("x" + name)
}
