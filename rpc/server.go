// Package rpc serves the engine's gRPC API (proto/engine.proto): it turns a
// RunRequest into a scheduled run, streams its console, cancels runs, and
// answers the client API's questions from the datastore.
package rpc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// Server implements enginepb.EngineServer.
type Server struct {
	pb.UnimplementedEngineServer
	Exec scheduler.Executor
	// NewBatch makes the AWS Batch executor the first time a run needs it
	// (nil: Batch is not available in this engine).
	NewBatch func() (scheduler.Executor, error)
	// NewBatchJobs gives the BatchJobs RPC a Batch client and the job queue
	// to look in (nil: Batch is not available in this engine).
	NewBatchJobs func() (BatchJobsClient, string, error)
	// OnShutdown is called (once) when a client asks an embedded engine to stop.
	OnShutdown func()

	mu     sync.Mutex
	active map[string]*activeRun
	once   sync.Once

	batchMu   sync.Mutex
	batchExec scheduler.Executor
}

// batch returns the Batch executor, making it on first use; a failure (e.g.
// no job queue configured) is retried by the next run.
func (s *Server) batch() (scheduler.Executor, error) {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	if s.batchExec != nil {
		return s.batchExec, nil
	}
	if s.NewBatch == nil {
		return nil, errors.New("AWS Batch is not available in this engine")
	}
	e, err := s.NewBatch()
	if err != nil {
		return nil, err
	}
	s.batchExec = e
	return e, nil
}

