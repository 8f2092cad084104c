// Package scheduler runs a flow: it turns the graph into tasks, keeps at most
// max-workers of them running, fans foreach steps out, matches joins, applies
// retry/catch/timeout, clones finished tasks on resume, and records everything
// in the datastore.
package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Options are the run and resume options of the command line.
type Options struct {
	MaxWorkers   int
	MaxNumSplits int
	Tags         []string
	With         []graph.Decorator
	Resume       bool
	ResumeStep   string
	OriginRunID  string
	User         string
	Workdir      string
	Rscript      string
}

// Param is a flow parameter with its R-value msgpack bytes.
type Param struct {
	Name     string
	Value    []byte
	Required bool
	HasValue bool
}

// Event is a console line for the client.
type Event struct {
	Line   string
	Stderr bool
}

// Run is one run (or resume) of a flow.
type Run struct {
	Graph *graph.Graph
	Store datastore.Store
	// Exec runs the tasks of steps without an executor decorator (local
	// Rscript processes).
	Exec Executor
	// Executors holds the executors that decorators choose (nil: none);
	// a step whose decorators or --with name one runs there.
	Executors *Registry
	Params    []Param
	Code      []byte
	// Package is the code package (--package-suffixes), stored before any
	// task starts; remote executors place it in their tasks' working folder.
	Package []PackageFile
	Opts    Options
	// Emit receives console lines; it must not block for long.
	Emit func(Event)
	// Now is the clock (tests may replace it).
	Now func() time.Time
	// Machine is the size local tasks share (resources.go); nil: this
	// machine's (LocalMachine), set by Prepare.
	Machine *Machine

	meta  *datastore.Run
	execs map[string]stepExec // by step, chosen by Prepare
	pkg   []CodeFile          // the stored code package, by path
	// foreignWorkdir: Opts.Workdir is not a folder of this machine.
	foreignWorkdir bool
	// splits: foreach values cut into their elements (split.go).
	splitMu   sync.Mutex
	splits    map[string]*splitSet
	splitDirs []string
	staging   stagingPool                // emptied staging folders for the next attempts
	origin    map[string]*datastore.Task // "step|stack" -> completed origin task
	rerun     map[string]bool
	nextID    int
	killed    int          // tasks a cancellation ended
	stopped   []StoppedJob // remote jobs a cancellation ended or left
	mu        sync.Mutex
	emitMu    sync.Mutex
	started   chan struct{}

	// demands: what each step's tasks take from the machine, and the
	// warnings for steps that ask for more than it has (planResources).
	demands          map[string]taskDemand
	resourceWarnings []string
}

// taskRef is a finished task as later tasks see it.
type taskRef struct {
	step, id     string
	stack        []datastore.Frame
	arts         map[string]datastore.Artifact
	foreachCount int
}

// pending is a task waiting for a worker.
type pending struct {
	// id is the task's id, given when it is started, in the queue's order:
	// a foreach's splits get ids in the order of their index, as in
	// Metaflow (and whichever goroutine gets going first).
	id     string
	step   string
	stack  []datastore.Frame
	inputs []*taskRef
	held   *machineGrant // what it took from the machine while it runs
	array  *ArraySplit   // its first attempt is an array child (ArrayExecutor)
}

type joinSlot struct {
	inputs []*taskRef
	filled int
}

type outcome struct {
	ref *taskRef
	err error
	p   *pending
}

// HeartbeatInterval is how often a running run's record gets a fresh
// heartbeat (datastore.Run.HeartbeatAt): readers take a run whose heartbeat
// is datastore.StaleBeats intervals old for one whose engine stopped
// (datastore.Settle). The engine sets it from
// METAFLOW_ENGINE_HEARTBEAT_SECONDS; tests shorten it.
var HeartbeatInterval = datastore.DefaultHeartbeat

