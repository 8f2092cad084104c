package scheduler

import (
	"bytes"
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

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// stepPolicy is what a step's decorators (and --with) ask of its tasks.
type stepPolicy struct {
	retries   int
	retryWait time.Duration
	// catch: the catch decorator; catchVar the artifact it stores the
	// error in ("": none, as Metaflow's catch without var).
	catch    bool
	catchVar string
	// quietErrors: catch(print_exception = FALSE).
	quietErrors bool
	timeout     time.Duration
	env         map[string]string
	decos       map[string]graph.Decorator
	// executor is the decorator that chooses the step's executor ("": the
	// run's own): the step's own, else one of --with.
	executor string
}

func (r *Run) policy(st *graph.Step) stepPolicy {
	var p stepPolicy
	decos := map[string]graph.Decorator{}
	for _, d := range r.Opts.With {
		decos[d.Name] = d
	}
	for _, d := range st.Decorators { // the step's own arguments win over --with
		decos[d.Name] = d
	}
	p.decos = decos
	p.executor = executorDecorator(st.Decorators)
	if p.executor == "" {
		p.executor = executorDecorator(r.Opts.With)
	}
	num := func(d graph.Decorator, k string, def float64) float64 {
		if v, ok := d.Args[k]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
		return def
	}
	if d, ok := decos["retry"]; ok {
		// Metaflow retries 3 times by default; locally we do not wait between
		// attempts unless asked (Metaflow's 2 minutes suit remote failures).
		p.retries = int(num(d, "times", 3))
		p.retryWait = time.Duration(num(d, "minutes_between_retries", 0) * float64(time.Minute))
	}
	if d, ok := decos["catch"]; ok {
		p.catch, p.catchVar = true, d.Args["var"]
		pe := d.Args["print_exception"]
		p.quietErrors = pe == "FALSE" || pe == "false"
	}
	if d, ok := decos["timeout"]; ok {
		secs := num(d, "seconds", 0) + 60*num(d, "minutes", 0) + 3600*num(d, "hours", 0)
		p.timeout = time.Duration(secs * float64(time.Second))
	}
	if d, ok := decos["environment"]; ok {
		p.env = map[string]string{}
		for k, v := range d.Args {
			p.env[k] = v
		}
	}
	return p
}

// runTask runs (or clones, on resume) one task through all its attempts.
func (r *Run) runTask(ctx context.Context, p *pending, params *taskRef) (*taskRef, error) {
	g, flow, runID := r.Graph, r.Graph.Flow, r.meta.RunID
	st := g.Steps[p.step]
	id := p.id
	if r.origin != nil && !r.rerun[p.step] {
		if ot, ok := r.origin[p.step+"|"+stackKey(p.stack)]; ok {
			return r.clone(ctx, p, id, ot)
		}
	}
	pol := r.policy(st)
	task := &datastore.Task{
		Flow: flow, RunID: runID, Step: p.step, TaskID: id, Status: datastore.StatusRunning,
		Stack: p.stack, ForeachCount: -1, StartedAt: r.Now(),
	}
	for _, in := range p.inputs {
		task.Parents = append(task.Parents, runID+"/"+in.step+"/"+in.id)
	}
	code, err := r.Store.CodeFile(ctx, flow, runID)
	if err != nil {
		return nil, fmt.Errorf("%w: code of step %s: %v", errFatal, p.step, err)
	}
	spec := &TaskSpec{
		Flow: flow, RunID: runID, Step: p.step, TaskID: id, Code: code,
		Join: st.Join, ForeachVar: st.Foreach, Index: -1, Parameters: r.meta.Parameters,
		QuietErrors: pol.quietErrors,
	}
	if spec.Parameters == nil {
		spec.Parameters = []string{}
	}
	files := map[string]SpecArtifact{} // by sha: one check per blob (a join's inputs share many)
	for _, in := range p.inputs {
		si := SpecInput{Step: in.step, TaskID: in.id, Artifacts: map[string]SpecArtifact{}}
		for name, a := range in.arts {
			sa, err := r.inputFile(ctx, flow, a.SHA, p.step, files)
			if err != nil {
				return nil, r.inputError(p.step, id, "input artifact", name, in, err)
			}
			si.Artifacts[name] = sa
		}
		spec.Inputs = append(spec.Inputs, si)
	}
	// A direct child of a foreach step gets its element as self$input.
	if n := len(p.stack); n > 0 && !st.Join && p.inputs[0].step == p.stack[n-1].Step {
		top := p.stack[n-1]
		parent := g.Steps[top.Step]
		a := p.inputs[0].arts[parent.Foreach]
		spec.Index = top.Index
		sa, err := r.inputFile(ctx, flow, a.SHA, p.step, files)
		if err != nil {
			return nil, r.inputError(p.step, id, "foreach artifact", parent.Foreach, p.inputs[0], err)
		}
		spec.Input = &SpecSplit{SHA: a.SHA, Path: sa.Path, Stamp: sa.Stamp, Index: top.Index}
		if _, remote := r.execs[p.step].exec.(Remote); !remote {
			el, err := r.splitOf(ctx, flow, a.SHA, top.Index)
			if err != nil {
				return nil, r.inputError(p.step, id, "foreach artifact", parent.Foreach, p.inputs[0], err)
			}
			switch {
			case el.doc != nil:
				spec.Input.Path, spec.Input.Stamp, spec.Input.Doc, spec.Input.Whole = "", nil, el.doc, true
			case el.file != "":
				spec.Input.Path, spec.Input.Stamp, spec.Input.Whole = el.file, StampOf(el.stamp), true
			}
		}
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		ref, err := r.attempt(ctx, task, spec, p, attempt, pol)
		if err == nil {
			return ref, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, errInterrupted
		}
		if attempt < pol.retries {
			r.taskSay(task, "Task failed. Retrying (attempt %d of %d).", attempt+2, pol.retries+1)
			select {
			case <-time.After(pol.retryWait):
			case <-ctx.Done():
				return nil, errInterrupted
			}
			continue
		}
		if pol.catch && !errors.Is(err, errFatal) {
			return r.caught(ctx, task, p, pol.catchVar, err)
		}
		return nil, lastErr
	}
}

// RunningRecordAfter is how long an attempt runs before its running record
// is written (a variable for tests).
var RunningRecordAfter = time.Second

// errFatal marks failures that catch must not hide (broken engine state).
var errFatal = errors.New("engine error")

// fatalError marks err as errFatal without changing its message.
type fatalError struct{ error }

func (e fatalError) Is(target error) bool { return target == errFatal }
func (e fatalError) Unwrap() error        { return e.error }

func (r *Run) attempt(ctx context.Context, task *datastore.Task, spec *TaskSpec, p *pending, attempt int, pol stepPolicy) (*taskRef, error) {
	flow, runID := task.Flow, task.RunID
	// Records are written to the end, also after Ctrl-C (each within the
	// store's deadline for a record); blob transfers stop with ctx.
	rec := context.WithoutCancel(ctx)
	// The task cannot start where its folder or record cannot be written
	// (a full or read-only datastore): the run fails with that cause.
	cannot := func(err error) (*taskRef, error) {
		r.taskSay(task, "Task failed: %v", err)
		return nil, fatalError{fmt.Errorf("step %s failed (task %s/%s/%s): %w", task.Step, runID, task.Step, task.TaskID, err)}
	}
	outDir, err := r.takeStaging(ctx)
	if err != nil {
		return cannot(err)
	}
	reuse := false // the folder goes back to the pool only if the attempt ended well
	defer func() { r.giveStaging(outDir, reuse) }()
	spec.Attempt, spec.OutputDir = attempt, outDir
	spec.Current = map[string]string{
		"flow_name": flow, "run_id": runID, "step_name": task.Step, "task_id": task.TaskID,
		"retry_count": strconv.Itoa(attempt), "origin_run_id": r.meta.OriginRunID,
		"username": r.meta.User, "pathspec": flow + "/" + runID + "/" + task.Step + "/" + task.TaskID,
		"tags": strings.Join(r.meta.Tags, ","), "namespace": "user:" + r.meta.User,
		"metadata": metadataString(r.Store.Location()),
	}
	at := datastore.Attempt{Attempt: attempt, Status: datastore.StatusRunning, StartedAt: r.Now()}
	task.Attempts = append(task.Attempts, at)
	cur := &task.Attempts[len(task.Attempts)-1]
	task.Status = datastore.StatusRunning
	// The running record is written only once the attempt has run for
	// RunningRecordAfter: most tasks end sooner, and every record is a
	// write (an S3 PUT), so their final record is the only one. recMu
	// guards task while the timer may be writing it.
	var recMu sync.Mutex
	ended := false
	runningRec := time.AfterFunc(RunningRecordAfter, func() {
		recMu.Lock()
		defer recMu.Unlock()
		if !ended {
			_ = r.Store.PutTask(rec, task)
		}
	})
	actx, cancel := ctx, context.CancelFunc(func() {})
	if pol.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, pol.timeout)
	}
	defer cancel()
	exec := r.execs[task.Step].exec
	if exec == nil {
		return nil, fmt.Errorf("%w: step %s has no executor (Prepare chooses them)", errFatal, task.Step)
	}
	var storedMu sync.Mutex
	var stored map[string]string // outputs the task left in the datastore
	// The runtime's last error line: the error when its staging folder
	// could not take the error file (a read-only or full file system).
	var lastErrMu sync.Mutex
	var lastErr string
	l := &Launch{
		Spec: spec, Rscript: r.Opts.Rscript, Workdir: r.Opts.Workdir, Env: taskEnv(pol.env, p.held), Decorators: pol.decos, Timeout: pol.timeout,
		StdoutPath: r.Store.LogFile(flow, runID, task.Step, task.TaskID, attempt, datastore.Stdout),
		StderrPath: r.Store.LogFile(flow, runID, task.Step, task.TaskID, attempt, datastore.Stderr),
		Started: func(pid int) {
			recMu.Lock()
			cur.PID = pid
			recMu.Unlock()
			r.taskSay(task, "Task is starting.")
		},
		Datastore: r.Store.Location(),
		Blobs:     r.Store,
		Submitted: func(jobID, logsURL string) {
			recMu.Lock()
			cur.JobID, cur.LogsURL = jobID, logsURL
			recMu.Unlock()
		},
		Stored: func(outputs map[string]string) {
			storedMu.Lock()
			defer storedMu.Unlock()
			stored = outputs
		},
		Line: func(stderr bool, text string) {
			if stderr && strings.HasPrefix(text, "Error") {
				lastErrMu.Lock()
				lastErr = text
				lastErrMu.Unlock()
			}
			r.emit(stderr, r.stamp()+" "+r.prefix(task)+" "+text)
		},
		Package: r.pkg,
	}
	if attempt == 0 {
		l.Array = p.array // a retry runs alone
	}
	stopSaving := func() {}
	if _, remote := exec.(Remote); !remote { // a remote task publishes its own logs
		stopSaving = r.saveLogsWhileRunning(ctx, flow, runID, task.Step, task.TaskID, attempt)
	}
	// A local task's outputs are hashed as it writes them (PutFile below).
	var pre *datastore.Prehasher
	if _, remote := exec.(Remote); !remote {
		pre = datastore.WatchStaging(outDir)
	}
	defer pre.Close()
	code, runErr := exec.Run(actx, l)
	stopSaving()
	runningRec.Stop()
	recMu.Lock() // waits for a running record being written; task is ours from here
	ended = true
	defer recMu.Unlock()
	cur.FinishedAt, cur.ExitCode = r.Now(), code
	// The logs are saved while the outputs are stored (two uploads at once
	// on S3), and before the final record.
	logsSaved := make(chan struct{})
	saveLogs := func() {
		defer close(logsSaved)
		if err := r.Store.SaveLogs(rec, flow, runID, task.Step, task.TaskID, attempt); err != nil {
			r.taskSay(task, "Warning: the task's logs were not saved: %v", err)
		}
	}
	if r.remoteStore() {
		go saveLogs()
	} else {
		saveLogs() // nothing to send: the log files are in place
	}
	defer func() { <-logsSaved }()
	fail := func(msg string) (*taskRef, error) {
		// What the task staged goes first: on a full disk it holds the
		// space the failure's record needs. The prehasher's files go with
		// it: an output it holds open keeps its space, removed or not.
		pre.Close()
		os.RemoveAll(outDir)
		cur.Status, cur.Error = datastore.StatusFailed, msg
		task.Status, task.FinishedAt = datastore.StatusFailed, r.Now()
		<-logsSaved
		r.putEnd(rec, task)
		return nil, fmt.Errorf("step %s failed (task %s/%s/%s): %s", task.Step, runID, task.Step, task.TaskID, msg)
	}
	// A job the executor could not stop is never counted as killed.
	var ns *NotStopped
	left := errors.As(runErr, &ns)
	if left {
		if cur.JobID == "" {
			cur.JobID = ns.JobID
		}
		cur.JobLeftRunning = true
		r.noteStop(task, cur, false, ns.Err.Error())
	}
	switch {
	case left && ctx.Err() != nil && Abandoned(ctx):
		r.taskSay(task, "Task's job %s was left running: %v.", cur.JobID, ns.Err)
		return fail(fmt.Sprintf("left running (job %s): %v", cur.JobID, ns.Err))
	case left && ctx.Err() != nil:
		r.taskSay(task, "Task's job %s could not be stopped (%v): it may still be running.", cur.JobID, ns.Err)
		return fail(fmt.Sprintf("the run was interrupted, but job %s could not be stopped (%v): it may still be running", cur.JobID, ns.Err))
	case ctx.Err() != nil:
		r.noteStop(task, cur, true, "")
		r.taskSay(task, "Task was killed.")
		return fail("killed: the run was interrupted")
	case left && actx.Err() != nil:
		r.taskSay(task, "Task timed out after %s, but its job %s could not be stopped (%v): it may still be running.", pol.timeout, cur.JobID, ns.Err)
		return fail(fmt.Sprintf("timed out after %s (timeout decorator), but job %s could not be stopped (%v): it may still be running", pol.timeout, cur.JobID, ns.Err))
	case actx.Err() != nil:
		r.taskSay(task, "Task timed out after %s and was killed.", pol.timeout)
		return fail(fmt.Sprintf("timed out after %s (timeout decorator)", pol.timeout))
	case runErr != nil:
		r.taskSay(task, "Task failed: %v", runErr)
		return fail(runErr.Error())
	case code != 0:
		msg := fmt.Sprintf("exit status %d", code)
		if b, err := os.ReadFile(filepath.Join(outDir, ErrorFile)); err == nil && len(bytes.TrimSpace(b)) > 0 {
			msg = strings.TrimSpace(string(b))
		} else {
			lastErrMu.Lock()
			if lastErr != "" {
				msg = strings.TrimPrefix(lastErr, "Error: ")
			}
			lastErrMu.Unlock()
		}
		r.taskSay(task, "Task failed.")
		return fail(msg)
	}
	res, err := ReadResult(filepath.Join(outDir, ResultFile))
	if errors.Is(err, fs.ErrNotExist) {
		// Exit status 0 without a result: the R process ended before the
		// runtime could store the step's artifacts (base::quit() in the step).
		r.taskSay(task, "Task failed.")
		return fail(fmt.Sprintf("the task's R process exited (status 0) before step %s returned: "+
			"did the step call quit()? A step ends by returning, or fails with stop()", task.Step))
	}
	if err != nil {
		r.taskSay(task, "Task failed: %v", err)
		return fail(err.Error())
	}
	arts := r.inherited(task, p)
	for name, idx := range res.Merged {
		if idx < 0 || idx >= len(p.inputs) {
			return fail(fmt.Sprintf("merge_artifacts: input %d out of range", idx))
		}
		a, ok := p.inputs[idx].arts[name]
		if !ok {
			return fail(fmt.Sprintf("merge_artifacts: input %d has no artifact %q", idx, name))
		}
		arts[name] = a
	}
	storedMu.Lock()
	remote := stored
	storedMu.Unlock()
	for _, name := range res.Artifacts {
		var a datastore.Artifact
		if sha, ok := remote[name]; ok {
			a, err = r.adopt(ctx, flow, sha)
		} else {
			a, err = r.Store.PutFile(datastore.WithPrehasher(ctx, pre), flow, filepath.Join(outDir, name+".mpk"))
		}
		if err != nil && ctx.Err() != nil { // Ctrl-C stopped the transfer
			r.taskSay(task, "Task was killed.")
			return fail("killed: the run was interrupted")
		}
		if err != nil {
			msg := fmt.Sprintf("store artifact %s of %s/%s/%s/%s: %v", name, flow, runID, task.Step, task.TaskID, err)
			r.taskSay(task, "Task failed: %s", msg)
			return fail(msg)
		}
		arts[name] = a
	}
	if spec.ForeachVar != "" && res.ForeachCount < 0 {
		return fail(fmt.Sprintf("foreach artifact %q was not produced", spec.ForeachVar))
	}
	task.ForeachCount = res.ForeachCount
	<-logsSaved
	reuse = true
	return r.complete(rec, task, p, arts, cur)
}