type activeRun struct {
	run    *scheduler.Run
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServer returns a server that runs tasks with exec.
func NewServer(exec scheduler.Executor) *Server {
	return &Server{Exec: exec, active: map[string]*activeRun{}}
}

func invalid(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

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

// buildRun turns a request into a validated, not yet prepared run.
func (s *Server) buildRun(req *pb.RunRequest) (*scheduler.Run, error) {
	f := req.GetFlow()
	o := req.GetOptions()
	if f == nil || o == nil {
		return nil, status.Error(codes.InvalidArgument, "request needs a flow and options")
	}
	var steps []graph.Step
	for _, st := range f.Steps {
		steps = append(steps, graph.Step{Name: st.Name, Next: st.Next, Foreach: st.Foreach, Join: st.Join, Decorators: decorators(st.Decorators)})
	}
	g, err := graph.New(f.Name, steps)
	if err != nil {
		return nil, invalid(err)
	}
	store, err := storeFor(o.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	var params []scheduler.Param
	for _, p := range f.Parameters {
		params = append(params, scheduler.Param{Name: p.Name, Value: p.Value, Required: p.Required, HasValue: p.HasValue})
	}
	opts := scheduler.Options{
		MaxWorkers: int(o.MaxWorkers), MaxNumSplits: int(o.MaxNumSplits), Tags: o.Tags,
		With: decorators(o.With), Resume: o.Resume, ResumeStep: o.ResumeStep,
		OriginRunID: o.OriginRunId, User: o.User, Workdir: o.Workdir, Rscript: o.Rscript,
	}
	if err := scheduler.ValidateOptions(&opts); err != nil {
		return nil, invalid(err)
	}
	pkg := make([]scheduler.PackageFile, len(f.Package))
	for i, pf := range f.Package {
		pkg[i] = scheduler.PackageFile{Path: pf.Path, Content: pf.Content}
	}
	if err := scheduler.ValidatePackage(pkg); err != nil {
		return nil, invalid(err)
	}
	return &scheduler.Run{Graph: g, Store: store, Exec: s.Exec, Params: params, Code: f.Code, Package: pkg, Opts: opts}, nil
}

func decorators(ds []*pb.Decorator) []graph.Decorator {
	var out []graph.Decorator
	for _, d := range ds {
		args := map[string]string{}
		for _, a := range d.Args {
			args[a.Key] = a.Value
		}
		out = append(out, graph.Decorator{Name: d.Name, Args: args})
	}
	return out
}

// Validate implements the Validate RPC.
func (s *Server) Validate(ctx context.Context, req *pb.RunRequest) (*pb.ValidateResponse, error) {
	r, err := s.buildRun(req)
	if err != nil {
		return nil, err
	}
	return &pb.ValidateResponse{Order: r.Graph.Order}, nil
}

func key(root, flow, run string) string { return root + "\x00" + flow + "\x00" + run }

// StartRun implements the StartRun RPC.
func (s *Server) StartRun(req *pb.RunRequest, stream pb.Engine_StartRunServer) error {
	r, err := s.buildRun(req)
	if err != nil {
		return err
	}
	req.Flow.Package = nil // the run holds the contents until they are stored
	if scheduler.UsesBatch(r.Graph, r.Opts.With) {
		// Refused before anything is written or submitted.
		if r.Batch, err = s.batch(); err != nil {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	if err := r.Prepare(); err != nil {
		return invalid(err)
	}
	runID := r.RunID()
	ctx, cancel := context.WithCancel(stream.Context())
	// One sender goroutine owns the stream. Emit waits for room (back-pressure
	// on chatty steps) but never past a cancellation, so a client that stops
	// reading cannot wedge the run or a CancelRun.
	events := make(chan *pb.RunEvent, 1024)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		dead := false
		for ev := range events {
			if !dead && stream.Send(ev) != nil {
				dead = true
			}
		}
	}()
	r.Emit = func(ev scheduler.Event) {
		select {
		case events <- &pb.RunEvent{Kind: pb.RunEvent_LOG, Line: ev.Line, Stderr: ev.Stderr}:
		case <-ctx.Done():
		}
	}
	a := &activeRun{run: r, cancel: cancel, done: make(chan struct{})}
	k := key(req.Options.DatastoreRoot, req.Flow.Name, runID)
	s.mu.Lock()
	s.active[k] = a
	s.mu.Unlock()
	events <- &pb.RunEvent{Kind: pb.RunEvent_RUN_STARTED, RunId: runID}
	err = r.Execute(ctx)
	// The run is over: CancelRun callers need not wait for the client to read.
	s.mu.Lock()
	delete(s.active, k)
	s.mu.Unlock()
	close(a.done)
	ev := &pb.RunEvent{Kind: pb.RunEvent_RUN_FINISHED, RunId: runID, Success: err == nil}
	if err != nil {
		ev.Error = strings.ToValidUTF8(err.Error(), "\uFFFD")
	}
	select {
	case events <- ev:
	case <-stream.Context().Done():
	}
	cancel()
	close(events)
	<-sent
	return nil
}

// CancelRun implements the CancelRun RPC: it returns once every task is dead.
func (s *Server) CancelRun(ctx context.Context, req *pb.CancelRunRequest) (*pb.CancelRunResponse, error) {
	s.mu.Lock()
	a := s.active[key(req.DatastoreRoot, req.Flow, req.RunId)]
	s.mu.Unlock()
	if a == nil {
		return nil, status.Errorf(codes.NotFound, "run %s of flow %s is not running in this engine", req.RunId, req.Flow)
	}
	a.cancel()
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &pb.CancelRunResponse{KilledTasks: int32(a.run.Killed())}, nil
}

// CancelAll cancels every active run and waits for them (engine shutdown).
func (s *Server) CancelAll(timeout time.Duration) {
	s.mu.Lock()
	var all []*activeRun
	for _, a := range s.active {
		all = append(all, a)
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for _, a := range all {
		a.cancel()
		select {
		case <-a.done:
		case <-deadline:
			return
		}
	}
}

func notFoundOr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

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
	if _, err := store.GetRun(req.Flow, runID); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, status.Errorf(codes.NotFound, "run %s of flow %s not found: check the run id (list runs with: metaflow-engine runs %s)", runID, req.Flow, req.Flow)
		}
		return nil, notFoundOr(err)
	}
	ids := []string{}
	if len(parts) == 3 {
		ids = append(ids, parts[2])
	} else if ids, err = store.ListTasks(req.Flow, runID, step); err != nil {
		return nil, notFoundOr(err)
	}
	if len(ids) == 0 {
		return nil, status.Errorf(codes.NotFound, "run %s of flow %s has no tasks for step %q", runID, req.Flow, step)
	}
	resp := &pb.LogsResponse{}
	remote := s.newRemoteLogReader(ctx)
	for _, id := range ids {
		t, err := store.GetTask(req.Flow, runID, step, id)
		if errors.Is(err, fs.ErrNotExist) && len(parts) == 2 {
			continue // listed before its metadata was written (an S3 datastore)
		}
		if err != nil {
			return nil, notFoundOr(err)
		}
		tl := &pb.TaskLog{Step: step, TaskId: id}
		if n := len(t.Attempts); n > 0 {
			last := t.Attempts[n-1]
			tl.Attempt = int32(last.Attempt)
			out, errb, ok := []byte(nil), []byte(nil), false
			// A Batch attempt that has not ended (or whose engine died before
			// it could record the end): its logs are where the job puts them.
			if t.Status == datastore.StatusRunning && (last.LogsURL != "" || last.JobID != "") {
				out, errb, ok = remote.read(ctx, last)
			}
			if !ok {
				if out, err = store.ReadLog(req.Flow, runID, step, id, last.Attempt, "stdout"); err != nil {
					return nil, notFoundOr(err)
				}
				if errb, err = store.ReadLog(req.Flow, runID, step, id, last.Attempt, "stderr"); err != nil {
					return nil, notFoundOr(err)
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
	flows, err := store.ListFlows()
	if errors.Is(err, s3io.ErrNoBucket) {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err != nil {
		return nil, notFoundOr(err)
	}
	return &pb.ListFlowsResponse{Flows: flows}, nil
}

// ListRuns implements the ListRuns RPC.
func (s *Server) ListRuns(ctx context.Context, req *pb.ListRunsRequest) (*pb.ListRunsResponse, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	ids, err := store.ListRuns(req.Flow)
	if err != nil {
		return nil, notFoundOr(err)
	}
	runs := make([]*pb.RunInfo, len(ids))
	err = forEachLimit(len(ids), 16, func(i int) error {
		r, err := store.GetRun(req.Flow, ids[i])
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a run folder being created right now
		}
		if err != nil {
			return err
		}
		runs[i] = runInfo(r)
		return nil
	})
	if err != nil {
		return nil, notFoundOr(err)
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
	r, err := store.GetRun(req.Flow, req.RunId)
	if err != nil {
		return nil, notFoundOr(err)
	}
	info := runInfo(r)
	pkg, err := store.GetPackage(req.Flow, req.RunId)
	if err != nil {
		return nil, notFoundOr(err)
	}
	for _, p := range sortedNames(pkg) {
		info.CodePackage = append(info.CodePackage, &pb.CodeFile{Path: p, Sha: pkg[p].SHA, Size: pkg[p].Size})
	}
	for _, step := range r.Steps {
		ids, err := store.ListTasks(req.Flow, req.RunId, step)
		if err != nil {
			return nil, notFoundOr(err)
		}
		if len(ids) == 0 {
			continue
		}
		tasks := make([]*pb.TaskInfo, len(ids))
		err = forEachLimit(len(ids), 16, func(i int) error {
			t, err := store.GetTask(req.Flow, req.RunId, step, ids[i])
			if errors.Is(err, fs.ErrNotExist) {
				return nil // listed before its metadata was written (an S3 datastore)
			}
			if err != nil {
				return err
			}
			tasks[i] = taskInfo(store, t)
			return nil
		})
		if err != nil {
			return nil, notFoundOr(err)
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
	}
	return info, nil
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

func taskInfo(store datastore.Store, t *datastore.Task) *pb.TaskInfo {
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
		ti.StdoutPath = store.LogPath(t.Flow, t.RunID, t.Step, t.TaskID, last.Attempt, "stdout")
		ti.StderrPath = store.LogPath(t.Flow, t.RunID, t.Step, t.TaskID, last.Attempt, "stderr")
	}
	return ti
}

// GetTask implements the GetTask RPC (with artifact paths).
func (s *Server) GetTask(ctx context.Context, req *pb.GetTaskRequest) (*pb.TaskInfo, error) {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return nil, err
	}
	t, err := store.GetTask(req.Flow, req.RunId, req.Step, req.TaskId)
	if err != nil {
		return nil, notFoundOr(err)
	}
	ti := taskInfo(store, t)
	if t.Status == datastore.StatusCompleted {
		arts, err := store.GetArtifacts(req.Flow, req.RunId, req.Step, req.TaskId)
		if err != nil {
			return nil, notFoundOr(err)
		}
		for _, name := range sortedNames(arts) {
			a := arts[name]
			ai := &pb.ArtifactInfo{Name: name, Sha: a.SHA, Size: a.Size}
			// The blob the caller asked for is made local; others are given
			// only if they are local already (always, for a local store).
			if name == req.Artifact {
				if ai.Path, err = store.FetchBlob(req.Flow, a.SHA); err != nil {
					return nil, notFoundOr(err)
				}
			} else if p := store.BlobPath(req.Flow, a.SHA); fileExists(p) {
				ai.Path = p
			}
			ti.Artifacts = append(ti.Artifacts, ai)
		}
	}
	return ti, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// remoteLogReader reads Batch attempts' logs for one Logs call: the copies
// their task runners upload as they grow, else the jobs' CloudWatch streams
// (a job that died before uploading), merged into stdout. Its clients are
// made once per call, on first use, not once per task.
type remoteLogReader struct {
	s3    func() (*s3io.Client, error)
	batch func() (BatchJobsClient, error)
}

func (s *Server) newRemoteLogReader(ctx context.Context) *remoteLogReader {
	r := &remoteLogReader{s3: sync.OnceValues(func() (*s3io.Client, error) { return s3io.FromEnv(ctx) })}
	if s.NewBatchJobs != nil {
		r.batch = sync.OnceValues(func() (BatchJobsClient, error) {
			c, _, err := s.NewBatchJobs()
			return c, err
		})
	}
	return r
}

// read returns an attempt's logs; ok is false when neither source has
// anything: then the local files are all there is.
func (r *remoteLogReader) read(ctx context.Context, at datastore.Attempt) (stdout, stderr []byte, ok bool) {
	if bucket, prefix, err := s3io.ParseURL(at.LogsURL); err == nil {
		if c, err := r.s3(); err == nil {
			o, oerr := c.GetBytes(ctx, bucket, prefix+"/stdout.log")
			e, eerr := c.GetBytes(ctx, bucket, prefix+"/stderr.log")
			missing := func(err error) bool { return errors.Is(err, s3io.ErrNotFound) }
			// Both read, or one read and the other never written; an
			// unreadable stream must not pass for an empty one.
			if (oerr == nil || missing(oerr)) && (eerr == nil || missing(eerr)) && !(missing(oerr) && missing(eerr)) {
				return o, e, true
			}
		}
	}
	if at.JobID == "" || r.batch == nil {
		return nil, nil, false
	}
	c, err := r.batch()
	if err != nil {
		return nil, nil, false
	}
	lines, err := c.JobLog(ctx, at.JobID, cloudWatchLines)
	if err != nil || len(lines) == 0 {
		return nil, nil, false
	}
	return []byte(strings.Join(lines, "\n") + "\n"), nil, true
}

// cloudWatchLines bounds what logs reads from CloudWatch.
const cloudWatchLines = 10000

// Shutdown implements the Shutdown RPC.
func (s *Server) Shutdown(ctx context.Context, req *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	if s.OnShutdown == nil {
		return nil, status.Error(codes.PermissionDenied, "this engine was started with serve and is not stopped by clients")
	}
	s.once.Do(func() { go s.OnShutdown() })
	return &pb.ShutdownResponse{}, nil
}

func sortedNames(m map[string]datastore.Artifact) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
