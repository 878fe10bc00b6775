// Command moat is a security gateway for HTTP backends.
package main

import (
	"os"

	"github.com/moatgw/moat/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