// putEnd records a task's failure. When that write fails too (the
// datastore is full, read-only or failing), the record stays "running" and
// readers take it for failed once the run's end is known
// (datastore.Settle); the console says so.
func (r *Run) putEnd(ctx context.Context, task *datastore.Task) {
	if err := r.Store.PutTask(ctx, task); err != nil {
		r.taskSay(task, "Warning: the task's failure could not be recorded (readers see it failed once the run has ended): %v", err)
	}
}

// adopt returns the artifact of a blob an executor's task put in the
// datastore itself (Launch.Stored): it is not read, only found.
func (r *Run) adopt(ctx context.Context, flow, sha string) (datastore.Artifact, error) {
	size, ok, err := r.Store.Has(ctx, flow, sha)
	if err != nil {
		return datastore.Artifact{}, err
	}
	if !ok {
		return datastore.Artifact{}, fmt.Errorf("blob %s of flow %s is not in the datastore %s", sha, flow, r.Store.Location())
	}
	return datastore.Artifact{SHA: sha, Size: size}, nil
}

// inherited is what a task sees before it assigns anything: its parent's
// artifacts, or only the parameters for a join.
func (r *Run) inherited(task *datastore.Task, p *pending) map[string]datastore.Artifact {
	arts := map[string]datastore.Artifact{}
	if r.Graph.Steps[task.Step].Join {
		for _, name := range r.meta.Parameters {
			if a, ok := p.inputs[0].arts[name]; ok {
				arts[name] = a
			}
		}
		return arts
	}
	for k, v := range p.inputs[0].arts {
		arts[k] = v
	}
	return arts
}

