package rpc

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// batchJobsExecutor is the decorator whose executor's plugin answers the
// BatchJobs RPC (the batch package's).
const batchJobsExecutor = "batch"

// BatchJobs implements the BatchJobs RPC (batch list|kill) with the batch
// executor's plugin (scheduler.JobManager), which selects the runs, queues
// and jobs. The request's datastore, when it names one (or the latest run
// must be found), is opened only if the plugin needs it.
func (s *Server) BatchJobs(ctx context.Context, req *pb.BatchJobsRequest) (*pb.BatchJobsResponse, error) {
	q := scheduler.JobQuery{Flow: req.Flow, User: req.User, RunID: req.RunId, AllRuns: req.AllRuns, Kill: req.Kill}
	if req.DatastoreRoot != "" || q.Latest() {
		q.Runs = func() (scheduler.RunReader, error) { return storeFor(req.DatastoreRoot) }
	}
	p, _ := s.Executors.Plugin(batchJobsExecutor)
	jm, ok := p.(scheduler.JobManager)
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "AWS Batch is not available in this engine")
	}
	rep, err := jm.Jobs(ctx, q)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &pb.BatchJobsResponse{RunId: rep.RunID, Queue: rep.Queue, Killed: int32(rep.Killed)}
	for _, j := range rep.Jobs {
		resp.Jobs = append(resp.Jobs, &pb.BatchJob{
			JobId: j.ID, Name: j.Name, Status: j.Status, RunId: j.RunID, Step: j.Step, TaskId: j.TaskID,
			User: j.User, Attempt: int32(j.Attempt), Error: j.Error,
		})
	}
	return resp, nil
}
