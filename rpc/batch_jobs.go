package rpc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/datastore"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// BatchJobsClient is what the BatchJobs RPC needs from AWS Batch
// (*batch.Client).
type BatchJobsClient interface {
	List(ctx context.Context, queue string, f batch.ListFilter) ([]batch.Job, error)
	Terminate(ctx context.Context, id, reason string) error
	// JobLog returns the last n lines of a job's CloudWatch log.
	JobLog(ctx context.Context, id string, n int) ([]string, error)
}

// batchJobsTerminateReason is the reason Batch records for killed jobs.
const batchJobsTerminateReason = "killed by metaflow batch kill"

// runReader is what BatchJobs reads from the datastore (datastore.Store).
type runReader interface {
	ListRuns(flow string) ([]string, error)
	GetRun(flow, runID string) (*datastore.Run, error)
}

// BatchJobs implements the BatchJobs RPC (batch list|kill): the unfinished
// jobs of one flow, of one run (by default the latest run in the datastore)
// or, with all_runs, of every run, and always of one user. Selection is
// exact (batch.ListFilter), so jobs of other flows, runs or users are never
// listed nor terminated. The queues searched are the configured one and
// every batch(queue=) of the selected runs' graphs (batchQueues); every
// queue is listed before anything is terminated. The response's queue is
// the configured one.
func (s *Server) BatchJobs(ctx context.Context, req *pb.BatchJobsRequest) (*pb.BatchJobsResponse, error) {
	if req.Flow == "" {
		return nil, status.Error(codes.InvalidArgument, "batch jobs: no flow name")
	}
	if req.User == "" {
		return nil, status.Error(codes.InvalidArgument, "batch jobs: no user (jobs are selected by user)")
	}
	if req.AllRuns && req.RunId != "" {
		return nil, status.Error(codes.InvalidArgument, "batch jobs: a run id and all runs are mutually exclusive")
	}
	if req.RunId != "" {
		if _, err := strconv.ParseUint(req.RunId, 10, 64); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "batch jobs: run id must be a number, got %q", req.RunId)
		}
	}
	// The configuration is checked first: without it nothing else matters.
	if s.NewBatchJobs == nil {
		return nil, status.Error(codes.FailedPrecondition, "AWS Batch is not available in this engine")
	}
	c, queue, err := s.NewBatchJobs()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	runID := req.RunId
	latest := !req.AllRuns && runID == ""
	// The datastore is needed to find the latest run; otherwise only to find
	// the queues the runs used, so without one (no root given) only the
	// configured queue is searched. A datastore that cannot be read is an
	// error: a kill must not quietly skip the queues it would have named.
	var store runReader
	where := req.DatastoreRoot
	if latest || req.DatastoreRoot != "" {
		st, err := storeFor(req.DatastoreRoot)
		if err != nil {
			return nil, err
		}
		store, where = st, st.Location()
	}
	var runs []string // the runs whose graphs name queues
	switch {
	case latest:
		ids, err := store.ListRuns(req.Flow)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if len(ids) == 0 {
			return nil, status.Errorf(codes.NotFound, "no run of flow %s found in %s: give a run id (--run-id) or --my-runs", req.Flow, where)
		}
		// The newest run that may be this user's: in a shared (S3)
		// datastore the newest run may be somebody else's. A run without
		// metadata (being created, or its folder only) may be anybody's.
		for _, id := range ids {
			run, err := store.GetRun(req.Flow, id)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, status.Errorf(codes.Unavailable, "read run %s of %s in %s: %v", id, req.Flow, where, err)
			}
			if err != nil || req.User == "" || run.User == "" || run.User == req.User {
				runID = id
				break
			}
		}
		if runID == "" {
			return nil, status.Errorf(codes.NotFound, "no run of flow %s by %s found in %s: give a run id (--run-id) or --my-runs", req.Flow, req.User, where)
		}
		runs = []string{runID}
	case req.AllRuns:
		if store != nil {
			if runs, err = store.ListRuns(req.Flow); err != nil {
				return nil, status.Errorf(codes.Unavailable, "list the runs of %s in %s: %v", req.Flow, where, err)
			}
		}
	default:
		runs = []string{runID}
	}
	queues, usedBy, err := batchQueues(store, req.Flow, runs, queue)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "find the queues of %s's runs in %s: %v", req.Flow, where, err)
	}

	flt := batch.ListFilter{Flow: req.Flow, User: req.User, Run: runID}
	var jobs []batch.Job
	seen := map[string]bool{}
	for _, q := range queues {
		js, err := c.List(ctx, q, flt)
		if err != nil {
			msg := err.Error()
			if q != queue {
				by, what := usedBy[q], "run"
				if len(by) > 1 {
					what = "runs"
				}
				if len(by) > 3 {
					by = append(by[:3:3], "...")
				}
				msg += fmt.Sprintf(" (queue %s is named by batch(queue=) in %s %s; --run-id selects other runs)", q, what, strings.Join(by, ", "))
			}
			// Nothing is terminated unless every queue could be listed.
			return nil, status.Error(codes.Unavailable, msg)
		}
		for _, j := range js {
			if !seen[j.ID] { // a queue can be named both by name and by ARN
				seen[j.ID] = true
				jobs = append(jobs, j)
			}
		}
	}
	if len(queues) > 1 {
		sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].CreatedAt.After(jobs[b].CreatedAt) })
	}

	resp := &pb.BatchJobsResponse{RunId: runID, Queue: queue}
	var failed []error
	for _, j := range jobs {
		bj := &pb.BatchJob{
			JobId: j.ID, Name: j.Name, Status: string(j.Status), RunId: j.Labels.Run,
			Step: j.Labels.Step, TaskId: j.Labels.Task, User: j.Labels.User, Attempt: int32(j.Labels.Attempt),
		}
		if req.Kill {
			if err := c.Terminate(ctx, j.ID, batchJobsTerminateReason); err != nil {
				bj.Error = err.Error()
				failed = append(failed, err)
			} else {
				resp.Killed++
			}
		}
		resp.Jobs = append(resp.Jobs, bj)
	}
	if len(failed) > 0 && resp.Killed == 0 {
		// Nothing could be terminated (e.g. no permission): an error, not a
		// list of per-job failures.
		return nil, status.Errorf(codes.Unavailable, "could not terminate any of %d job(s): %v", len(failed), failed[0])
	}
	return resp, nil
}

// batchQueues returns the queues to search for the jobs of runs of flow:
// def (the configured queue) first, then every distinct non-empty queue
// argument of a batch decorator in the runs' recorded graphs, in order of
// first appearance, each once; and for each of the latter the runs naming
// it (with --with batch:queue=, recorded as the run's With). A run without
// metadata adds nothing; metadata that cannot be read is an error.
func batchQueues(store runReader, flow string, runs []string, def string) ([]string, map[string][]string, error) {
	queues := []string{def}
	usedBy := map[string][]string{}
	if store == nil {
		return queues, usedBy, nil
	}
	for _, id := range runs {
		run, err := store.GetRun(flow, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		// --with batch:queue=... applies to every step.
		decos := append([]datastore.DecoratorMeta{}, run.With...)
		for _, st := range run.Graph {
			decos = append(decos, st.Decorators...)
		}
		for _, d := range decos {
			q := d.Args["queue"]
			if d.Name != "batch" || q == "" || q == def {
				continue
			}
			if _, ok := usedBy[q]; !ok {
				queues = append(queues, q)
			}
			if u := usedBy[q]; len(u) == 0 || u[len(u)-1] != id {
				usedBy[q] = append(u, id)
			}
		}
	}
	return queues, usedBy, nil
}