func (r *Run) complete(ctx context.Context, task *datastore.Task, p *pending, arts map[string]datastore.Artifact, cur *datastore.Attempt) (*taskRef, error) {
	// One write: the record that marks the task completed carries its
	// artifact index, so a reader never sees one without the other.
	task.Artifacts = arts
	if cur != nil {
		cur.Status = datastore.StatusCompleted
	}
	task.Status, task.FinishedAt = datastore.StatusCompleted, r.Now()
	if perr := r.Store.PutTask(ctx, task); perr != nil {
		err := fmt.Errorf("record the end of task %s/%s/%s/%s: %w", task.Flow, task.RunID, task.Step, task.TaskID, perr)
		// The task ran but its end is not recorded: it failed (not left
		// "running"), and catch must not hide it.
		r.taskSay(task, "Task failed: %v", err)
		if cur != nil {
			cur.Status, cur.Error = datastore.StatusFailed, err.Error()
		}
		task.Artifacts = nil
		task.Status, task.FinishedAt = datastore.StatusFailed, r.Now()
		r.putEnd(ctx, task)
		return nil, fatalError{fmt.Errorf("step %s failed (task %s/%s/%s): %w", task.Step, task.RunID, task.Step, task.TaskID, err)}
	}
	if task.ForeachCount >= 0 && r.Graph.Steps[task.Step].Foreach != "" {
		r.taskSay(task, "Foreach yields %d child steps.", task.ForeachCount)
	}
	if task.ClonedFrom == "" {
		r.taskSay(task, "Task finished successfully.")
	}
	return &taskRef{step: task.Step, id: task.TaskID, stack: p.stack, arts: arts, foreachCount: task.ForeachCount}, nil
}