// Execute runs the prepared flow until it ends or ctx is cancelled.
func (r *Run) Execute(ctx context.Context) error {
	stopBeating := r.heartbeat(ctx)
	err := r.execute(ctx)
	// No heartbeat may land after (and overwrite) the run's end.
	stopBeating()
	r.endRunInExecutors()
	r.meta.FinishedAt = r.Now()
	left := r.LeftRunning()
	r.meta.JobsLeftRunning = left
	if len(left) > 0 {
		r.say("%s", describeLeft(r.meta.RunID, left))
	}
	if err != nil {
		err = r.endError(ctx, err, left)
		r.meta.Status = datastore.StatusFailed
		r.meta.Error = err.Error()
	} else {
		r.meta.Status = datastore.StatusCompleted
	}
	// Recorded also when ctx was cancelled (Ctrl-C): the run's end must be
	// written (within the store's own deadline for a record).
	if perr := r.Store.PutRun(context.WithoutCancel(ctx), r.meta); perr != nil {
		perr = fmt.Errorf("record the end of run %s/%s: %w", r.meta.Flow, r.meta.RunID, perr)
		if err == nil { // what the user is told is what is recorded: failed
			err = perr
			r.meta.Status, r.meta.Error = datastore.StatusFailed, perr.Error()
		}
		r.recordEndLater(ctx, perr)
	}
	return err
}

// EndRetryWait and EndRetryFor pace the writes of a run's end that failed
// (EndRetryWait doubles up to 30 s); tests shorten them.
var (
	EndRetryWait = time.Second
	EndRetryFor  = time.Hour
)

// recordEndLater tries the run's final record again in the background
// (space may come back, a file system be remounted) until it is written or
// EndRetryFor has passed. Meanwhile readers in this process see the run
// ended (datastore.NoteUnrecordedEnd), and others see it failed once its
// heartbeat, stopped, is stale.
func (r *Run) recordEndLater(ctx context.Context, cause error) {
	end := *r.meta
	datastore.NoteUnrecordedEnd(&end)
	interval := time.Duration(end.HeartbeatSeconds * float64(time.Second))
	if interval <= 0 {
		interval = HeartbeatInterval
	}
	r.say("Warning: %v. The engine tries again while it runs; elsewhere the run reads as failed %s after its last heartbeat.",
		cause, datastore.StaleBeats*interval)
	go func() {
		wait, until := EndRetryWait, time.Now().Add(EndRetryFor)
		for time.Now().Before(until) {
			time.Sleep(wait)
			if r.Store.PutRun(context.WithoutCancel(ctx), &end) == nil {
				datastore.ForgetUnrecordedEnd(&end)
				return
			}
			wait = min(2*wait, 30*time.Second)
		}
	}()
}

// heartbeat refreshes the run record's heartbeat every HeartbeatInterval
// until the returned function is called (which waits for a write in
// flight). A failed write is reported once, and tried again next beat.
func (r *Run) heartbeat(ctx context.Context) (stop func()) {
	interval := time.Duration(r.meta.HeartbeatSeconds * float64(time.Second))
	if interval <= 0 {
		interval = HeartbeatInterval
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		warned := false
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			beat := *r.meta // the record as Prepare wrote it, tasks only read it
			beat.HeartbeatAt = r.Now()
			err := r.Store.PutRun(context.WithoutCancel(ctx), &beat)
			switch {
			case err != nil && !warned:
				r.say("Warning: the run's heartbeat could not be recorded (readers will take the run for failed if this lasts): %v", err)
				warned = true
			case err == nil:
				warned = false
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// Killed is the number of running tasks a cancellation ended: a task
// whose job could not be stopped (NotStopped) is not one of them.
func (r *Run) Killed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killed
}

// StoppedJob is what stopping an attempt did to its remote job.
type StoppedJob struct {
	datastore.LeftJob
	// Ended: the job was terminated (else it may still be running, and
	// Error says why).
	Ended bool
}

// StoppedJobs are the remote jobs the run's cancellation ended or could
// not stop (left running), in the order their attempts ended.
func (r *Run) StoppedJobs() []StoppedJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StoppedJob(nil), r.stopped...)
}

// LeftRunning are the run's jobs that were not stopped and may still be
// running (also recorded in the run's record, JobsLeftRunning).
func (r *Run) LeftRunning() []datastore.LeftJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	var left []datastore.LeftJob
	for _, j := range r.stopped {
		if !j.Ended {
			left = append(left, j.LeftJob)
		}
	}
	return left
}

