package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/server"
)

// loadConfig loads a config file for a subcommand, printing its problems.
func loadConfig(path string, stdio Stdio, cmd string) (*config.Config, int) {
	if path == "" {
		fmt.Fprintf(stdio.Err, "moat %s: --config FILE is required\nhint: moat %s --config moat.yaml\n", cmd, cmd)
		return nil, ExitUsage
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(stdio.Err, err)
		return nil, ExitUsage
	}
	return cfg, -1
}

// openState opens the store and key ring for a subcommand.
func openState(ctx context.Context, cfg *config.Config, o server.StateOptions, stdio Stdio, cmd string) (*server.State, int) {
	logger := newLogger(stdio.Err, "text", "warn")
	st, err := server.OpenState(ctx, cfg, o, logger)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat %s: %v\n", cmd, err)
		return nil, ExitFailure
	}
	return st, -1
}

func quietLogger(stdio Stdio) *slog.Logger { return newLogger(stdio.Err, "text", "warn") }
