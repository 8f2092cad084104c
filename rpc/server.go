// Package rpc serves the engine's gRPC API (proto/engine.proto): it turns a
// RunRequest into a scheduled run, streams its console, cancels runs, and
// answers the client API's questions from the datastore. It translates
// between protobuf messages and engine calls only; what executors do (AWS
// Batch included) is behind the scheduler's Registry and its plugins'
// capabilities, and engine errors become gRPC codes in one place (grpcError).
//
// Files: server.go (the server, datastore opening), runs.go (Validate,
// StartRun, CancelRun), queries.go (ListFlows, ListRuns, GetRun, GetTask),
// logs.go (Logs), artifacts.go (ReadArtifact), jobs.go (BatchJobs),
// errors.go (error kinds to codes), serve.go (listening, authentication).
package rpc

import (
	"context"
	"path/filepath"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// Server implements enginepb.EngineServer.
type Server struct {
	pb.UnimplementedEngineServer
	// Exec runs the tasks of steps without an executor decorator (local).
	Exec scheduler.Executor
	// Executors holds the executors that step decorators choose (batch),
	// each made by its plugin when a run first needs it; their plugins'
	// capabilities serve Logs (scheduler.LogSource) and BatchJobs
	// (scheduler.JobManager).
	Executors *scheduler.Registry
	// OnShutdown is called (once) when a client asks an embedded engine to stop.
	OnShutdown func()

	mu     sync.Mutex
	active map[string]*activeRun
	once   sync.Once
}

type activeRun struct {
	run    *scheduler.Run
	cancel context.CancelCauseFunc // nil: cancel; scheduler.ErrAbandoned: client gone
	done   chan struct{}
}

// NewServer returns a server that runs tasks with exec, and with the
// executors registered in its Executors.
func NewServer(exec scheduler.Executor) *Server {
	return &Server{Exec: exec, Executors: scheduler.NewRegistry(), active: map[string]*activeRun{}}
}

// storeFor opens the datastore the settings select (local by default, in
// root; with METAFLOW_DEFAULT_DATASTORE=s3 in S3, caching files in root).
func storeFor(root string) (datastore.Store, error) {
	if root == "" || !filepath.IsAbs(root) {
		return nil, status.Errorf(codes.InvalidArgument, "datastore_root must be an absolute path, got %q", root)
	}
	store, err := datastore.Open(root)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return store, nil
}

// Shutdown implements the Shutdown RPC.
func (s *Server) Shutdown(ctx context.Context, req *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	if s.OnShutdown == nil {
		return nil, status.Error(codes.PermissionDenied, "this engine was started with serve and is not stopped by clients")
	}
	s.once.Do(func() { go s.OnShutdown() })
	return &pb.ShutdownResponse{}, nil
}
