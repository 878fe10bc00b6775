// Package event defines Moat's typed security events and the Recorder that
// every capability reports its security decisions to.
package event

import (
	"context"
	"log/slog"
	"time"
)

// Outcome is the result of a security decision.
type Outcome string

// Outcomes.
const (
	Allowed Outcome = "allowed"
	Denied  Outcome = "denied"
	Success Outcome = "success"
	Failure Outcome = "failure"
	Info    Outcome = "info"
)

// Event is one security decision or notable security fact. Kind is a dotted
// name such as "request.denied" or "tls.handshake_failed".
type Event struct {
	Time      time.Time
	Kind      string
	Outcome   Outcome
	Principal string // subject, empty for anonymous
	ClientIP  string
	Route     string
	RequestID string
	Rule      string            // the rule or check that decided
	Details   map[string]string // small, non-secret facts
}

// Recorder receives security events. Implementations must be safe for
// concurrent use and must not block the request path for long.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Discard is a Recorder that drops every event.
type Discard struct{}

// Record does nothing.
func (Discard) Record(context.Context, Event) {}

// Multi sends each event to every Recorder in turn.
type Multi []Recorder

// Record forwards e to every recorder.
func (m Multi) Record(ctx context.Context, e Event) {
	for _, r := range m {
		r.Record(ctx, e)
	}
}

// SlogSink writes events as structured log records, one per event. With a
// JSON handler each event becomes one JSON line.
type SlogSink struct {
	Logger *slog.Logger
}

// Record logs e at level WARN for denials and failures, INFO otherwise.
// It is safe for concurrent use when the logger's handler is.
func (s SlogSink) Record(ctx context.Context, e Event) {
	level := slog.LevelInfo
	if e.Outcome == Denied || e.Outcome == Failure {
		level = slog.LevelWarn
	}
	if !s.Logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("kind", e.Kind),
		slog.String("outcome", string(e.Outcome)),
	)
	if e.Principal != "" {
		attrs = append(attrs, slog.String("principal", e.Principal))
	}
	if e.ClientIP != "" {
		attrs = append(attrs, slog.String("client_ip", e.ClientIP))
	}
	if e.Route != "" {
		attrs = append(attrs, slog.String("route", e.Route))
	}
	if e.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", e.RequestID))
	}
	if e.Rule != "" {
		attrs = append(attrs, slog.String("rule", e.Rule))
	}
	if len(e.Details) > 0 {
		d := make([]any, 0, len(e.Details))
		for k, v := range e.Details {
			d = append(d, slog.String(k, v))
		}
		attrs = append(attrs, slog.Group("details", d...))
	}
	r := slog.NewRecord(e.Time, level, "security event", 0)
	r.AddAttrs(attrs...)
	_ = s.Logger.Handler().Handle(ctx, r)
}