// noteStop records what stopping an attempt did: a killed task (ended,
// counted by Killed) and its job if it had one, or a job left running.
func (r *Run) noteStop(task *datastore.Task, at *datastore.Attempt, ended bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ended {
		r.killed++
	}
	if at.JobID == "" {
		return
	}
	ex := r.execs[task.Step]
	r.stopped = append(r.stopped, StoppedJob{Ended: ended, LeftJob: datastore.LeftJob{
		JobID: at.JobID, Step: task.Step, TaskID: task.TaskID, Attempt: at.Attempt,
		Executor: ex.name, Decorator: r.policy(r.Graph.Steps[task.Step]).executor, Error: why,
	}})
}

// endError is the run's error: whether its tasks were all killed, and the
// jobs left running with the command that ends them.
func (r *Run) endError(ctx context.Context, err error, left []datastore.LeftJob) error {
	switch {
	case IsInterrupted(err) && Abandoned(ctx):
		err = fmt.Errorf("%w: its engine stopped the run because %v", errInterrupted, ErrAbandoned)
	case IsInterrupted(err) && len(left) == 0:
		err = fmt.Errorf("%w: every running task was killed", err)
	}
	if len(left) > 0 {
		err = fmt.Errorf("%w; %s", err, describeLeft(r.meta.RunID, left))
	}
	return err
}

// describeLeft says which jobs of run runID may still be running, why, and
// how to end them (the kill command of their executor's decorator).
func describeLeft(runID string, left []datastore.LeftJob) string {
	var parts []string
	for i := 0; i < len(left); {
		j := i
		for j < len(left) && left[j].Executor == left[i].Executor && left[j].Decorator == left[i].Decorator {
			j++
		}
		group := left[i:j]
		var ids, whys []string
		seen := map[string]bool{}
		for _, l := range group {
			ids = append(ids, fmt.Sprintf("%s (step %s, task %s)", l.JobID, l.Step, l.TaskID))
			if !seen[l.Error] {
				seen[l.Error] = true
				whys = append(whys, l.Error)
			}
		}
		what := group[0].Executor
		if what == "" {
			what = "remote"
		}
		msg := fmt.Sprintf("%d %s job(s) were not stopped (%s) and may still be running, until they end or reach their own timeout: %s",
			len(group), what, strings.Join(whys, "; "), strings.Join(ids, ", "))
		if d := group[0].Decorator; d != "" {
			msg += fmt.Sprintf(". End them with: %s kill --run-id %s (Rscript <flow file> %s kill --run-id %s, or run(%s = \"kill\", run_id = \"%s\"))",
				d, runID, d, runID, d, runID)
		}
		parts = append(parts, msg)
		i = j
	}
	return strings.Join(parts, "; ")
}

