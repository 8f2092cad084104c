package rpc

import (
	"context"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// BatchJobsClient is what the BatchJobs RPC needs from AWS Batch
// (*batch.Client).
type BatchJobsClient interface {
	List(ctx context.Context, queue string, f batch.ListFilter) ([]batch.Job, error)
	Terminate(ctx context.Context, id, reason string) error
}

// batchJobsTerminateReason is the reason Batch records for killed jobs.
const batchJobsTerminateReason = "killed by metaflow batch kill"

// BatchJobs implements the BatchJobs RPC (batch list|kill): the unfinished
// jobs of one flow in the configured queue, of one run (by default the
// latest run in the datastore) or, with all_runs, of every run, and always
// of one user. Selection is exact (batch.ListFilter), so jobs of other
// flows, runs or users are never listed nor terminated.
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
	if !req.AllRuns && runID == "" {
		store, err := storeFor(req.DatastoreRoot)
		if err != nil {
			return nil, err
		}
		ids, err := store.ListRuns(req.Flow)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if len(ids) == 0 {
			return nil, status.Errorf(codes.NotFound, "no run of flow %s found in %s: give a run id (--run-id) or --my-runs", req.Flow, req.DatastoreRoot)
		}
		runID = ids[0]
	}
	jobs, err := c.List(ctx, queue, batch.ListFilter{Flow: req.Flow, User: req.User, Run: runID})
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
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
