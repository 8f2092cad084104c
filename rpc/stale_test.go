package rpc

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// Runs whose engine stopped read as failed, with their running tasks, in
// every answer that reports a status; live and ended runs as recorded.
func TestReadersReportRunsWhoseEngineStoppedAsFailed(t *testing.T) {
	c := serve(t, "")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	now := time.Now()
	cases := []struct {
		name   string
		status string
		beat   time.Time
		want   string
	}{
		{"stale", datastore.StatusRunning, now.Add(-time.Minute), datastore.StatusFailed},
		{"fresh", datastore.StatusRunning, now, datastore.StatusRunning},
		{"completed", datastore.StatusCompleted, now.Add(-time.Hour), datastore.StatusCompleted},
	}
	ids := map[string]string{}
	for _, tc := range cases {
		run := &datastore.Run{Flow: "F", Status: tc.status, Steps: []string{"start"}, CreatedAt: tc.beat, HeartbeatAt: tc.beat, HeartbeatSeconds: 1}
		if err := store.NewRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		ids[tc.name] = run.RunID
		task := &datastore.Task{Flow: "F", RunID: run.RunID, Step: "start", TaskID: "1", Status: tc.status,
			Attempts: []datastore.Attempt{{Status: tc.status, PID: 12}}}
		if err := store.PutTask(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.ListRuns(ctx, &pb.ListRunsRequest{DatastoreRoot: root, Flow: "F"})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]*pb.RunInfo{}
	for _, r := range list.Runs {
		listed[r.RunId] = r
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[tc.name]
			stopped := tc.want != tc.status
			check := func(where, status, errMsg string) {
				t.Helper()
				if status != tc.want {
					t.Errorf("%s: status %s, want %s", where, status, tc.want)
				}
				if stopped != strings.Contains(errMsg, "its engine stopped (last heartbeat at ") {
					t.Errorf("%s: error %q", where, errMsg)
				}
			}
			if r := listed[id]; r == nil {
				t.Fatalf("ListRuns did not list run %s", id)
			} else {
				check("ListRuns", r.Status, r.Error)
				if stopped && r.FinishedAt == "" {
					t.Errorf("ListRuns: a stopped run has no end")
				}
			}
			info, err := c.GetRun(ctx, &pb.GetRunRequest{DatastoreRoot: root, Flow: "F", RunId: id})
			if err != nil {
				t.Fatal(err)
			}
			check("GetRun", info.Status, info.Error)
			if len(info.Steps) != 1 || len(info.Steps[0].Tasks) != 1 {
				t.Fatalf("GetRun steps %v", info.Steps)
			}
			ti := info.Steps[0].Tasks[0]
			check("GetRun's task", ti.Status, ti.Error)
			ti, err = c.GetTask(ctx, &pb.GetTaskRequest{DatastoreRoot: root, Flow: "F", RunId: id, Step: "start", TaskId: "1"})
			if err != nil {
				t.Fatal(err)
			}
			check("GetTask", ti.Status, ti.Error)
		})
	}
}