func (r *Run) execute(ctx context.Context) error {
	store, flow, runID := r.Store, r.Graph.Flow, r.meta.RunID
	if err := store.PutCode(ctx, flow, runID, r.Code); err != nil {
		return err
	}
	if err := r.storePackage(ctx); err != nil {
		return err
	}
	cleanup, err := r.runWorkdir(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	defer r.removeSplits()
	defer r.removeStaging()
	params, err := r.commitParams(ctx)
	if err != nil {
		return err
	}
	// What the tasks of runs whose engine was killed left behind.
	if _, err := CleanStaging(ctx, store, flow, time.Now()); err != nil {
		r.say("Warning: leftovers of ended runs were not all removed: %v", err)
	}
	if r.Opts.Resume {
		r.say("Resuming run %s from step %s (origin run %s).", runID, r.Opts.ResumeStep, r.Opts.OriginRunID)
	}
	for _, w := range r.resourceWarnings {
		r.say("%s", w)
	}
	r.say("Workflow starting (run-id %s):", runID)

	runCtx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	queue := []*pending{{step: "start", inputs: []*taskRef{params}}}
	joins := map[string]*joinSlot{}
	results := make(chan outcome)
	running := 0
	var failure error
	machine := newMachinePool(*r.Machine)
	demandAt := func(i int) (taskDemand, string) { return r.demandOf(queue[i]), queue[i].step }

	start := func(p *pending) {
		running++
		p.id = r.newTaskID()
		go func(p *pending) {
			ref, err := r.runTask(runCtx, p, params)
			results <- outcome{ref: ref, err: err, p: p}
		}(p)
	}
	arrays := 0          // running array children: --max-workers does not bound them
	var fresh []*pending // queued since the last pass: only they can be array splits not yet started
	for {
		if failure == nil && len(fresh) > 0 {
			var take []*pending
			fresh, take = r.takeArraySplits(fresh)
			for _, p := range take {
				arrays++
				start(p)
			}
		}
		// (Scanning only what is new keeps a pass O(1) per ended task: a
		// 10,000-split foreach queued all at once was scanned, and copied,
		// at every task's end.)
		queue, fresh = append(queue, fresh...), nil
		for failure == nil && running-arrays < r.Opts.MaxWorkers && len(queue) > 0 {
			i, held := machine.pick(len(queue), demandAt)
			if i < 0 {
				break // what is queued waits for running tasks to end
			}
			p := queue[i]
			if i == 0 {
				queue = queue[1:]
			} else {
				queue = append(queue[:i], queue[i+1:]...)
			}
			p.held = held
			start(p)
		}
		if running == 0 {
			if failure == nil && len(queue) > 0 { // the machine pool would never let them start
				failure = fmt.Errorf("%w: %d task(s) of step %s could not be started", errFatal, len(queue), queue[0].step)
			}
			break
		}
		var out outcome
		select {
		case out = <-results:
		case <-ctx.Done():
			if failure == nil {
				failure = errInterrupted
				// ctx's cause, not ours: ctx.Done() is closed before ctx
				// cancels runCtx itself, and tasks tell an abandoned run
				// (ErrAbandoned) from a cancelled one by it.
				cancelCause(context.Cause(ctx))
			}
			out = <-results
		}
		running--
		if out.p.array != nil {
			arrays--
		}
		machine.give(out.p.held)
		if out.err != nil {
			if failure == nil {
				failure = out.err
				if running > 0 {
					r.say("Killing %d active task(s).", running)
				}
				cancel()
			}
			continue
		}
		if failure != nil {
			continue
		}
		next, err := r.advance(out.ref, joins)
		if err != nil {
			failure = err
			cancel()
			continue
		}
		fresh = append(fresh, next...)
	}
	if failure != nil {
		return failure
	}
	if ctx.Err() != nil {
		return errInterrupted
	}
	r.say("Done!")
	return nil
}

var errInterrupted = errors.New("run interrupted")

// IsInterrupted reports whether a run ended because it was cancelled.
func IsInterrupted(err error) bool { return errors.Is(err, errInterrupted) }

// advance computes the tasks that a finished task makes ready.
func (r *Run) advance(ref *taskRef, joins map[string]*joinSlot) ([]*pending, error) {
	g := r.Graph
	st := g.Steps[ref.step]
	var out []*pending
	if st.Foreach != "" {
		n := ref.foreachCount
		if n > r.Opts.MaxNumSplits {
			return nil, fmt.Errorf("foreach step %q yields %d splits, more than --max-num-splits %d: raise it with --max-num-splits %d (run(max_num_splits = %d))", ref.step, n, r.Opts.MaxNumSplits, n, n)
		}
		if n == 0 {
			return nil, fmt.Errorf("foreach step %q yields no splits: artifact %q is empty", ref.step, st.Foreach)
		}
		for i := 0; i < n; i++ {
			stack := append(append([]datastore.Frame{}, ref.stack...), datastore.Frame{Step: ref.step, Index: i, Count: n})
			out = append(out, &pending{step: st.Next[0], stack: stack, inputs: []*taskRef{ref}})
		}
		return out, nil
	}
	for _, nx := range st.Next {
		ns := g.Steps[nx]
		if !ns.Join {
			out = append(out, &pending{step: nx, stack: ref.stack, inputs: []*taskRef{ref}})
			continue
		}
		split := g.Steps[g.Closes[nx]]
		var key string
		var slot, size int
		stack := ref.stack
		if split.Foreach != "" {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			key, slot, size = nx+"|"+stackKey(stack), top.Index, top.Count
		} else {
			parents := g.Parents[nx]
			key, size = nx+"|"+stackKey(stack), len(parents)
			for i, p := range parents {
				if p == ref.step {
					slot = i
				}
			}
		}
		js := joins[key]
		if js == nil {
			js = &joinSlot{inputs: make([]*taskRef, size)}
			joins[key] = js
		}
		js.inputs[slot] = ref
		js.filled++
		if js.filled == size {
			delete(joins, key)
			out = append(out, &pending{step: nx, stack: stack, inputs: js.inputs})
		}
	}
	return out, nil
}

// commitParams stores parameter values as the artifacts of the run's
// parameters pseudo-task (datastore.ParamsStep), which start inherits.
func (r *Run) commitParams(ctx context.Context) (*taskRef, error) {
	flow, runID := r.Graph.Flow, r.meta.RunID
	arts := map[string]datastore.Artifact{}
	for _, p := range r.Params {
		if !p.HasValue {
			continue
		}
		a, err := r.Store.Put(ctx, flow, bytes.NewReader(p.Value))
		if err != nil {
			return nil, fmt.Errorf("store parameter %s: %w", p.Name, err)
		}
		arts[p.Name] = a
	}
	now := r.Now()
	rec := &datastore.Task{Flow: flow, RunID: runID, Step: datastore.ParamsStep, TaskID: datastore.ParamsTask,
		Status: datastore.StatusCompleted, ForeachCount: -1, StartedAt: now, FinishedAt: now, Artifacts: arts}
	if err := r.Store.PutTask(ctx, rec); err != nil {
		return nil, fmt.Errorf("store the parameters: %w", err)
	}
	return &taskRef{step: datastore.ParamsStep, id: datastore.ParamsTask, arts: arts, foreachCount: -1}, nil
}

// stagingDir makes a private folder for a task's outputs in the store's
// staging folder (where they are renamed into the store from).
func (r *Run) stagingDir(ctx context.Context, name string) (string, error) {
	base, err := r.Store.Staging(ctx, r.Graph.Flow)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(base, datastore.TaskStagingPrefix(r.meta.RunID, name))
	if err != nil {
		return "", fmt.Errorf("create staging folder: %w", err)
	}
	return dir, nil
}

// CleanStaging removes the task staging folders (datastore.TaskStagingPrefix)
// that a flow's runs which are no longer running left in the store's
// staging folder (their engine was killed before the attempt could remove
// its folder), and returns them. A run is no longer running when its
// record says so, or its engine stopped (datastore.Settle); the folders of
// runs that are running, here or in another engine, and of runs without a
// record, are kept. now is the readers' clock.
func CleanStaging(ctx context.Context, store datastore.Store, flow string, now time.Time) ([]string, error) {
	base, err := store.Staging(ctx, flow)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("list the staging folder of flow %s: %w", flow, err)
	}
	ended := map[string]bool{} // by run id
	var removed []string
	var failed []error
	for _, e := range ents {
		runID, ok := datastore.TaskStagingRun(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		done, seen := ended[runID]
		if !seen {
			run, err := store.GetRun(ctx, flow, runID)
			if err != nil && !errors.Is(err, errs.ErrNotFound) {
				return removed, fmt.Errorf("clean the staging folder of flow %s: %w", flow, err)
			}
			if err == nil {
				datastore.Settle(now, run)
				done = run.Status != datastore.StatusRunning
			}
			ended[runID] = done
		}
		if !done {
			continue
		}
		path := filepath.Join(base, e.Name())
		if err := os.RemoveAll(path); err != nil {
			failed = append(failed, fmt.Errorf("remove staging folder %s of run %s/%s: %w", path, flow, runID, err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(failed...)
}

func (r *Run) newTaskID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	return strconv.Itoa(r.nextID)
}

func stackKey(stack []datastore.Frame) string {
	parts := make([]string, len(stack))
	for i, f := range stack {
		parts[i] = f.Step + ":" + strconv.Itoa(f.Index)
	}
	return strings.Join(parts, "/")
}

// say prints an engine line (no task prefix).
func (r *Run) say(format string, args ...any) {
	r.emit(false, r.stamp()+" "+fmt.Sprintf(format, args...))
}

func (r *Run) stamp() string { return r.Now().Format("2006-01-02 15:04:05.000") }

func (r *Run) emit(stderr bool, line string) {
	if r.Emit == nil {
		return
	}
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	// Steps may print bytes in any encoding; the console stream is UTF-8.
	r.Emit(Event{Line: strings.ToValidUTF8(line, "\uFFFD"), Stderr: stderr})
}

// endRunInExecutors tells each executor the run used that it has ended
// (once per step: executors need not be comparable, and EndRun is
// idempotent).
func (r *Run) endRunInExecutors() {
	for _, e := range r.execs {
		if re, ok := e.exec.(RunEnder); ok {
			re.EndRun(r.Graph.Flow, r.meta.RunID)
		}
	}
}