// caught turns a failed task into a completed one whose catch variable
// holds the error message (the catch decorator); without a variable the
// error is kept in the task's record only (its attempt's error).
func (r *Run) caught(ctx context.Context, task *datastore.Task, p *pending, varName string, cause error) (*taskRef, error) {
	if r.Graph.Steps[task.Step].Foreach != "" {
		return nil, cause // a foreach step must yield its splits
	}
	arts := r.inherited(task, p)
	if varName == "" {
		r.taskSay(task, "Task failed; the catch decorator caught the error and the flow goes on.")
		return r.complete(context.WithoutCancel(ctx), task, p, arts, nil)
	}
	a, err := r.Store.Put(ctx, task.Flow, bytes.NewReader(encodeRString(cause.Error())))
	if err != nil {
		return nil, fmt.Errorf("store catch variable %s: %w", varName, err)
	}
	arts[varName] = a
	r.taskSay(task, "Task failed; the catch decorator stored the error in %s and the flow goes on.", varName)
	return r.complete(context.WithoutCancel(ctx), task, p, arts, nil)
}

// encodeRString encodes a character(1) as an R-value msgpack document.
func encodeRString(s string) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeMapLen(2)
	_ = enc.EncodeString("t")
	_ = enc.EncodeString("character")
	_ = enc.EncodeString("v")
	_ = enc.EncodeArrayLen(1)
	_ = enc.EncodeString(s)
	return buf.Bytes()
}

