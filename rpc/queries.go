package rpc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

const timeFmt = "2006-01-02T15:04:05.000Z07:00"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(timeFmt)
}

func runInfo(r *datastore.Run) *pb.RunInfo {
	return &pb.RunInfo{
		Flow: r.Flow, RunId: r.RunID, Status: r.Status, User: r.User, Tags: r.Tags,
		CreatedAt: fmtTime(r.CreatedAt), FinishedAt: fmtTime(r.FinishedAt), OriginRunId: r.OriginRunID,
		Error: strings.ToValidUTF8(r.Error, "\uFFFD"),
	}
}

// ListFlows implements the ListFlows RPC.
func (s *Server) ListFlows(ctx context.Context, req *pb.ListFlowsRequest) (*pb.ListFlowsResponse, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	flows, err := store.ListFlows(ctx)
	if err != nil { // a missing bucket is a precondition (s3io.ErrNoBucket)
		return nil, grpcError(err)
	}
	return &pb.ListFlowsResponse{Flows: flows}, nil
}

// ListRuns implements the ListRuns RPC.
func (s *Server) ListRuns(ctx context.Context, req *pb.ListRunsRequest) (*pb.ListRunsResponse, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	ids, err := store.ListRuns(ctx, req.Flow)
	if err != nil {
		return nil, grpcError(err)
	}
	runs := make([]*pb.RunInfo, len(ids))
	err = forEachLimit(len(ids), 16, func(i int) error {
		r, err := store.GetRun(ctx, req.Flow, ids[i])
		if errors.Is(err, errs.ErrNotFound) {
			return nil // a run folder being created right now
		}
		if err != nil {
			return err
		}
		datastore.Settle(time.Now(), r)
		runs[i] = runInfo(r)
		return nil
	})
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &pb.ListRunsResponse{}
	for _, r := range runs {
		if r != nil {
			resp.Runs = append(resp.Runs, r)
		}
	}
	return resp, nil
}

// GetRun implements the GetRun RPC.
func (s *Server) GetRun(ctx context.Context, req *pb.GetRunRequest) (*pb.RunInfo, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	r, err := store.GetRun(ctx, req.Flow, req.RunId)
	if err != nil {
		return nil, grpcError(err)
	}
	// The run first (once), then its tasks (concurrently).
	now := time.Now()
	datastore.Settle(now, r)
	info := runInfo(r)
	var listed map[string]bool
	info.JobsLeftRunning, listed = leftJobs(r)
	pkg, err := store.GetPackage(ctx, req.Flow, req.RunId)
	if err != nil {
		return nil, grpcError(err)
	}
	for _, p := range sortedNames(pkg) {
		info.CodePackage = append(info.CodePackage, &pb.CodeFile{Path: p, Sha: pkg[p].SHA, Size: pkg[p].Size})
	}
	for _, step := range r.Steps {
		ids, err := store.ListTasks(ctx, req.Flow, req.RunId, step)
		if err != nil {
			return nil, grpcError(err)
		}
		if len(ids) == 0 {
			continue
		}
		tasks := make([]*pb.TaskInfo, len(ids))
		settled := make([]*datastore.Task, len(ids))
		err = forEachLimit(len(ids), 16, func(i int) error {
			t, err := store.GetTask(ctx, req.Flow, req.RunId, step, ids[i])
			if errors.Is(err, errs.ErrNotFound) {
				return nil // its record went away since it was listed
			}
			if err != nil {
				return err
			}
			datastore.Settle(now, r, t)
			tasks[i], settled[i] = taskInfo(store, t), t
			return nil
		})
		if err != nil {
			return nil, grpcError(err)
		}
		si := &pb.StepInfo{Name: step}
		for _, t := range tasks {
			if t != nil {
				si.Tasks = append(si.Tasks, t)
			}
		}
		if len(si.Tasks) > 0 {
			info.Steps = append(info.Steps, si)
		}
		for _, t := range settled {
			if t == nil || len(t.Attempts) == 0 {
				continue
			}
			if a := t.Attempts[len(t.Attempts)-1]; a.JobLeftRunning && !listed[a.JobID] {
				listed[a.JobID] = true
				info.JobsLeftRunning = append(info.JobsLeftRunning, &pb.StoppedJob{
					JobId: a.JobID, Step: t.Step, TaskId: t.TaskID, Attempt: int32(a.Attempt),
					Error: strings.ToValidUTF8(a.Error, "\uFFFD"),
				})
			}
		}
	}
	return info, nil
}

