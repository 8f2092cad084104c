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

// A Batch run whose engine stopped: GetRun lists its job as left running
// (the job does not die with the engine), next to the jobs its record
// names; a local task's attempt is not listed.
func TestGetRunListsJobsLeftRunning(t *testing.T) {
	c := serve(t, "")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	old := time.Now().Add(-time.Hour)
	run := &datastore.Run{Flow: "F", Status: datastore.StatusRunning, Steps: []string{"start", "work"}, CreatedAt: old, HeartbeatAt: old,
		HeartbeatSeconds: 1, JobsLeftRunning: []datastore.LeftJob{{JobID: "job-0", Step: "start", TaskID: "1", Executor: "AWS Batch", Decorator: "batch", Error: "unreachable"}}}
	if err := store.NewRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	for _, task := range []*datastore.Task{
		{Flow: "F", RunID: run.RunID, Step: "work", TaskID: "2", Status: datastore.StatusRunning,
			Attempts: []datastore.Attempt{{Status: datastore.StatusRunning, JobID: "job-1"}}},
		{Flow: "F", RunID: run.RunID, Step: "work", TaskID: "3", Status: datastore.StatusRunning,
			Attempts: []datastore.Attempt{{Status: datastore.StatusRunning, PID: 12}}},
	} {
		if err := store.PutTask(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	info, err := c.GetRun(ctx, &pb.GetRunRequest{DatastoreRoot: root, Flow: "F", RunId: run.RunID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range info.JobsLeftRunning {
		got = append(got, j.JobId+"@"+j.Step+"/"+j.TaskId)
	}
	if strings.Join(got, ",") != "job-0@start/1,job-1@work/2" {
		t.Fatalf("jobs left running %v", got)
	}
	if e := info.JobsLeftRunning[1].Error; !strings.Contains(e, "its engine stopped") || !strings.Contains(e, "batch kill --run-id "+run.RunID) {
		t.Fatalf("the job's cause reads %q", e)
	}
}
