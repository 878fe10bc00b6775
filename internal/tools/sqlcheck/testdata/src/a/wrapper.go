package a

import (
	"context"
	"database/sql"
)

type wstore struct{ db *sql.DB }

// exec passes its query parameter on: it is checked at its callers.
func (s *wstore) exec(ctx context.Context, query string, args ...any) error {
	_, err := s.db.ExecContext(ctx, query, args...)
	return err
}

// execOne wraps exec: a wrapper of a wrapper.
func (s *wstore) execOne(ctx context.Context, query string, args ...any) error {
	return s.exec(ctx, query, args...)
}

func wrapperCalls(ctx context.Context, s *wstore, name string) {
	_ = s.exec(ctx, "DELETE FROM users WHERE name = $1", name)
	_ = s.execOne(ctx, "UPDATE users SET name = $1", name)
	_ = s.exec(ctx, "DELETE FROM users WHERE name = '"+name+"'") // want `the query passed to exec is not a constant string`
	_ = s.execOne(ctx, "UPDATE users SET name = '"+name+"'")     // want `the query passed to execOne is not a constant string`
}
