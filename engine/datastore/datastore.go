// Package datastore persists runs, tasks, logs and content-addressed artifact
// blobs, and owns where they are (layout.go) and how they are read and
// written. Three interfaces split it by concern: Metadata (records), Blobs
// (content by sha256) and Logs; Store is all three, implemented by Local (a
// folder) and S3 (a bucket, with a local cache). Every write is atomic (temp
// file + rename, or one PUT) so a reader never sees a partial artifact, a task
// marked done without its artifacts, or a torn record; every blob read
// through Open is checked against its address.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// Task statuses.
const (
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// Artifact points at a blob.
type Artifact struct {
	SHA  string `json:"sha"`
	Size int64  `json:"size"`
}

// Attempt is one execution of a task.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	PID        int       `json:"pid"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
	// JobID is the AWS Batch job of an attempt run on Batch, and LogsURL
	// the s3:// folder (JobDir) its task runner uploads its logs to as they
	// grow: where logs are while the attempt has not ended.
	JobID   string `json:"job_id,omitempty"`
	LogsURL string `json:"logs_url,omitempty"`
	// JobLeftRunning: the attempt ended (failed) in the engine's record,
	// but its job could not be stopped (or was left on purpose when the
	// run's client went away) and may still be running.
	JobLeftRunning bool `json:"job_left_running,omitempty"`
}

// LeftJob is a job a run's engine could not stop (or left running when the
// run's client went away): it runs until it ends or reaches its own
// timeout, unless ended with the executor's kill command (batch kill).
type LeftJob struct {
	JobID   string `json:"job_id"`
	Step    string `json:"step"`
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
	// Executor names where it runs ("AWS Batch"), Decorator the decorator
	// that chose it ("batch", whose kill command ends it).
	Executor  string `json:"executor,omitempty"`
	Decorator string `json:"decorator,omitempty"`
	// Error says why it was not stopped.
	Error string `json:"error,omitempty"`
}

// Frame is one level of foreach nesting of a task.
type Frame struct {
	Step  string `json:"step"`
	Index int    `json:"index"`
	Count int    `json:"count"`
}

// Task is a task's metadata (TaskRecord).
type Task struct {
	Flow         string    `json:"flow"`
	RunID        string    `json:"run_id"`
	Step         string    `json:"step"`
	TaskID       string    `json:"task_id"`
	Status       string    `json:"status"`
	Attempts     []Attempt `json:"attempts"`
	Stack        []Frame   `json:"foreach_stack"`
	Parents      []string  `json:"parents"`
	ForeachCount int       `json:"foreach_count"`
	ClonedFrom   string    `json:"cloned_from,omitempty"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at,omitempty"`
	// Artifacts is a completed task's artifact index (name -> blob): the
	// record that marks the task completed carries it, so one write makes a
	// task visible with all it can be read for. Nil until then.
	Artifacts map[string]Artifact `json:"artifacts"`
}

