package scheduler

import (
	"context"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

// Plugin is a kind of executor that a step decorator of the same name
// chooses (registered in a Registry). Optional capabilities are further
// interfaces a plugin may implement: LogSource and JobManager; those work
// without the executor, so without its settings where they need none.
type Plugin interface {
	// Name names the executor in messages ("step x cannot run on <Name>").
	Name() string
	// NewExecutor makes the executor. The registry calls it when a run
	// first needs it and keeps the result; an error (a missing setting,
	// say) fails that run before anything is written, and the next run
	// tries again.
	NewExecutor() (Executor, error)
}

// LogSource is a plugin that reads the logs of its attempts that have not
// ended by their record, from where its tasks publish them while they run
// (Launch.Submitted): logs then works from another machine, and after the
// engine that ran the task died.
type LogSource interface {
	// AttemptLogs returns a reader for one request; it makes whatever
	// clients it needs on first use, once per reader.
	AttemptLogs(ctx context.Context) AttemptLogReader
}

// AttemptLogReader reads the logs of attempts (see LogSource).
type AttemptLogReader interface {
	// Read returns an attempt's logs; ok is false when it has none to give
	// (not one of its attempts, nothing published): the datastore's log
	// files are then all there is.
	Read(ctx context.Context, at datastore.Attempt) (stdout, stderr []byte, ok bool)
}

// JobManager is a plugin whose tasks run as jobs that outlive the engine
// that started them: it lists, and on request terminates, the unfinished
// jobs of one flow.
type JobManager interface {
	// Jobs lists (and with q.Kill terminates) the jobs q selects. Every
	// place jobs may be is listed before anything is terminated.
	Jobs(ctx context.Context, q JobQuery) (*JobReport, error)
}

// JobQuery selects the unfinished jobs of one flow, always of one user.
type JobQuery struct {
	Flow string
	User string
	// RunID selects one run; with RunID "" and AllRuns false, the user's
	// latest run in the datastore.
	RunID   string
	AllRuns bool
	// Kill terminates the jobs selected.
	Kill bool
	// Runs opens the datastore the flow's runs are recorded in (the runs
	// say where their jobs went); nil when the request named none.
	Runs func() (RunReader, error)
}

// Latest reports whether q selects the user's latest run.
func (q JobQuery) Latest() bool { return !q.AllRuns && q.RunID == "" }

// RunReader is what a JobManager reads of the datastore (of its
// datastore.Metadata).
type RunReader interface {
	Location() string
	ListRuns(ctx context.Context, flow string) ([]string, error)
	GetRun(ctx context.Context, flow, runID string) (*datastore.Run, error)
}

// JobReport is what JobManager.Jobs found (and terminated).
type JobReport struct {
	// RunID is the run selected ("" for all runs).
	RunID string
	// Queue is where jobs are looked for when a run names no other place.
	Queue string
	// Jobs are newest first.
	Jobs   []Job
	Killed int
}

// Job is one unfinished job of a task attempt.
type Job struct {
	ID, Name, Status    string
	RunID, Step, TaskID string
	User                string
	Attempt             int
	CreatedAt           time.Time
	// Error says why terminating it failed (Kill only).
	Error string
}
