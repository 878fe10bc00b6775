package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X github.com/moatgw/moat/internal/cli.version=v1.2.3 -X ...commit=abc".
var (
	version = ""
	commit  = ""
)

// Version returns Moat's module version, or "(devel)" for a build from a checkout.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	c, dirty := "unknown", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		c += "-dirty"
	}
	return c
}

func runVersion(args []string, stdio Stdio) int {
	fs := newFlags("version", "moat version", "Print Moat's version, the commit it was built from and the Go version.", stdio)
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stdio.Err, "moat version: takes no arguments")
		return ExitUsage
	}
	fmt.Fprintf(stdio.Out, "moat %s\ncommit %s\n%s %s/%s\n", Version(), buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return ExitOK
}
