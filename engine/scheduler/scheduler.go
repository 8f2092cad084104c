// Package scheduler runs a flow: it turns the graph into tasks, keeps at most
// max-workers of them running, fans foreach steps out, matches joins, applies
// retry/catch/timeout, clones finished tasks on resume, and records everything
// in the datastore.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
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
	Exec  Executor
	// Batch runs the tasks of steps with the batch decorator (or every step
	// with --with batch); nil when AWS Batch is not configured.
	Batch  Executor
	Params []Param
	Code   []byte
	// Package is the code package (--package-suffixes), stored before any
	// task starts; remote executors place it in their tasks' working folder.
	Package []PackageFile
	Opts    Options
	// Emit receives console lines; it must not block for long.
	Emit func(Event)
	// Now is the clock (tests may replace it).
	Now func() time.Time

	meta *datastore.Run
	pkg  []CodeFile // the stored code package, by path
	// foreignWorkdir: Opts.Workdir is not a folder of this machine.
	foreignWorkdir bool
	origin         map[string]*datastore.Task // "step|stack" -> completed origin task
	rerun          map[string]bool
	nextID         int
	killed         int
	mu             sync.Mutex
	emitMu         sync.Mutex
	started        chan struct{}
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
	step   string
	stack  []datastore.Frame
	inputs []*taskRef
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

// ValidateOptions checks options before anything is written.
func ValidateOptions(o *Options) error {
	if o.MaxWorkers < 1 {
		return fmt.Errorf("--max-workers must be at least 1 (got %d)", o.MaxWorkers)
	}
	if o.MaxNumSplits < 1 {
		return fmt.Errorf("--max-num-splits must be at least 1 (got %d)", o.MaxNumSplits)
	}
	for _, d := range o.With {
		if err := graph.ValidateDecorator("", d); err != nil {
			return err
		}
	}
	for _, t := range o.Tags {
		if t == "" || strings.ContainsAny(t, "\n\r") {
			return fmt.Errorf("invalid tag %q: tags must be non-empty single-line strings", t)
		}
	}
	return nil
}

// clonesAll reports whether a resume will clone every task of step (it is
// not rerun and the origin completed it), so it never runs.
func (r *Run) clonesAll(step string) bool {
	if r.origin == nil || r.rerun[step] {
		return false
	}
	for key := range r.origin {
		if strings.HasPrefix(key, step+"|") {
			return true
		}
	}
	return false
}

// preflight asks the Batch executor to check every step it would run.
func (r *Run) preflight() error {
	pf, ok := r.Batch.(Preflighter)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range r.Graph.Order {
		pol := r.policy(r.Graph.Steps[name])
		if !pol.batch || r.clonesAll(name) {
			continue
		}
		err := pf.Preflight(ctx, name, pol.decos, r.Opts.Rscript)
		switch {
		case errors.Is(err, ErrCannotRun):
			return fmt.Errorf("step %s cannot run on AWS Batch: %w", name, err)
		case err != nil:
			return fmt.Errorf("could not check AWS Batch for step %s: %w", name, err)
		}
	}
	return nil
}

