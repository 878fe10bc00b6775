package certs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZapLogger(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level // of the slog handler
		log   func(*zap.Logger)
		want  string // "" for nothing written
	}{
		{"info becomes debug", slog.LevelDebug, func(l *zap.Logger) { l.Info("obtaining", zap.String("identifier", "a.test")) },
			`level=DEBUG msg=obtaining identifier=a.test`},
		{"info hidden at info level", slog.LevelInfo, func(l *zap.Logger) { l.Info("obtaining") }, ""},
		{"warn kept", slog.LevelInfo, func(l *zap.Logger) { l.Warn("slow", zap.Int("n", 2)) }, `level=WARN msg=slow n=2`},
		{"error kept, with logger name and fields", slog.LevelInfo,
			func(l *zap.Logger) {
				l.Named("acme").With(zap.String("ca", "x")).Error("failed", zap.Bool("retry", true))
			},
			`level=ERROR msg=failed ca=x logger=acme retry=true`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})
			tc.log(newZapLogger(slog.New(h)))
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