// Run is a run's metadata (RunRecord).
type Run struct {
	Flow       string   `json:"flow"`
	RunID      string   `json:"run_id"`
	Status     string   `json:"status"`
	User       string   `json:"user"`
	Tags       []string `json:"tags"`
	Steps      []string `json:"steps"`
	Parameters []string `json:"parameters"`
	// Graph records each step as run, decorators (resources, ...) included.
	Graph []StepMeta `json:"graph"`
	// With records the decorators given to every step (--with).
	With        []DecoratorMeta `json:"with,omitempty"`
	OriginRunID string          `json:"origin_run_id,omitempty"`
	Error       string          `json:"error,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	FinishedAt  time.Time       `json:"finished_at,omitempty"`
	// HeartbeatAt is refreshed by the engine running the run, every
	// HeartbeatSeconds, while it is running (see Settle).
	HeartbeatAt      time.Time `json:"heartbeat_at,omitempty"`
	HeartbeatSeconds float64   `json:"heartbeat_seconds,omitempty"`
	// JobsLeftRunning are the jobs of the run that its engine could not
	// stop when the run ended (or left running when its client went away).
	JobsLeftRunning []LeftJob `json:"jobs_left_running,omitempty"`

	// engineStopped: Settle found the run's engine gone (never stored).
	engineStopped bool
}

// StepMeta is one step of a run's graph.
type StepMeta struct {
	Name       string          `json:"name"`
	Next       []string        `json:"next"`
	Foreach    string          `json:"foreach,omitempty"`
	Join       bool            `json:"join,omitempty"`
	Decorators []DecoratorMeta `json:"decorators,omitempty"`
}

// DecoratorMeta is a decorator with its arguments as given.
type DecoratorMeta struct {
	Name string            `json:"name"`
	Args map[string]string `json:"args,omitempty"`
}

// Store is a whole datastore: its records, blobs and logs.
type Store interface {
	Metadata
	Blobs
	Logs
}

// Metadata holds a datastore's records: runs, tasks and their steps,
// artifact indexes, code package manifests and code bundles. Missing runs
// and tasks are errors of kind errs.ErrNotFound; every other read of
// something absent is empty.
type Metadata interface {
	// Location names the store for people and remote executors: the local
	// folder, or the s3://bucket/prefix root. It does no I/O.
	Location() string

	// NewRun allocates a unique run id for run.Flow (the next integer) and
	// records run under it.
	NewRun(ctx context.Context, run *Run) error
	PutRun(ctx context.Context, run *Run) error
	GetRun(ctx context.Context, flow, runID string) (*Run, error)
	// ListRuns returns the flow's run ids, newest first. A run being
	// created may be listed before GetRun finds it.
	ListRuns(ctx context.Context, flow string) ([]string, error)
	// ListFlows returns the names of the flows that have at least one run
	// with its record, sorted; folders that are no valid flow name (the S3
	// cache, Batch's engine binaries, ...) are ignored.
	ListFlows(ctx context.Context) ([]string, error)
	// ListSteps returns the steps of a run that have a task folder, sorted.
	ListSteps(ctx context.Context, flow, runID string) ([]string, error)

	// PutTask records a task; a completed task's record carries its
	// artifact index (Task.Artifacts), stored with it in one atomic write.
	PutTask(ctx context.Context, t *Task) error
	GetTask(ctx context.Context, flow, runID, step, taskID string) (*Task, error)
	// ListTasks returns the ids of a step's tasks that have their record,
	// in numeric order.
	ListTasks(ctx context.Context, flow, runID, step string) ([]string, error)

	// GetArtifacts is a task's artifact index: its record's, or for runs
	// recorded before records carried it, its _artifacts.json. A task with
	// none (running, failed, absent) has an empty one.
	GetArtifacts(ctx context.Context, flow, runID, step, taskID string) (map[string]Artifact, error)

	// PutPackage records a run's code package: relative path -> blob (put
	// before). GetPackage of a run without one is nil.
	PutPackage(ctx context.Context, flow, runID string, files map[string]Artifact) error
	GetPackage(ctx context.Context, flow, runID string) (map[string]Artifact, error)

	// PutCode stores a run's code bundle; CodeFile is its file on this
	// machine (fetched if need be), for tasks to load.
	PutCode(ctx context.Context, flow, runID string, code []byte) error
	CodeFile(ctx context.Context, flow, runID string) (string, error)
}

// Blobs holds content-addressed blobs: a flow's blob is named by the
// lowercase hex sha256 of its content. A blob is visible whole or not at
// all.
type Blobs interface {
	// Has reports whether the store holds the blob, and its size.
	Has(ctx context.Context, flow, sha string) (size int64, ok bool, err error)
	// Put stores what r holds, hashing it once as it is written.
	Put(ctx context.Context, flow string, r io.Reader) (Artifact, error)
	// PutSHA stores content whose sha256 the caller knows: nothing is read
	// when the store holds the blob already; otherwise r is checked against
	// sha as it is written (an errs.ErrCorrupt error, and nothing stored,
	// when it differs).
	PutSHA(ctx context.Context, flow, sha string, r io.Reader) (Artifact, error)
	// PutFile stores a staged file (one under Staging, as a task's output)
	// and removes it: renamed into place where it can be, hashed once.
	PutFile(ctx context.Context, flow, path string) (Artifact, error)
	// Open streams a blob. The reader hashes what it reads and its last
	// Read fails with an errs.ErrCorrupt error, naming flow and sha, when
	// the content does not match. A missing blob is errs.ErrNotFound.
	Open(ctx context.Context, flow, sha string) (io.ReadCloser, error)
	// LocalFile is the blob's file on this machine, for a task or a client
	// to read by path, fetched first if this machine has no copy, and
	// verified: its stat equals the stamp recorded when its content was last
	// hashed, else it is hashed now (a mismatch is errs.ErrCorrupt). The
	// reader compares the file's stat with the returned stamp as it reads
	// (stamp.go).
	LocalFile(ctx context.Context, flow, sha string) (BlobFile, error)
	// Staging makes and returns the folder for files about to be PutFile'd.
	Staging(ctx context.Context, flow string) (string, error)
}

// Logs holds the output of task attempts, per stream (Stdout, Stderr).
type Logs interface {
	// LogFile is the file on this machine an attempt's stream is written
	// to while it runs. It does no I/O.
	LogFile(flow, runID, step, taskID string, attempt int, stream string) string
	// SaveLogs stores an attempt's log files (as they are now).
	SaveLogs(ctx context.Context, flow, runID, step, taskID string, attempt int) error
	// ReadLog returns an attempt's stream so far (empty if none).
	ReadLog(ctx context.Context, flow, runID, step, taskID string, attempt int, stream string) ([]byte, error)
}

// indexOf is a task's artifact index as its record holds it (empty, never
// nil, when it holds none).
func indexOf(t *Task) map[string]Artifact {
	if t.Artifacts == nil {
		return map[string]Artifact{}
	}
	return t.Artifacts
}

// ArtifactsOf is the artifact index of task t, whose record the caller has
// read: the record's own, or, for a completed task recorded before records
// carried it, its _artifacts.json (m reads it).
func ArtifactsOf(ctx context.Context, m Metadata, t *Task) (map[string]Artifact, error) {
	if t.Artifacts != nil || t.Status != StatusCompleted {
		return indexOf(t), nil
	}
	return m.GetArtifacts(ctx, t.Flow, t.RunID, t.Step, t.TaskID)
}

// getArtifacts is GetArtifacts of both stores: the record's index, else
// what legacy reads of the task's _artifacts.json (absent: notFound).
func getArtifacts(ctx context.Context, m Metadata, flow, runID, step, taskID string,
	legacy func(arts *map[string]Artifact) error, notFound error) (map[string]Artifact, error) {
	t, err := m.GetTask(ctx, flow, runID, step, taskID)
	switch {
	case err == nil && (t.Artifacts != nil || t.Status != StatusCompleted):
		return indexOf(t), nil
	case err != nil && !errors.Is(err, errs.ErrNotFound):
		return nil, fmt.Errorf("artifacts of task %s/%s/%s/%s: %w", flow, runID, step, taskID, err)
	}
	arts := map[string]Artifact{}
	err = legacy(&arts)
	if errors.Is(err, notFound) {
		return map[string]Artifact{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("artifacts of task %s/%s/%s/%s: %w", flow, runID, step, taskID, err)
	}
	return arts, nil
}
