// Command metaflow-engine runs R flows: it serves the gRPC API used by the R
// package and has commands to inspect runs and artifacts without R.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

var version = "0.1.0"

func main() {
	root := &cobra.Command{
		Use:           "metaflow-engine",
		Short:         "The engine behind the metaflow R package",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(serveCmd(), runsCmd(), artifactCmd(), taskRunnerCmd())
	// The first Ctrl-C stops what the commands read (their datastore calls
	// take this context), a second one the process (serve and task-runner
	// handle their signals themselves).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
