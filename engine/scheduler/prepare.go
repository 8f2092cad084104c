package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Errors of Prepare and ValidateOptions are marked with their kind
// (engine/errs): a bad flow, option, parameter or resume request is
// ErrInvalid, a missing origin run ErrNotFound, an executor that is not
// configured or can never run a step ErrPrecondition, and a datastore or
// executor service that could not be reached ErrUnavailable.

// ValidateOptions checks options before anything is written.
func ValidateOptions(o *Options) error {
	if o.MaxWorkers < 1 {
		return errs.Invalid("--max-workers must be at least 1 (got %d)", o.MaxWorkers)
	}
	if o.MaxNumSplits < 1 {
		return errs.Invalid("--max-num-splits must be at least 1 (got %d)", o.MaxNumSplits)
	}
	executor := ""
	for _, d := range o.With {
		if err := graph.ValidateDecorator("", d); err != nil {
			return err
		}
		if spec, _ := graph.LookupDecorator(d.Name); spec.Executor {
			if executor != "" && executor != d.Name {
				return errs.Invalid("--with: decorators %q and %q both choose where the steps run: keep one", executor, d.Name)
			}
			executor = d.Name
		}
	}
	for _, t := range o.Tags {
		if t == "" || strings.ContainsAny(t, "\n\r") {
			return errs.Invalid("invalid tag %q: tags must be non-empty single-line strings", t)
		}
	}
	return nil
}

// stepExec is the executor a step's tasks run on.
type stepExec struct {
	exec Executor
	// name names a registered executor in messages ("" for Run.Exec).
	name string
}

// chooseExecutors picks each step's executor: the one its executor
// decorator (its own, else one of --with) chooses from the registry, made
// now if no run needed it yet, else Run.Exec. Steps a resume clones get
// theirs too: a run's executors are all there before it starts.
func (r *Run) chooseExecutors() error {
	r.execs = make(map[string]stepExec, len(r.Graph.Order))
	for _, name := range r.Graph.Order {
		deco := r.policy(r.Graph.Steps[name]).executor
		if deco == "" {
			r.execs[name] = stepExec{exec: r.Exec}
			continue
		}
		e, p, err := r.Executors.Executor(deco)
		if err != nil {
			return err
		}
		r.execs[name] = stepExec{exec: e, name: p.Name()}
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

// preflight asks each step's executor, if it can, to check the step before
// anything runs (steps a resume clones are not checked: they do not run).
func (r *Run) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, name := range r.Graph.Order {
		se := r.execs[name]
		pf, ok := se.exec.(Preflighter)
		if !ok || r.clonesAll(name) {
			continue
		}
		err := pf.Preflight(ctx, name, r.policy(r.Graph.Steps[name]).decos, r.Opts.Rscript)
		switch {
		case errors.Is(err, ErrCannotRun):
			return errs.Precondition("step %s cannot run on %s: %w", name, se.name, err)
		case err != nil:
			return errs.MarkIfNone(errs.ErrUnavailable, fmt.Errorf("could not check %s for step %s: %w", se.name, name, err))
		}
	}
	return nil
}

// storeErr marks a datastore failure that has no kind as ErrUnavailable.
func storeErr(err error) error { return errs.MarkIfNone(errs.ErrUnavailable, err) }

// Prepare validates everything and allocates the run id; nothing is written
// when it fails. After it succeeds, RunID is known and Execute runs the flow.
// ctx bounds the datastore's and the executors' checks.
func (r *Run) Prepare(ctx context.Context) error {
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
			return errs.Invalid("invalid parameter name %q: use a valid R name that is not reserved", p.Name)
		}
		if _, clash := r.Graph.Steps[p.Name]; clash {
			return errs.Invalid("parameter %q has the name of a step: rename one of them", p.Name)
		}
		if p.Required && !p.HasValue {
			return errs.Invalid("parameter %q is required: pass --%s VALUE", p.Name, p.Name)
		}
		names = append(names, p.Name)
	}
	if err := r.chooseExecutors(); err != nil {
		return err
	}
	for _, st := range r.Graph.Steps {
		if st.Foreach != "" && reservedName(st.Foreach) {
			return errs.Invalid("step %q: foreach = %q names a reserved artifact", st.Name, st.Foreach)
		}
	}
	r.meta = &datastore.Run{
		Flow: r.Graph.Flow, Status: datastore.StatusRunning, User: r.Opts.User,
		Tags: r.Opts.Tags, Steps: r.Graph.Order, Parameters: names, CreatedAt: r.Now(),
		HeartbeatSeconds: HeartbeatInterval.Seconds(),
	}
	r.meta.HeartbeatAt = r.meta.CreatedAt
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
		if err := r.prepareResume(ctx); err != nil {
			return err
		}
		r.meta.OriginRunID = r.Opts.OriginRunID
	}
	// After prepareResume: steps a resume clones are not warned about.
	if err := r.planResources(); err != nil {
		return err
	}
	if err := r.preflight(ctx); err != nil {
		return err
	}
	if err := r.Store.NewRun(ctx, r.meta); err != nil {
		return storeErr(err)
	}
	return nil
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

