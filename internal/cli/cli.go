// Package cli implements the moat command line: one file per subcommand,
// each parsing its own flags and returning an exit code (0 ok, 1 runtime
// failure, 2 usage or configuration error).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Stdio are the streams a command reads and writes.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

type command struct {
	name    string
	summary string
	run     func(args []string, io Stdio) int
}

func commands() []command {
	return []command{
		{"serve", "run the gateway from a config file", runServe},
		{"demo", "run the gateway in front of a demo application, with a generated config", runDemo},
		{"config", "check a config file (config check FILE)", runConfig},
		{"db", "database migrations and least-privilege checks", runDB},
		{"keys", "the key ring that encrypts secrets at rest", runKeys},
		{"user", "local accounts: add, list, disable, reset, sessions", runUser},
		{"apikey", "API keys for programs: create, list, revoke, rotate", runAPIKey},
		{"policy", "test a request against a route's access rules; lint them", runPolicy},
		{"backup", "encrypted backups: create, verify, restore", runBackup},
		{"audit", "the hash-chained audit log: verify, tail", runAudit},
		{"version", "print the version", runVersion},
	}
}

// Main runs the command line with args (without the program name) and
// returns the exit code.
func Main(args []string, stdio Stdio) int {
	if len(args) == 0 {
		usage(stdio.Err)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdio.Out)
		return ExitOK
	case "-version", "--version":
		return runVersion(nil, stdio)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdio)
		}
	}
	fmt.Fprintf(stdio.Err, "moat: unknown command %q\n\n", args[0])
	usage(stdio.Err)
	return ExitUsage
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Moat is a security gateway for HTTP backends.\n\nUsage:\n  moat <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'moat <command> --help' for a command's flags.\nStart with 'moat demo', then read docs/ for the configuration reference.\n")
	_, _ = io.WriteString(w, b.String())
}

// newFlags returns a flag set whose usage text starts with synopsis and
// description.
func newFlags(name, synopsis, description string, stdio Stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\n", synopsis, description)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and returns the exit code to use when parsing
// ended the command (help asked for, or a usage error), or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string, stdio Stdio) int {
	// The flag package writes its own messages; keep them until it is known
	// whether they belong on stdout (help asked for) or stderr (an error).
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdio.Out)
		fs.Usage()
		return ExitOK
	case err != nil:
		_, _ = io.WriteString(stdio.Err, msgs.String())
		return ExitUsage
	}
	fs.SetOutput(stdio.Err)
	return -1
}
