package rpc

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

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
		return nil, grpcError(err)
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
		return nil, grpcError(err)
	}
	pkg := make([]scheduler.PackageFile, len(f.Package))
	for i, pf := range f.Package {
		pkg[i] = scheduler.PackageFile{Path: pf.Path, Content: pf.Content}
	}
	if err := scheduler.ValidatePackage(pkg); err != nil {
		return nil, grpcError(err)
	}
	return &scheduler.Run{Graph: g, Store: store, Exec: s.Exec, Executors: s.Executors, Params: params, Code: f.Code, Package: pkg, Opts: opts}, nil
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
	// Refused before anything is written or submitted: the executors
	// decorators choose are made (from their settings) and checked here.
	if err := r.Prepare(stream.Context()); err != nil {
		return grpcError(err)
	}
	runID := r.RunID()
	// CancelRun and an engine shutdown cancel the run (its remote jobs are
	// terminated); a client that goes away without asking abandons it
	// (scheduler.ErrAbandoned: local tasks die, remote jobs run on).
	ctx, cancelCause := context.WithCancelCause(context.WithoutCancel(stream.Context()))
	cancel := func() { cancelCause(nil) }
	go func() {
		select {
		case <-stream.Context().Done():
			// R interrupted by Ctrl-C drops the stream just before its
			// CancelRun arrives: give it a moment before taking the run
			// for abandoned.
			select {
			case <-time.After(abandonGrace):
				cancelCause(scheduler.ErrAbandoned)
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
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
	a := &activeRun{run: r, cancel: cancelCause, done: make(chan struct{})}
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

// abandonGrace is how long a run whose client dropped its stream waits for
// a CancelRun before it is abandoned (scheduler.ErrAbandoned).
var abandonGrace = 5 * time.Second

// CancelRun implements the CancelRun RPC: it returns once every task is dead.
func (s *Server) CancelRun(ctx context.Context, req *pb.CancelRunRequest) (*pb.CancelRunResponse, error) {
	s.mu.Lock()
	a := s.active[key(req.DatastoreRoot, req.Flow, req.RunId)]
	s.mu.Unlock()
	if a == nil {
		return nil, status.Errorf(codes.NotFound, "run %s of flow %s is not running in this engine", req.RunId, req.Flow)
	}
	a.cancel(nil)
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	res := &pb.CancelRunResponse{KilledTasks: int32(a.run.Killed())}
	for _, j := range a.run.StoppedJobs() {
		res.Jobs = append(res.Jobs, &pb.StoppedJob{
			JobId: j.JobID, Step: j.Step, TaskId: j.TaskID, Attempt: int32(j.Attempt),
			Executor: j.Executor, Decorator: j.Decorator, Ended: j.Ended,
			Error: strings.ToValidUTF8(j.Error, "\uFFFD"),
		})
	}
	return res, nil
}

// CancelAll cancels every active run and waits for them at most timeout
// in all (engine shutdown). cause is nil for a cancellation (remote jobs
// are terminated) or scheduler.ErrAbandoned (the client is gone: remote
// jobs are left running).
func (s *Server) CancelAll(timeout time.Duration, cause error) {
	s.mu.Lock()
	var all []*activeRun
	for _, a := range s.active {
		all = append(all, a)
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for _, a := range all {
		a.cancel(cause)
		select {
		case <-a.done:
		case <-deadline:
			return
		}
	}
}
