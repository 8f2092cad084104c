package rpc

import (
	"context"
	"errors"
	"slices"
	"strconv"
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
		n := len(t.Attempts)
		i := n - 1 // the latest attempt, unless another is asked for
		if req.HasAttempt {
			if i = slices.IndexFunc(t.Attempts, func(a datastore.Attempt) bool { return a.Attempt == int(req.Attempt) }); i < 0 {
				if len(parts) == 3 {
					return nil, status.Errorf(codes.NotFound, "task %s/%s/%s has no attempt %d: %s",
						runID, step, id, req.Attempt, attemptNumbers(t.Attempts))
				}
				continue // this task of the step did not get that far
			}
		}
		if n > 0 {
			at, latest := t.Attempts[i], i == n-1
			tl.Attempt = int32(at.Attempt)
			out, errb, ok := []byte(nil), []byte(nil), false
			// An attempt of a remote executor that has not ended (or whose
			// engine died before it could record the end): its logs are
			// where its job publishes them (Launch.Submitted recorded that).
			if latest && t.Status == datastore.StatusRunning && (at.LogsURL != "" || at.JobID != "") {
				for _, rd := range remote {
					if out, errb, ok = rd.Read(ctx, at); ok {
						break
					}
				}
			}
			if !ok {
				if out, err = store.ReadLog(ctx, req.Flow, runID, step, id, at.Attempt, datastore.Stdout); err != nil {
					return nil, grpcError(err)
				}
				if errb, err = store.ReadLog(ctx, req.Flow, runID, step, id, at.Attempt, datastore.Stderr); err != nil {
					return nil, grpcError(err)
				}
			}
			// Logs keep the step's raw bytes; protobuf strings must be UTF-8.
			tl.Stdout = strings.ToValidUTF8(string(out), "\uFFFD")
			tl.Stderr = strings.ToValidUTF8(string(errb), "\uFFFD")
		}
		resp.Tasks = append(resp.Tasks, tl)
	}
	if len(resp.Tasks) == 0 && req.HasAttempt {
		return nil, status.Errorf(codes.NotFound, "no task of step %s of run %s has an attempt %d", step, runID, req.Attempt)
	}
	return resp, nil
}

// attemptNumbers says which attempts a task has, for an error message.
func attemptNumbers(attempts []datastore.Attempt) string {
	if len(attempts) == 0 {
		return "it has none yet"
	}
	nums := make([]string, len(attempts))
	for i, a := range attempts {
		nums[i] = strconv.Itoa(a.Attempt)
	}
	return "its attempts are " + strings.Join(nums, ", ")
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
