package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/server"
)

func runServe(args []string, stdio Stdio) int {
	fs := newFlags("serve", "moat serve --config FILE [--log-format json|text]",
		`Run the gateway. The config is validated first; any problem is printed with its
line and column and moat exits with status 2.

Signals: SIGHUP reloads the config file (a bad new config is refused and the
running one keeps serving); SIGTERM or SIGINT stop gracefully, letting in-flight
requests finish within limits.shutdown_timeout.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	format := fs.String("log-format", "json", "log format: json or text")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stdio.Err, "moat serve: --config FILE is required and no arguments are taken\nhint: moat serve --config moat.yaml")
		return ExitUsage
	}
	if *format != "json" && *format != "text" {
		fmt.Fprintf(stdio.Err, "moat serve: --log-format must be json or text, not %q\n", *format)
		return ExitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stdio.Err, err)
		return ExitUsage
	}
	logs := newLogs(stdio.Err, *format, cfg.Log.Level)
	return serveUntilSignal(cfg, logs, func() (*config.Config, error) { return config.Load(*path) }, nil)
}

// logs are the three streams Moat writes, sharing one output: its own
// messages at the configured level, and the access log and security events,
// which log.level never filters (log.access turns the access log off).
type logs struct {
	own, access, security *slog.Logger
	console               io.Writer // for what a person must read: the first admin's link
}

func newLogs(w io.Writer, format, level string) logs {
	return logs{
		console:  w,
		own:      newLogger(w, format, level),
		access:   newLogger(w, format, "info"),
		security: newLogger(w, format, "info").With("component", "security"),
	}
}

// serveUntilSignal runs a server from cfg until SIGTERM or SIGINT,
// reloading with load on SIGHUP. started, if not nil, runs once the
// listeners are bound.
func serveUntilSignal(cfg *config.Config, l logs, load func() (*config.Config, error), started func(*server.Server)) int {
	logger := l.own
	tuneGC(logger)
	if os.Geteuid() == 0 {
		logger.Warn("running as root: run moat as an unprivileged user (grant CAP_NET_BIND_SERVICE for ports below 1024)")
	}
	srv, err := server.New(server.Options{
		Config:  cfg,
		Logger:  logger,
		Access:  l.access,
		Events:  event.SlogSink{Logger: l.security},
		Version: Version(),
	})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return ExitFailure
	}
	if err := srv.Start(); err != nil {
		logger.Error("cannot start", "err", err)
		_ = srv.Shutdown(context.Background())
		return ExitFailure
	}
	if link := srv.BootstrapLink(); link != "" {
		logger.Warn("no user exists yet: created the user admin; open the one-time link printed below to choose its password")
		fmt.Fprintf(l.console, "\n  First admin: open this one-time link to set the password of user \"admin\"\n  (it is valid for %s and a new one is printed at each start until then):\n\n    %s\n\n",
			cfg.Accounts.EnrollLinkTTL, link)
	}
	if started != nil {
		started(srv)
	}
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(stop)
	defer signal.Stop(hup)

	code := ExitOK
loop:
	for {
		select {
		case <-hup:
			next, err := load()
			if err == nil {
				err = srv.Reload(next)
			} else {
				srv.ReloadFailed()
			}
			if err != nil {
				logger.Error("reload refused; the previous configuration keeps serving", "err", err)
				continue
			}
			cfg = next
		case sig := <-stop:
			logger.Info("stopping: in-flight requests may finish", "signal", sig.String(), "timeout", cfg.Limits.ShutdownTimeout.D())
			break loop
		case err := <-srv.Errors():
			logger.Error("listener failed", "err", err)
			code = ExitFailure
			break loop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout.D())
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("shutdown", "err", err)
	}
	logger.Info("stopped")
	return code
}

// gcPercent is the garbage collector target Moat runs with unless GOGC is
// set. A gateway's live heap is small (compiled config, pools, connection
// state), so letting it grow to five times that before collecting costs a
// few megabytes and saves 10 to 20% of CPU per request (docs/performance.md).
const gcPercent = 400

func tuneGC(logger *slog.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(gcPercent)
	logger.Debug("garbage collector target set", "gogc", gcPercent)
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// printConfigError prints each problem of a config error on its own line.
func printConfigError(w io.Writer, err error) {
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		for _, e := range multi.Unwrap() {
			printConfigError(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func runConfig(args []string, stdio Stdio) int {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(stdio.Out, configUsage)
			return ExitOK
		}
		fmt.Fprintln(stdio.Err, configUsage)
		return ExitUsage
	}
	fs := newFlags("config check", "moat config check FILE", configCheckHelp, stdio)
	if code := parseFlags(fs, args[1:], stdio); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stdio.Err, "moat config check: want exactly one FILE\nhint: moat config check moat.yaml")
		return ExitUsage
	}
	if _, err := config.Load(fs.Arg(0)); err != nil {
		printConfigError(stdio.Err, err)
		return ExitUsage
	}
	fmt.Fprintln(stdio.Out, "ok")
	return ExitOK
}

const configUsage = `Usage: moat config check FILE

Check a config file and print every problem with its line and column, or "ok".`

const configCheckHelp = `Decode FILE strictly (unknown keys, wrong types and duplicate keys are errors),
apply defaults and validate it. Prints each problem as FILE:LINE:COLUMN: path:
message and exits 2, or prints "ok" and exits 0.`