// clone reuses a task that completed in the origin run (resume).
func (r *Run) clone(ctx context.Context, p *pending, id string, ot *datastore.Task) (*taskRef, error) {
	flow, runID := r.Graph.Flow, r.meta.RunID
	arts, err := datastore.ArtifactsOf(ctx, r.Store, ot)
	if err != nil {
		return nil, err
	}
	task := &datastore.Task{
		Flow: flow, RunID: runID, Step: p.step, TaskID: id, Stack: p.stack,
		ForeachCount: ot.ForeachCount, StartedAt: r.Now(),
		ClonedFrom: ot.RunID + "/" + ot.Step + "/" + ot.TaskID, Attempts: ot.Attempts,
	}
	for _, in := range p.inputs {
		task.Parents = append(task.Parents, runID+"/"+in.step+"/"+in.id)
	}
	if n := len(ot.Attempts); n > 0 {
		last := ot.Attempts[n-1].Attempt
		for _, s := range datastore.Streams {
			if b, err := r.Store.ReadLog(ctx, flow, ot.RunID, ot.Step, ot.TaskID, last, s); err == nil && len(b) > 0 {
				writeFile(r.Store.LogFile(flow, runID, p.step, id, last, s), b)
			}
		}
		if err := r.Store.SaveLogs(ctx, flow, runID, p.step, id, last); err != nil {
			r.say("[%s/%s/%s] Warning: the cloned task's logs were not saved: %v", runID, p.step, id, err)
		}
	}
	r.say("[%s/%s/%s] Cloning results of a previously run task %s.", runID, p.step, id, task.ClonedFrom)
	return r.complete(ctx, task, p, arts, nil)
}

