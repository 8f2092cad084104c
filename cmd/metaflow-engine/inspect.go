package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

func defaultDatastore() string {
	base := os.Getenv("METAFLOW_DATASTORE_SYSROOT_LOCAL")
	if base == "" {
		base, _ = os.Getwd()
	}
	return filepath.Join(base, ".metaflow")
}

func runsCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "runs FLOW",
		Short: "List the runs of a flow, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := datastore.Open(root)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ids, err := store.ListRuns(ctx, args[0])
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return fmt.Errorf("flow %s has no runs in %s", args[0], store.Location())
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tSTATUS\tUSER\tCREATED\tFINISHED\tTAGS")
			for _, id := range ids {
				r, err := store.GetRun(ctx, args[0], id)
				if err != nil {
					continue
				}
				datastore.Settle(time.Now(), r)
				fin := ""
				if !r.FinishedAt.IsZero() {
					fin = r.FinishedAt.Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.Status, r.User,
					r.CreatedAt.Format("2006-01-02 15:04:05"), fin, strings.Join(r.Tags, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&root, "datastore", defaultDatastore(), "local datastore root (the .metaflow folder; with METAFLOW_DEFAULT_DATASTORE=s3, where S3 files are cached)")
	return cmd
}

func artifactCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "artifact FLOW/RUN/STEP/TASK [NAME]",
		Short: "List a task's artifacts, or print one",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			parts := strings.Split(args[0], "/")
			if len(parts) != 4 {
				return fmt.Errorf("want FLOW/RUN/STEP/TASK (for example ForeachFlowR/3/end/25), got %q", args[0])
			}
			store, err := datastore.Open(root)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := store.GetTask(ctx, parts[0], parts[1], parts[2], parts[3])
			if err != nil {
				return err
			}
			if t.Status != datastore.StatusCompleted {
				return fmt.Errorf("task %s is %s: only completed tasks have artifacts", args[0], t.Status)
			}
			arts, err := datastore.ArtifactsOf(ctx, store, t)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				names := make([]string, 0, len(arts))
				for n := range arts {
					names = append(names, n)
				}
				sort.Strings(names)
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSIZE\tSHA256")
				for _, n := range names {
					fmt.Fprintf(tw, "%s\t%d\t%s\n", n, arts[n].Size, arts[n].SHA)
				}
				return tw.Flush()
			}
			a, ok := arts[args[1]]
			if !ok {
				return fmt.Errorf("task %s has no artifact %q (list them with: metaflow-engine artifact %s)", args[0], args[1], args[0])
			}
			// Read through the checked reader: a corrupt blob is an error
			// (errs.ErrCorrupt), not a value.
			rc, err := store.Open(ctx, parts[0], a.SHA)
			if err != nil {
				return fmt.Errorf("artifact %s of %s: %w", args[1], args[0], err)
			}
			defer rc.Close()
			if err := printArtifact(cmd.OutOrStdout(), rc); err != nil {
				return fmt.Errorf("artifact %s of %s: %w", args[1], args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "datastore", defaultDatastore(), "local datastore root (the .metaflow folder; with METAFLOW_DEFAULT_DATASTORE=s3, where S3 files are cached)")
	return cmd
}
