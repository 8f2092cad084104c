package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Executor runs task attempts: the run's own executor (local Rscript
// processes) or one a step decorator chooses from the Registry. Optional
// capabilities are further interfaces an executor may implement:
// Preflighter, Remote and ArrayExecutor.
type Executor interface {
	// Run runs one attempt to completion. Cancelling ctx kills the task.
	// It returns the exit code; err is set when the task could not be run.
	Run(ctx context.Context, l *Launch) (exitCode int, err error)
}

// Launch is one attempt of a task handed to an executor.
type Launch struct {
	Spec    *TaskSpec
	Rscript string
	Workdir string
	// Env is extra environment for the task (environment decorator).
	Env map[string]string
	// Decorators are the step's decorators merged with --with (the step's
	// own arguments win); remote executors read resources and their own
	// decorator from them.
	Decorators map[string]graph.Decorator
	// Timeout is the timeout decorator's limit (0: none). The scheduler
	// enforces it by cancelling the attempt; a remote executor can also hand
	// it to its backend, in case the engine is gone by then.
	Timeout    time.Duration
	StdoutPath string
	StderrPath string
	// Datastore is where the datastore of record is (Store.Location(): a
	// folder, or s3://bucket/prefix), and Blobs its blobs: where a remote
	// executor reads the inputs and code package its tasks cannot reach,
	// and puts their outputs, which it then reports with Stored instead of
	// staging them in the output folder.
	Datastore string
	Blobs     datastore.Blobs
	// Started is called once the process exists.
	Started func(pid int)
	// Submitted is called by a remote executor once its job exists, with
	// the job's id and the URL of the folder its logs are uploaded to while
	// it runs; both are kept in the attempt's record, for LogSource.
	Submitted func(jobID, logsURL string)
	// Stored is called by an executor whose task's outputs are in the
	// datastore of record's Blobs (name -> sha256) instead of staged: the
	// scheduler adopts those blobs by sha (Blobs.Has), reading none.
	Stored func(outputs map[string]string)
	// Line is called for every line the task prints.
	Line func(stderr bool, text string)
	// Package is the run's code package, sorted by path: a remote executor
	// puts each file at its path in the task's working folder (local tasks
	// run in Workdir, where the files are already).
	Package []CodeFile
	// Array is set for the first attempt of a foreach split whose executor
	// is an ArrayExecutor: the fan-out it belongs to.
	Array *ArraySplit
}

// RunEnder is an optional executor capability: EndRun is called once a run
// has ended (none of its tasks runs any more), so that the executor frees
// what it kept for the run's tasks (the warm executor's zygote) at once
// rather than when it has been idle for a while. It may be called more than
// once for a run (once per step that ran on the executor).
type RunEnder interface {
	EndRun(flow, runID string)
}

// Remote is an executor whose tasks run away from this machine and reach
// the datastore on their own:
//   - the scheduler gives it input blobs by sha only (SpecArtifact.Path and
//     SpecSplit.Path empty) without fetching them from a remote datastore
//     first: the executor ships what its tasks cannot reach, from
//     Launch.Blobs;
//   - the scheduler does not store the attempt's local log files while it
//     runs: its tasks publish their logs themselves, where Launch.Submitted
//     says (the plugin's LogSource reads them from there).
type Remote interface {
	Executor
	// RunsRemotely marks the capability; it is never called.
	RunsRemotely()
}

// Preflighter is an executor that can refuse a step before the run starts
// (a job queue that can never run the step's job), so that nothing is
// written and no earlier step runs in vain. Its error wraps ErrCannotRun when
// the step can never run; other errors mean it could not check.
type Preflighter interface {
	Preflight(ctx context.Context, step string, decos map[string]graph.Decorator, rscript string) error
}

// ErrCannotRun marks a Preflighter's refusal of a step that can never run
// (errors.Is); CannotRun wraps an explanation as one.
var ErrCannotRun = errors.New("the step can never run there")

// CannotRun marks err as a refusal: same message, errors.Is(.., ErrCannotRun).
func CannotRun(err error) error { return cannotRun{err} }

type cannotRun struct{ err error }

func (c cannotRun) Error() string        { return c.err.Error() }
func (c cannotRun) Unwrap() error        { return c.err }
func (c cannotRun) Is(target error) bool { return target == ErrCannotRun }

// NotStopped is the error an executor returns for an attempt whose task it
// was asked to stop (the run cancelled or abandoned, the timeout decorator,
// the engine losing track of it) but could not: a remote job whose API
// could not be reached, or one it left running on purpose (ErrAbandoned).
// The task may still be running: the scheduler never counts it as killed,
// and records its job as left running (datastore.Run.JobsLeftRunning).
type NotStopped struct {
	JobID string
	// Err says why it was not stopped.
	Err error
}

func (e *NotStopped) Error() string {
	return fmt.Sprintf("job %s was not stopped: %v", e.JobID, e.Err)
}

func (e *NotStopped) Unwrap() error { return e.Err }

// ErrAbandoned is the cause (context.Cause) of a run's cancellation when
// the client that started it went away (the R session ended or lost its
// connection) instead of asking to cancel: local tasks die with the run,
// but executors leave remote jobs running (they end by themselves or at
// their own timeout, as Metaflow's do when its client dies) and return
// NotStopped for them.
var ErrAbandoned = errors.New("the R session that started the run went away (it ended, or lost its connection to the engine)")

// Abandoned reports whether ctx was cancelled because its run's client went away.
func Abandoned(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrAbandoned) }
