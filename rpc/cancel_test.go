package rpc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// jobExec runs the slow step as a remote job that waits to be stopped,
// and cannot be when stuck (as a Batch job whose TerminateJob keeps
// failing); a run abandoned by its client leaves it running.
type jobExec struct{ stuck bool }

func (e jobExec) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	if l.Spec.Step != "slow" {
		return okExec{}.Run(ctx, l)
	}
	l.Submitted("job-7", "s3://bucket/job-7")
	l.Started(0)
	l.Line(false, "hi from slow")
	<-ctx.Done()
	switch {
	case scheduler.Abandoned(ctx):
		return -1, &scheduler.NotStopped{JobID: "job-7", Err: context.Cause(ctx)}
	case e.stuck:
		return -1, &scheduler.NotStopped{JobID: "job-7", Err: errors.New("TerminateJob failed for 2s: connection refused")}
	}
	return -1, ctx.Err()
}

type jobPlugin struct{ exec scheduler.Executor }

func (jobPlugin) Name() string                               { return "AWS Batch" }
func (p jobPlugin) NewExecutor() (scheduler.Executor, error) { return p.exec, nil }

// startSlow starts a run whose slow step runs on the job executor (through
// the batch decorator) and returns once that job is waiting.
func startSlow(t *testing.T, ctx context.Context, exec scheduler.Executor) (pb.EngineClient, *pb.RunRequest, pb.Engine_StartRunClient, string) {
	t.Helper()
	srv := NewServer(okExec{})
	if err := srv.Executors.Register("batch", jobPlugin{exec}); err != nil {
		t.Fatal(err)
	}
	c := serveServer(t, srv)
	req := request(t, "slow")
	req.Flow.Steps[1].Decorators = []*pb.Decorator{{Name: "batch"}}
	stream, err := c.StartRun(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	runID := ""
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.RunId != "" {
			runID = ev.RunId
		}
		if strings.Contains(ev.Line, "hi from slow") {
			return c, req, stream, runID
		}
	}
}

// CancelRun says per job whether it was ended, and never counts one that
// was not among the killed tasks.
func TestCancelRunReportsEachJob(t *testing.T) {
	for _, stuck := range []bool{false, true} {
		c, req, _, runID := startSlow(t, context.Background(), jobExec{stuck: stuck})
		resp, err := c.CancelRun(context.Background(), &pb.CancelRunRequest{RunId: runID, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
		if err != nil {
			t.Fatal(err)
		}
		wantKilled := int32(1)
		if stuck {
			wantKilled = 0
		}
		if resp.KilledTasks != wantKilled || len(resp.Jobs) != 1 {
			t.Fatalf("stuck %v: CancelRun replied %v", stuck, resp)
		}
		j := resp.Jobs[0]
		if j.JobId != "job-7" || j.Step != "slow" || j.Executor != "AWS Batch" || j.Decorator != "batch" ||
			j.Ended == stuck || (stuck && !strings.Contains(j.Error, "connection refused")) {
			t.Fatalf("stuck %v: job report %v", stuck, j)
		}
	}
}

// A client that goes away without CancelRun abandons its run: the job is
// left running (not terminated) and the run's record says why, which job
// and how to end it.
func TestClientGoneLeavesJobsRunning(t *testing.T) {
	defer func(g time.Duration) { abandonGrace = g }(abandonGrace)
	abandonGrace = 200 * time.Millisecond // no CancelRun is coming
	ctx, cancel := context.WithCancel(context.Background())
	_, req, _, runID := startSlow(t, ctx, jobExec{})
	cancel() // the R session died
	store := datastore.NewLocal(req.Options.DatastoreRoot)
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, err := store.GetRun(context.Background(), "RPCFlow", runID)
		if err == nil && run.Status == datastore.StatusFailed {
			if len(run.JobsLeftRunning) != 1 || run.JobsLeftRunning[0].JobID != "job-7" ||
				!strings.Contains(run.Error, "went away") || !strings.Contains(run.Error, "batch kill --run-id "+runID) {
				t.Fatalf("run record: %+v", run)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not failed 10 s after its client went away: %+v %v", run, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// R interrupted by Ctrl-C drops its stream just before CancelRun arrives:
// the run is still cancelled (its job terminated), not abandoned.
func TestCancelRunJustAfterTheStreamDropped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, req, _, runID := startSlow(t, ctx, jobExec{})
	cancel()
	time.Sleep(200 * time.Millisecond)
	resp, err := c.CancelRun(context.Background(), &pb.CancelRunRequest{RunId: runID, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil || resp.KilledTasks != 1 || len(resp.Jobs) != 1 || !resp.Jobs[0].Ended {
		t.Fatalf("CancelRun: %v %v", resp, err)
	}
}
