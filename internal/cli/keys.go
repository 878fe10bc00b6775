package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/keyring"
	"github.com/moatgw/moat/internal/server"
)

const keysUsage = `Usage: moat keys <generate|list|rotate> [flags]

Manage the key ring that encrypts secrets at rest (see docs/encryption.md).

  generate                 print a new master key (keep it outside the data directory)
  list --config FILE       list the data keys and their states
  rotate --config FILE     make a new data key and re-encrypt every stored secret with it
  rotate --config FILE --kek REF
                           re-wrap the data keys under a new master key (REF: file:PATH or env:NAME)`

func runKeys(args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(stdio.Err, keysUsage)
		return ExitUsage
	}
	switch args[0] {
	case "generate":
		return runKeysGenerate(args[1:], stdio)
	case "list":
		return runKeysList(args[1:], stdio)
	case "rotate":
		return runKeysRotate(args[1:], stdio)
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stdio.Out, keysUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Err, "moat keys: unknown subcommand %q\n\n%s\n", args[0], keysUsage)
	return ExitUsage
}

func runKeysGenerate(args []string, stdio Stdio) int {
	fs := newFlags("keys generate", "moat keys generate",
		`Print a new master key: 32 random bytes in base64. Store it in a file of mode 0600
outside the data directory (or in a secret manager) and point keys.master_key at it:

  umask 077 && moat keys generate > /etc/moat/master.key
  keys: {master_key: file:/etc/moat/master.key}

Losing the master key means losing every secret Moat stores, backups included.`, stdio)
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stdio.Err, "moat keys generate: takes no arguments")
		return ExitUsage
	}
	k, err := keyring.GenerateMasterKey()
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat keys generate: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Out, k)
	return ExitOK
}

func runKeysList(args []string, stdio Stdio) int {
	fs := newFlags("keys list", "moat keys list --config FILE", "List the key ring's data keys: id, state, creation time and the master key that wraps them.", stdio)
	path := fs.String("config", "", "path to the config file (required)")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*path, stdio, "keys list")
	if cfg == nil {
		return code
	}
	ctx := context.Background()
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "keys list")
	if st == nil {
		return code
	}
	defer st.Close()
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tCREATED\tMASTER KEY")
	for _, k := range st.Ring.Keys() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.State, k.CreatedAt.UTC().Format(time.RFC3339), k.KEKID)
	}
	_ = tw.Flush()
	return ExitOK
}

func runKeysRotate(args []string, stdio Stdio) int {
	fs := newFlags("keys rotate", "moat keys rotate --config FILE [--kek REF] [--batch N]",
		`Without --kek: make a new data key, then re-encrypt every stored secret with it in
batches; the old keys stay readable until every value has moved. An interrupted
rotation resumes when the command is run again.

With --kek REF (file:PATH or env:NAME holding a new master key from moat keys
generate): re-wrap every data key under the new master key. Run it again if it is
interrupted. Then set keys.master_key to REF and restart moat.

A running moat serve picks up a new data key within a minute, or at once on
SIGHUP; a new master key takes effect only when moat serve is restarted with
keys.master_key set to it.`, stdio)
	path := fs.String("config", "", "path to the config file (required)")
	kek := fs.String("kek", "", "reference to a new master key: re-wrap the data keys under it")
	batch := fs.Int("batch", 500, "values re-encrypted per transaction")
	if code := parseFlags(fs, args, stdio); code >= 0 {
		return code
	}
	if *batch < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stdio.Err, "moat keys rotate: --batch must be at least 1 and no arguments are taken")
		return ExitUsage
	}
	cfg, code := loadConfig(*path, stdio, "keys rotate")
	if cfg == nil {
		return code
	}
	ctx := context.Background()
	if *kek != "" {
		return rotateKEK(ctx, cfg, *kek, stdio)
	}
	st, code := openState(ctx, cfg, server.StateOptions{}, stdio, "keys rotate")
	if st == nil {
		return code
	}
	defer st.Close()
	if st.Ring.RotationInProgress() {
		fmt.Fprintln(stdio.Out, "resuming the rotation in progress")
	} else {
		id, err := st.Ring.Rotate(ctx)
		if err != nil {
			fmt.Fprintf(stdio.Err, "moat keys rotate: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(stdio.Out, "new data key %s is active\n", id)
	}
	total := 0
	for {
		done, remaining, err := st.Store.Reencrypt(ctx, *batch)
		if err != nil {
			fmt.Fprintf(stdio.Err, "moat keys rotate: re-encrypting: %v\nhint: run the same command again to resume\n", err)
			return ExitFailure
		}
		total += done
		if remaining == 0 {
			break
		}
		fmt.Fprintf(stdio.Out, "re-encrypted %d values, %d to go\n", total, remaining)
	}
	if err := st.Ring.FinishRotation(ctx); err != nil {
		fmt.Fprintf(stdio.Err, "moat keys rotate: %v\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "rotation complete: %d values re-encrypted; older keys are retired (kept readable for existing backups)\n", total)
	return ExitOK
}

func rotateKEK(ctx context.Context, cfg *config.Config, ref string, stdio Stdio) int {
	v, err := config.ResolveSecret(ref)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat keys rotate: --kek: %v\n", err)
		return ExitUsage
	}
	newMaster, err := keyring.ParseMasterKey(v)
	if err != nil {
		fmt.Fprintf(stdio.Err, "moat keys rotate: --kek: %v\n", err)
		return ExitUsage
	}
	st, code := openState(ctx, cfg, server.StateOptions{PreviousMasterKey: newMaster}, stdio, "keys rotate")
	if st == nil {
		return code
	}
	defer st.Close()
	if err := st.Ring.RewrapKEK(ctx, newMaster); err != nil {
		fmt.Fprintf(stdio.Err, "moat keys rotate: %v\nhint: run the same command again to resume\n", err)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Out, "every data key is now wrapped by the new master key\nnext: set keys.master_key: %s in the config and restart moat\n", ref)
	return ExitOK
}
