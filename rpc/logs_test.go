package rpc

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/s3io"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// TestLogsOfBatchAttempts: a Batch attempt that has not ended shows the
// logs its task runner uploads as they grow, else its CloudWatch stream,
// else the local files; an ended attempt shows what the datastore kept.
func TestLogsOfBatchAttempts(t *testing.T) {
	startFrozenMoto(t)
	ctx := context.Background()
	s3c, err := s3io.FromEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3c.CreateBucket(ctx, "logs"); err != nil {
		t.Fatal(err)
	}
	live := "s3://logs/p/F/1/start/1/0-abc"
	for k, v := range map[string]string{"p/F/1/start/1/0-abc/stdout.log": "live out\n", "p/F/1/start/1/0-abc/stderr.log": "live err\n"} {
		if err := s3c.PutBytes(ctx, "logs", k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	if err := store.PutRun(&datastore.Run{Flow: "F", RunID: "1", Status: datastore.StatusRunning}); err != nil {
		t.Fatal(err)
	}
	tasks := []struct {
		id, status   string
		at           datastore.Attempt
		local        string
		stdout, errs string
	}{
		{"1", datastore.StatusRunning, datastore.Attempt{JobID: "job-1", LogsURL: live}, "local 1\n", "live out\n", "live err\n"},
		{"2", datastore.StatusRunning, datastore.Attempt{JobID: "job-2", LogsURL: "s3://logs/p/F/1/start/2/0-x"}, "local 2\n", "cw 1\ncw 2\n", ""},
		{"3", datastore.StatusRunning, datastore.Attempt{JobID: "job-3"}, "local 3\n", "local 3\n", ""},
		{"4", datastore.StatusCompleted, datastore.Attempt{JobID: "job-1", LogsURL: live}, "final 4\n", "final 4\n", ""},
		{"5", datastore.StatusRunning, datastore.Attempt{PID: 7}, "local 5\n", "local 5\n", ""},
	}
	for _, tc := range tasks {
		task := &datastore.Task{Flow: "F", RunID: "1", Step: "start", TaskID: tc.id, Status: tc.status, Attempts: []datastore.Attempt{tc.at}}
		if err := store.PutTask(task); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(store.LogPath("F", "1", "start", tc.id, 0, "stdout"), []byte(tc.local), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServer(okExec{})
	fake := &fakeJobs{logs: map[string][]string{"job-2": {"cw 1", "cw 2"}}}
	srv.NewBatchJobs = func() (BatchJobsClient, string, error) { return fake, "q", nil }
	cl := serveServer(t, srv)
	resp, err := cl.Logs(ctx, &pb.LogsRequest{DatastoreRoot: root, Flow: "F", Pathspec: "1/start"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Tasks) != len(tasks) {
		t.Fatalf("%d tasks, want %d", len(resp.Tasks), len(tasks))
	}
	for i, tc := range tasks {
		got := resp.Tasks[i]
		if got.TaskId != tc.id || got.Stdout != tc.stdout || got.Stderr != tc.errs {
			t.Errorf("task %s: stdout %q stderr %q, want %q and %q", got.TaskId, got.Stdout, got.Stderr, tc.stdout, tc.errs)
		}
	}
}
