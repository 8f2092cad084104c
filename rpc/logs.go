package rpc

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// Logs implements the Logs RPC.
func (s *Server) Logs(ctx context.Context, req *pb.LogsRequest) (*pb.LogsResponse, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(strings.Trim(req.Pathspec, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, status.Errorf(codes.InvalidArgument, "logs needs RUN/STEP or RUN/STEP/TASK (for example 15/end), got %q", req.Pathspec)
	}
	runID, step := parts[0], parts[1]
	if _, err := store.GetRun(ctx, req.Flow, runID); err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "run %s of flow %s not found: check the run id (list runs with: metaflow-engine runs %s)", runID, req.Flow, req.Flow)
		}
		return nil, grpcError(err)
	}
	ids := []string{}
	if len(parts) == 3 {
		ids = append(ids, parts[2])
	} else if ids, err = store.ListTasks(ctx, req.Flow, runID, step); err != nil {
		return nil, grpcError(err)
	}
	if len(ids) == 0 {
		return nil, status.Errorf(codes.NotFound, "run %s of flow %s has no tasks for step %q", runID, req.Flow, step)
	}
	resp := &pb.LogsResponse{}
	remote := s.attemptLogReaders(ctx)
	for _, id := range ids {
		t, err := store.GetTask(ctx, req.Flow, runID, step, id)
		if errors.Is(err, errs.ErrNotFound) && len(parts) == 2 {
			continue // its record went away since it was listed
		}
		if err != nil {
			return nil, grpcError(err)
		}
		tl := &pb.TaskLog{Step: step, TaskId: id}
		if n := len(t.Attempts); n > 0 {
			last := t.Attempts[n-1]
			tl.Attempt = int32(last.Attempt)
			out, errb, ok := []byte(nil), []byte(nil), false
			// An attempt of a remote executor that has not ended (or whose
			// engine died before it could record the end): its logs are
			// where its job publishes them (Launch.Submitted recorded that).
			if t.Status == datastore.StatusRunning && (last.LogsURL != "" || last.JobID != "") {
				for _, rd := range remote {
					if out, errb, ok = rd.Read(ctx, last); ok {
						break
					}
				}
			}
			if !ok {
				if out, err = store.ReadLog(ctx, req.Flow, runID, step, id, last.Attempt, datastore.Stdout); err != nil {
					return nil, grpcError(err)
				}
				if errb, err = store.ReadLog(ctx, req.Flow, runID, step, id, last.Attempt, datastore.Stderr); err != nil {
					return nil, grpcError(err)
				}
			}
			// Logs keep the step's raw bytes; protobuf strings must be UTF-8.
			tl.Stdout = strings.ToValidUTF8(string(out), "\uFFFD")
			tl.Stderr = strings.ToValidUTF8(string(errb), "\uFFFD")
		}
		resp.Tasks = append(resp.Tasks, tl)
	}
	return resp, nil
}

// attemptLogReaders returns a reader for this request from each registered
// plugin that reads its attempts' logs (scheduler.LogSource), in the
// registry's order.
func (s *Server) attemptLogReaders(ctx context.Context) []scheduler.AttemptLogReader {
	var out []scheduler.AttemptLogReader
	for _, deco := range s.Executors.Decorators() {
		p, _ := s.Executors.Plugin(deco)
		if src, ok := p.(scheduler.LogSource); ok {
			out = append(out, src.AttemptLogs(ctx))
		}
	}
	return out
}