// Prepare validates everything and allocates the run id; nothing is written
// when it fails. After it succeeds, RunID is known and Execute runs the flow.
func (r *Run) Prepare() error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if err := ValidateOptions(&r.Opts); err != nil {
		return err
	}
	if err := ValidatePackage(r.Package); err != nil {
		return err
	}
	// Decided before the datastore (often inside the workdir) is written.
	r.foreignWorkdir = !isDir(r.Opts.Workdir)
	var names []string
	for _, p := range r.Params {
		if !graph.ValidName(p.Name) || reservedName(p.Name) {
			return fmt.Errorf("invalid parameter name %q: use a valid R name that is not reserved", p.Name)
		}
		if _, clash := r.Graph.Steps[p.Name]; clash {
			return fmt.Errorf("parameter %q has the name of a step: rename one of them", p.Name)
		}
		if p.Required && !p.HasValue {
			return fmt.Errorf("parameter %q is required: pass --%s VALUE", p.Name, p.Name)
		}
		names = append(names, p.Name)
	}
	if r.Batch == nil && UsesBatch(r.Graph, r.Opts.With) {
		return errors.New("AWS Batch is not configured in this engine: set METAFLOW_BATCH_JOB_QUEUE and METAFLOW_DATASTORE_SYSROOT_S3 (see docs/batch.md)")
	}
	for _, st := range r.Graph.Steps {
		if st.Foreach != "" && reservedName(st.Foreach) {
			return fmt.Errorf("step %q: foreach = %q names a reserved artifact", st.Name, st.Foreach)
		}
	}
	r.meta = &datastore.Run{
		Flow: r.Graph.Flow, Status: datastore.StatusRunning, User: r.Opts.User,
		Tags: r.Opts.Tags, Steps: r.Graph.Order, Parameters: names, CreatedAt: r.Now(),
	}
	for _, name := range r.Graph.Order {
		st := r.Graph.Steps[name]
		sm := datastore.StepMeta{Name: name, Next: st.Next, Foreach: st.Foreach, Join: st.Join}
		for _, d := range st.Decorators {
			sm.Decorators = append(sm.Decorators, datastore.DecoratorMeta{Name: d.Name, Args: d.Args})
		}
		r.meta.Graph = append(r.meta.Graph, sm)
	}
	for _, d := range r.Opts.With {
		r.meta.With = append(r.meta.With, datastore.DecoratorMeta{Name: d.Name, Args: d.Args})
	}
	if r.Opts.Resume {
		if err := r.prepareResume(); err != nil {
			return err
		}
		r.meta.OriginRunID = r.Opts.OriginRunID
	}
	if err := r.preflight(); err != nil {
		return err
	}
	if err := r.Store.NewRun(r.meta); err != nil {
		return err
	}
	return nil
}

// UsesBatch reports whether some step of g runs on AWS Batch (its own batch
// decorator, or batch among the --with decorators).
func UsesBatch(g *graph.Graph, with []graph.Decorator) bool {
	for _, d := range with {
		if d.Name == "batch" {
			return true
		}
	}
	for _, st := range g.Steps {
		if _, ok := st.Decorator("batch"); ok {
			return true
		}
	}
	return false
}

// RunID is the allocated run id (after Prepare).
func (r *Run) RunID() string { return r.meta.RunID }

func reservedName(s string) bool {
	switch s {
	case "input", "index", "inputs", "self", "name":
		return true
	}
	return strings.HasPrefix(s, "_")
}

func (r *Run) prepareResume() error {
	store, flow := r.Store, r.Graph.Flow
	if r.Opts.OriginRunID == "" {
		ids, err := store.ListRuns(flow)
		if err != nil {
			return err
		}
		// The newest run that has ended: not one being created or still running.
		for _, id := range ids {
			if run, err := store.GetRun(flow, id); err == nil && run.Status != datastore.StatusRunning {
				r.Opts.OriginRunID = id
				break
			}
		}
		if r.Opts.OriginRunID == "" {
			return fmt.Errorf("nothing to resume: flow %s has no finished runs yet; use run first", flow)
		}
	}
	if _, err := store.GetRun(flow, r.Opts.OriginRunID); err != nil {
		return fmt.Errorf("cannot resume: run %s of flow %s does not exist (see --origin-run-id)", r.Opts.OriginRunID, flow)
	}
	r.origin = map[string]*datastore.Task{}
	okSteps := map[string]bool{}
	for _, step := range r.Graph.Order {
		ids, err := store.ListTasks(flow, r.Opts.OriginRunID, step)
		if err != nil {
			return err
		}
		all := len(ids) > 0
		for _, id := range ids {
			t, err := store.GetTask(flow, r.Opts.OriginRunID, step, id)
			if errors.Is(err, fs.ErrNotExist) {
				continue // listed without metadata (an S3 datastore): never completed
			}
			if err != nil {
				return err
			}
			if t.Status == datastore.StatusCompleted {
				r.origin[step+"|"+stackKey(t.Stack)] = t
			} else {
				all = false
			}
		}
		okSteps[step] = all
	}
	from := r.Opts.ResumeStep
	if from == "" {
		for _, step := range r.Graph.Order {
			if !okSteps[step] {
				from = step
				break
			}
		}
		if from == "" {
			return fmt.Errorf("run %s finished successfully: name the step to resume from (resume STEP)", r.Opts.OriginRunID)
		}
	} else if _, ok := r.Graph.Steps[from]; !ok {
		return fmt.Errorf("cannot resume from step %q: the flow has no such step", from)
	}
	r.Opts.ResumeStep = from
	r.rerun = r.Graph.Descendants(from)
	return nil
}