func (r *Run) prepareResume(ctx context.Context) error {
	store, flow := r.Store, r.Graph.Flow
	if r.Opts.OriginRunID == "" {
		ids, err := store.ListRuns(ctx, flow)
		if err != nil {
			return storeErr(fmt.Errorf("find the run to resume: %w", err))
		}
		// The newest run that has ended: not one being created or still
		// running (a run whose engine stopped has ended: datastore.Settle).
		// A run folder without its record is one being created (or whose
		// engine died creating it): skipped. A record that cannot be read
		// stops the search: resuming an older run instead would be a
		// surprise.
		now := time.Now()
		for _, id := range ids {
			run, err := store.GetRun(ctx, flow, id)
			if errors.Is(err, errs.ErrNotFound) {
				continue
			}
			if err != nil {
				return errs.Precondition("cannot resume: run %s of flow %s cannot be read (%v): name the run to resume with --origin-run-id", id, flow, err)
			}
			datastore.Settle(now, run)
			if run.Status != datastore.StatusRunning {
				r.Opts.OriginRunID = id
				break
			}
		}
		if r.Opts.OriginRunID == "" {
			return errs.Precondition("nothing to resume: flow %s has no finished runs yet; use run first", flow)
		}
	}
	if _, err := store.GetRun(ctx, flow, r.Opts.OriginRunID); errors.Is(err, errs.ErrNotFound) {
		return errs.NotFound("cannot resume: run %s of flow %s does not exist (see --origin-run-id)", r.Opts.OriginRunID, flow)
	} else if err != nil {
		return storeErr(fmt.Errorf("cannot resume: read run %s of flow %s: %w", r.Opts.OriginRunID, flow, err))
	}
	r.origin = map[string]*datastore.Task{}
	okSteps := map[string]bool{}
	ambiguous := map[string]bool{}
	for _, step := range r.Graph.Order {
		ids, err := store.ListTasks(ctx, flow, r.Opts.OriginRunID, step)
		if err != nil {
			return storeErr(fmt.Errorf("cannot resume: list the tasks of %s/%s: %w", r.Opts.OriginRunID, step, err))
		}
		all := len(ids) > 0
		for _, id := range ids {
			t, err := store.GetTask(ctx, flow, r.Opts.OriginRunID, step, id)
			if errors.Is(err, errs.ErrNotFound) {
				continue // its record went away since it was listed: never completed
			}
			if err != nil {
				return storeErr(fmt.Errorf("cannot resume: read task %s/%s/%s: %w", r.Opts.OriginRunID, step, id, err))
			}
			// A record that is not this task's (damaged, or another task's)
			// is not cloned: the task runs again.
			if t.Status != datastore.StatusCompleted || t.Flow != flow || t.RunID != r.Opts.OriginRunID || t.Step != step || t.TaskID != id {
				all = false
				continue
			}
			// Two tasks claiming one place in the flow (a damaged foreach
			// index): neither is cloned.
			key := step + "|" + stackKey(t.Stack)
			if _, dup := r.origin[key]; dup || ambiguous[key] {
				delete(r.origin, key)
				ambiguous[key], all = true, false
				continue
			}
			r.origin[key] = t
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
			return errs.Invalid("run %s finished successfully: name the step to resume from (resume STEP)", r.Opts.OriginRunID)
		}
	} else if _, ok := r.Graph.Steps[from]; !ok {
		return errs.Invalid("cannot resume from step %q: the flow has no such step", from)
	}
	r.Opts.ResumeStep = from
	r.rerun = r.Graph.Descendants(from)
	return nil
}