// leftJobs are the jobs a run's record lists as left running.
func leftJobs(r *datastore.Run) ([]*pb.StoppedJob, map[string]bool) {
	var out []*pb.StoppedJob
	listed := map[string]bool{}
	for _, j := range r.JobsLeftRunning {
		listed[j.JobID] = true
		out = append(out, &pb.StoppedJob{
			JobId: j.JobID, Step: j.Step, TaskId: j.TaskID, Attempt: int32(j.Attempt),
			Executor: j.Executor, Decorator: j.Decorator, Error: strings.ToValidUTF8(j.Error, "\uFFFD"),
		})
	}
	return out, listed
}

// forEachLimit calls f(0..n-1), at most limit at a time (an S3 datastore
// answers each task's metadata in one round trip), and returns the first error.
func forEachLimit(n, limit int, f func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func taskInfo(store datastore.Logs, t *datastore.Task) *pb.TaskInfo {
	ti := &pb.TaskInfo{
		Step: t.Step, TaskId: t.TaskID, Status: t.Status,
		StartedAt: fmtTime(t.StartedAt), FinishedAt: fmtTime(t.FinishedAt), ForeachIndex: -1,
	}
	if n := len(t.Stack); n > 0 {
		ti.ForeachIndex = int32(t.Stack[n-1].Index)
	}
	if n := len(t.Attempts); n > 0 {
		last := t.Attempts[n-1]
		ti.Attempt, ti.Pid = int32(last.Attempt), int32(last.PID)
		ti.Error, ti.ExitCode = strings.ToValidUTF8(last.Error, "\uFFFD"), int32(last.ExitCode)
		ti.StdoutPath = store.LogFile(t.Flow, t.RunID, t.Step, t.TaskID, last.Attempt, datastore.Stdout)
		ti.StderrPath = store.LogFile(t.Flow, t.RunID, t.Step, t.TaskID, last.Attempt, datastore.Stderr)
	}
	return ti
}

// GetTask implements the GetTask RPC (with artifact paths).
func (s *Server) GetTask(ctx context.Context, req *pb.GetTaskRequest) (*pb.TaskInfo, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	t, err := store.GetTask(ctx, req.Flow, req.RunId, req.Step, req.TaskId)
	if err != nil {
		return nil, grpcError(err)
	}
	if t.Status == datastore.StatusRunning { // its engine may have stopped
		r, err := store.GetRun(ctx, req.Flow, req.RunId)
		if err != nil {
			return nil, grpcError(err)
		}
		datastore.Settle(time.Now(), r, t)
	}
	ti := taskInfo(store, t)
	if t.Status == datastore.StatusCompleted {
		arts, err := datastore.ArtifactsOf(ctx, store, t) // the record just read holds them
		if err != nil {
			return nil, grpcError(err)
		}
		for _, name := range sortedNames(arts) {
			a := arts[name]
			ai := &pb.ArtifactInfo{Name: name, Sha: a.SHA, Size: a.Size}
			// The blob the caller asked for is made local and verified;
			// others are given only if this machine has them (always, for a
			// local store), with a stamp if they are verified already.
			if name == req.Artifact {
				f, err := store.LocalFile(ctx, req.Flow, a.SHA)
				if err != nil {
					what := "artifact " + name + " of " + req.Flow + "/" + req.RunId + "/" + req.Step + "/" + req.TaskId
					if errors.Is(err, errs.ErrCorrupt) {
						what += " is corrupt"
					}
					return nil, grpcError(fmt.Errorf("%s: %w", what, err))
				}
				ai.Path, ai.Stamp = f.Path, fileStamp(f.Stamp)
			} else if f, ok := datastore.LocalCopy(store, req.Flow, a.SHA); ok {
				ai.Path, ai.Stamp = f.Path, fileStamp(f.Stamp)
			}
			ti.Artifacts = append(ti.Artifacts, ai)
		}
	}
	return ti, nil
}

// fileStamp is a verified stamp as the client gets it (nil for none).
func fileStamp(st datastore.Stamp) *pb.FileStamp {
	if st.IsZero() {
		return nil
	}
	return &pb.FileStamp{
		Size:     st.Size,
		MtimeSec: st.MtimeNs / 1e9, MtimeNsec: int32(st.MtimeNs % 1e9),
		CtimeSec: st.CtimeNs / 1e9, CtimeNsec: int32(st.CtimeNs % 1e9),
	}
}

func sortedNames(m map[string]datastore.Artifact) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