// inputFile is the file a task reads an input blob from: this machine's
// copy (fetched if need be), verified (by its stamp, else hashed), with the
// stamp the runtime checks again as it reads; files caches them by sha. A
// remote executor gets inputs by sha only (no path) and ships what its
// tasks cannot reach from Launch.Blobs, so for its steps nothing is fetched
// from a remote datastore just to be found there.
func (r *Run) inputFile(ctx context.Context, flow, sha, step string, files map[string]SpecArtifact) (SpecArtifact, error) {
	if _, remote := r.execs[step].exec.(Remote); remote {
		return SpecArtifact{SHA: sha}, nil
	}
	if sa, ok := files[sha]; ok {
		return sa, nil
	}
	f, err := r.Store.LocalFile(ctx, flow, sha)
	if err != nil {
		return SpecArtifact{}, err
	}
	sa := SpecFile(sha, f)
	files[sha] = sa
	return sa, nil
}

// inputError is why task id of step cannot start: an artifact of input in
// could not be read (it is missing, or its blob is corrupt: errs.ErrCorrupt
// stays on the chain).
func (r *Run) inputError(step, id, what, name string, in *taskRef, err error) error {
	flow, runID := r.Graph.Flow, r.meta.RunID
	fix := ""
	if errors.Is(err, errs.ErrCorrupt) {
		fix = " (to store it again, resume from the step that assigned it: a blob made again replaces the corrupt one)"
	}
	return fmt.Errorf("%w: task %s/%s/%s/%s cannot start: its %s '%s' (of %s/%s/%s/%s): %w%s",
		errFatal, flow, runID, step, id, what, name, flow, runID, in.step, in.id, err, fix)
}

// executorDecorator returns the decorator among ds that chooses an executor
// ("" if none; graph validation allows at most one).
func executorDecorator(ds []graph.Decorator) string {
	for _, d := range ds {
		if spec, ok := graph.LookupDecorator(d.Name); ok && spec.Executor {
			return d.Name
		}
	}
	return ""
}

// writeFile writes a cloned log; losing it loses no result.
func writeFile(dst string, b []byte) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		_ = os.WriteFile(dst, b, 0o644)
	}
}

func (r *Run) prefix(t *datastore.Task) string {
	pid := 0
	if n := len(t.Attempts); n > 0 {
		pid = t.Attempts[n-1].PID
	}
	return fmt.Sprintf("[%s/%s/%s (pid %d)]", t.RunID, t.Step, t.TaskID, pid)
}

func (r *Run) taskSay(t *datastore.Task, format string, args ...any) {
	r.emit(false, r.stamp()+" "+r.prefix(t)+" "+fmt.Sprintf(format, args...))
}

// metadataString is Metaflow's description of where a run's metadata is
// (get_metadata() in a step): local@<folder> or s3@s3://bucket/prefix.
func metadataString(location string) string {
	if strings.HasPrefix(location, "s3://") {
		return "s3@" + location
	}
	return "local@" + location
}