// Execute runs the prepared flow until it ends or ctx is cancelled.
func (r *Run) Execute(ctx context.Context) error {
	err := r.execute(ctx)
	r.meta.FinishedAt = r.Now()
	if err != nil {
		r.meta.Status = datastore.StatusFailed
		r.meta.Error = err.Error()
	} else {
		r.meta.Status = datastore.StatusCompleted
	}
	if perr := r.Store.PutRun(r.meta); perr != nil && err == nil {
		err = perr
	}
	return err
}

// Killed is the number of running tasks killed by a cancellation.
func (r *Run) Killed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killed
}

func (r *Run) execute(ctx context.Context) error {
	store, flow, runID := r.Store, r.Graph.Flow, r.meta.RunID
	if err := store.PutCode(flow, runID, r.Code); err != nil {
		return err
	}
	if err := r.storePackage(); err != nil {
		return err
	}
	cleanup, err := r.runWorkdir()
	if err != nil {
		return err
	}
	defer cleanup()
	params, err := r.commitParams()
	if err != nil {
		return err
	}
	if r.Opts.Resume {
		r.say("Resuming run %s from step %s (origin run %s).", runID, r.Opts.ResumeStep, r.Opts.OriginRunID)
	}
	r.say("Workflow starting (run-id %s):", runID)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := []*pending{{step: "start", inputs: []*taskRef{params}}}
	joins := map[string]*joinSlot{}
	results := make(chan outcome)
	running := 0
	var failure error

	for {
		for failure == nil && running < r.Opts.MaxWorkers && len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			running++
			go func(p *pending) {
				ref, err := r.runTask(runCtx, p, params)
				results <- outcome{ref: ref, err: err, p: p}
			}(p)
		}
		if running == 0 {
			break
		}
		var out outcome
		select {
		case out = <-results:
		case <-ctx.Done():
			if failure == nil {
				failure = errInterrupted
				r.mu.Lock()
				r.killed = running
				r.mu.Unlock()
				cancel()
			}
			out = <-results
		}
		running--
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
		queue = append(queue, next...)
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

var errInterrupted = errors.New("run interrupted: every running task was killed")

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
// _parameters/0 pseudo-task, which start inherits.
func (r *Run) commitParams() (*taskRef, error) {
	flow, runID := r.Graph.Flow, r.meta.RunID
	arts := map[string]datastore.Artifact{}
	dir, err := r.stagingDir("params")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for _, p := range r.Params {
		if !p.HasValue {
			continue
		}
		path := filepath.Join(dir, p.Name+".mpk")
		if err := os.WriteFile(path, p.Value, 0o644); err != nil {
			return nil, fmt.Errorf("stage parameter %s: %w", p.Name, err)
		}
		a, err := r.Store.CommitBlob(flow, path)
		if err != nil {
			return nil, fmt.Errorf("store parameter %s: %w", p.Name, err)
		}
		arts[p.Name] = a
	}
	if err := r.Store.PutArtifacts(flow, runID, "_parameters", "0", arts); err != nil {
		return nil, err
	}
	return &taskRef{step: "_parameters", id: "0", arts: arts, foreachCount: -1}, nil
}

func (r *Run) stagingDir(name string) (string, error) {
	base := r.Store.StagingDir(r.Graph.Flow)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create staging folder: %w", err)
	}
	dir, err := os.MkdirTemp(base, r.meta.RunID+"-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("create staging folder: %w", err)
	}
	return dir, nil
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
