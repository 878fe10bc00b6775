package server

import (
	"context"
	"log/slog"

	"github.com/moatgw/moat/internal/audit"
)

// openAudit starts the audit log writer on the store: every security event
// is appended, hash-chained, with signed checkpoints, by a background
// goroutine that commits in batches.
func openAudit(ctx context.Context, st *State, logger *slog.Logger) (*audit.Writer, error) {
	signer, err := audit.LoadSigner(ctx, st.Store.Secrets())
	if err != nil {
		return nil, err
	}
	// The writer outlives s.ctx, which ends when shutdown begins: the
	// events of the shutdown itself are stored before Close returns.
	return audit.NewWriter(context.WithoutCancel(ctx), audit.Options{
		Store:  st.Store.Audit(),
		Signer: signer,
		Logger: logger.With("component", "audit"),
	})
}

// closeAudit stores what the audit writer holds and stops it.
func (s *Server) closeAudit(ctx context.Context) error {
	if s.audit == nil {
		return nil
	}
	return s.audit.Close(ctx)
}
