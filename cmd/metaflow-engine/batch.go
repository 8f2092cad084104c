package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/metaflow-r/metaflow/batch"
)

// taskRunnerCmd is what an AWS Batch job runs (see batch.RunTask).
func taskRunnerCmd() *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:    "task-runner --spec s3://BUCKET/KEY",
		Short:  "Run one task inside an AWS Batch job (started by the engine, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if spec == "" {
				return fmt.Errorf("task-runner needs --spec s3://BUCKET/KEY")
			}
			// Batch stops a job with SIGTERM (then SIGKILL): kill the task.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			code, err := batch.RunTask(ctx, spec)
			if err != nil {
				fmt.Fprintln(os.Stderr, "metaflow task-runner:", err)
				if code == 0 {
					code = 1
				}
			}
			os.Exit(code)
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "S3 URL of the task spec")
	return cmd
}
