// Command metaflow-engine runs R flows: it serves the gRPC API used by the R
// package and has commands to inspect runs and artifacts without R.
package main

import (
	"fmt"
	"os"

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
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
