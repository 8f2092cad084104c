package rpc

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// jobsPlugin is the batch executor's plugin as BatchJobs sees it
// (scheduler.JobManager): it records the query, opens its datastore, and
// answers with rep or err.
type jobsPlugin struct {
	q      scheduler.JobQuery
	opened scheduler.RunReader
	rep    *scheduler.JobReport
	err    error
}

func (p *jobsPlugin) Name() string                             { return "AWS Batch" }
func (p *jobsPlugin) NewExecutor() (scheduler.Executor, error) { return okExec{}, nil }

func (p *jobsPlugin) Jobs(ctx context.Context, q scheduler.JobQuery) (*scheduler.JobReport, error) {
	p.q, p.opened = q, nil
	if q.Runs != nil {
		st, err := q.Runs()
		if err != nil {
			return nil, err
		}
		p.opened = st
	}
	return p.rep, p.err
}

// BatchJobs translates the request into a query of the batch executor's
// plugin, its report into the response, and its errors' kinds into codes.
func TestBatchJobsTranslates(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	ctx := context.Background()

	// No batch executor in this engine, or one that cannot list jobs.
	for _, plugin := range []scheduler.Plugin{nil, scheduler.Ready("AWS Batch", okExec{})} {
		srv := NewServer(okExec{})
		if plugin != nil {
			if err := srv.Executors.Register(batch.Decorator, plugin); err != nil {
				t.Fatal(err)
			}
		}
		_, err := serveServer(t, srv).BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", AllRuns: true})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "AWS Batch is not available in this engine") {
			t.Errorf("plugin %v: %v", plugin, err)
		}
	}

	p := &jobsPlugin{}
	srv := NewServer(okExec{})
	if err := srv.Executors.Register(batch.Decorator, p); err != nil {
		t.Fatal(err)
	}
	cl := serveServer(t, srv)
	created := time.Now()
	p.rep = &scheduler.JobReport{RunID: "15", Queue: "q", Killed: 1, Jobs: []scheduler.Job{
		{ID: "id-1", Name: "mf-1", Status: "RUNNING", RunID: "15", Step: "start", TaskID: "1", User: "u", Attempt: 2, CreatedAt: created},
		{ID: "id-2", Name: "mf-2", Status: "RUNNABLE", RunID: "15", Step: "work", TaskID: "3", User: "u", Error: "terminate job id-2: denied"},
	}}
	resp, err := cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", RunId: "15", Kill: true})
	if err != nil {
		t.Fatal(err)
	}
	if q := p.q; q.Flow != "F" || q.User != "u" || q.RunID != "15" || q.AllRuns || !q.Kill {
		t.Errorf("query %+v", q)
	}
	if p.opened == nil || p.opened.Location() != root {
		t.Errorf("the plugin opened %v, want the datastore %s", p.opened, root)
	}
	if resp.RunId != "15" || resp.Queue != "q" || resp.Killed != 1 || len(resp.Jobs) != 2 {
		t.Fatalf("response %v", resp)
	}
	if j := resp.Jobs[0]; j.JobId != "id-1" || j.Name != "mf-1" || j.Status != "RUNNING" || j.RunId != "15" || j.Step != "start" ||
		j.TaskId != "1" || j.User != "u" || j.Attempt != 2 || j.Error != "" {
		t.Errorf("job 1: %v", j)
	}
	if j := resp.Jobs[1]; j.JobId != "id-2" || j.Step != "work" || j.TaskId != "3" || j.Error != "terminate job id-2: denied" {
		t.Errorf("job 2: %v", j)
	}

	// The datastore is given to the plugin when the request names one, or
	// the latest run must be found in it (storeFor's error then, as it is).
	for _, tc := range []struct {
		name   string
		req    *pb.BatchJobsRequest
		opener bool
		code   codes.Code
		msg    string
	}{
		{"all runs, no datastore", &pb.BatchJobsRequest{Flow: "F", User: "u", AllRuns: true}, false, codes.OK, ""},
		{"one run, no datastore", &pb.BatchJobsRequest{Flow: "F", User: "u", RunId: "3"}, false, codes.OK, ""},
		{"latest run, no datastore", &pb.BatchJobsRequest{Flow: "F", User: "u"}, true, codes.InvalidArgument, "datastore_root must be an absolute path"},
		{"relative datastore", &pb.BatchJobsRequest{Flow: "F", User: "u", DatastoreRoot: "relative"}, true, codes.InvalidArgument, "absolute"},
	} {
		_, err := cl.BatchJobs(ctx, tc.req)
		if (p.q.Runs != nil) != tc.opener || status.Code(err) != tc.code || !strings.Contains(errMsg(err), tc.msg) {
			t.Errorf("%s: opener %v, error %v; want opener %v, %v %q", tc.name, p.q.Runs != nil, err, tc.opener, tc.code, tc.msg)
		}
	}

	// Errors keep their message; their kind is the code.
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{errs.Invalid("batch jobs: no user (jobs are selected by user)"), codes.InvalidArgument},
		{errs.NotFound("no run of flow F found in %s: give a run id (--run-id) or --my-runs", root), codes.NotFound},
		{errs.Precondition("AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE"), codes.FailedPrecondition},
		{errs.Unavailable("list jobs of flow F in queue q: connection refused"), codes.Unavailable},
		{errors.New("something else"), codes.Internal},
	} {
		p.rep, p.err = nil, tc.err
		_, err := cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", User: "u", AllRuns: true})
		if status.Code(err) != tc.code || status.Convert(err).Message() != tc.err.Error() {
			t.Errorf("plugin error %q: got %v, want %v with the same message", tc.err, err, tc.code)
		}
	}
}

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The engine's real plugin answers BatchJobs: without settings, with the
// one-line configuration error.
func TestBatchJobsWithTheBatchPlugin(t *testing.T) {
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	srv := NewServer(okExec{})
	if err := srv.Executors.Register(batch.Decorator, batch.NewPlugin()); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), ".metaflow")
	if err := datastore.NewLocal(root).PutRun(context.Background(), &datastore.Run{Flow: "F", RunID: "1", User: "u"}); err != nil {
		t.Fatal(err)
	}
	cl := serveServer(t, srv)
	for _, tc := range []struct {
		req  *pb.BatchJobsRequest
		code codes.Code
		msg  string
	}{
		{&pb.BatchJobsRequest{DatastoreRoot: root, User: "u"}, codes.InvalidArgument, "batch jobs: no flow name"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", RunId: "abc"}, codes.InvalidArgument, "run id must be a number"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u"}, codes.FailedPrecondition, "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE"},
	} {
		_, err := cl.BatchJobs(context.Background(), tc.req)
		if status.Code(err) != tc.code || !strings.Contains(errMsg(err), tc.msg) {
			t.Errorf("BatchJobs(%v): %v, want %v %q", tc.req, err, tc.code, tc.msg)
		}
	}
}
