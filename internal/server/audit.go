package server

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

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

// watchAudit exports the audit writer's state: the queue depth, and the
// records stored and the events lost, so that an alert can fire on either.
func (m *metrics) watchAudit(w *audit.Writer) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "moat_audit_queue_depth",
			Help: "Security events waiting to be written to the audit log.",
		}, func() float64 { return float64(w.Queued()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "moat_audit_records_stored_total",
			Help: "Security events written to the audit log.",
		}, func() float64 { return float64(w.Stored()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "moat_audit_overflows_total",
			Help: "Security events the audit log could not take (its queue stayed full): alert on any.",
		}, func() float64 { return float64(w.Overflows()) }),
	)
}
