// Package pgx is a stand-in for the parts of github.com/jackc/pgx/v5 that
// the analyzer knows, with the same method signatures.
package pgx

import "context"

type Rows interface{ Close() }

type Row interface{ Scan(dest ...any) error }

type CommandTag struct{}

type StatementDescription struct{}

type Identifier []string

func (Identifier) Sanitize() string { return "" }

type Conn struct{}

func (*Conn) Query(ctx context.Context, sql string, args ...any) (Rows, error) { return nil, nil }
func (*Conn) QueryRow(ctx context.Context, sql string, args ...any) Row        { return nil }
func (*Conn) Exec(ctx context.Context, sql string, args ...any) (CommandTag, error) {
	return CommandTag{}, nil
}
func (*Conn) Prepare(ctx context.Context, name, sql string) (*StatementDescription, error) {
	return nil, nil
}

type Tx interface {
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
	Exec(ctx context.Context, sql string, args ...any) (CommandTag, error)
	Prepare(ctx context.Context, name, sql string) (*StatementDescription, error)
	Commit(ctx context.Context) error
}

type QueuedQuery struct{}

type Batch struct{}

func (*Batch) Queue(query string, arguments ...any) *QueuedQuery { return nil }
