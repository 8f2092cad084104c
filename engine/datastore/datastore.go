// Package datastore persists runs, tasks, logs and content-addressed artifact
// blobs. Every write is atomic (temp file + rename) so a reader never sees a
// partial artifact, a task marked done without its artifacts, or a torn file.
package datastore

import (
	"time"
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
	// the s3:// folder its task runner uploads stdout.log and stderr.log to
	// as they grow: where logs are while the attempt has not ended.
	JobID   string `json:"job_id,omitempty"`
	LogsURL string `json:"logs_url,omitempty"`
}

// Frame is one level of foreach nesting of a task.
type Frame struct {
	Step  string `json:"step"`
	Index int    `json:"index"`
	Count int    `json:"count"`
}

// Task is a task's metadata (_task.json).
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
}

// Run is a run's metadata (_run.json).
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

// Store is implemented by the local folder datastore and the S3 one.
type Store interface {
	// Location names the store for people and remote executors: the local
	// folder, or the s3://bucket/prefix root.
	Location() string

	// NewRun allocates a unique run id for flow and records run.
	NewRun(run *Run) error
	PutRun(run *Run) error
	GetRun(flow, runID string) (*Run, error)
	// ListRuns returns the flow's run ids, newest first.
	ListRuns(flow string) ([]string, error)
	// ListFlows returns the names of the flows that have at least one run
	// (a numeric folder with its _run.json), sorted; folders that are no
	// valid flow name (_s3cache, _engine, ...) are ignored.
	ListFlows() ([]string, error)

	PutCode(flow, runID string, code []byte) error
	CodePath(flow, runID string) string

	// PutPackage records a run's code package (_package.json): relative
	// path -> blob (content-addressed, committed before). GetPackage reads
	// it; a run without a package has none (nil, no error).
	PutPackage(flow, runID string, files map[string]Artifact) error
	GetPackage(flow, runID string) (map[string]Artifact, error)

	PutTask(t *Task) error
	GetTask(flow, runID, step, taskID string) (*Task, error)
	// ListTasks returns the task ids of a step, in numeric order.
	ListTasks(flow, runID, step string) ([]string, error)
	ListSteps(flow, runID string) ([]string, error)

	// PutArtifacts records a task's artifact index; call before marking it completed.
	PutArtifacts(flow, runID, step, taskID string, arts map[string]Artifact) error
	GetArtifacts(flow, runID, step, taskID string) (map[string]Artifact, error)
	// CommitBlob moves a staged file into the content-addressed store.
	CommitBlob(flow, stagedPath string) (Artifact, error)
	// AdoptBlob returns the artifact of a blob the store already holds (put
	// there by a remote task); an error if it does not hold it.
	AdoptBlob(flow, sha string) (Artifact, error)
	// BlobPath is where the blob is, or will be once fetched, on this machine.
	BlobPath(flow, sha string) string
	// FetchBlob makes the blob local (downloading it if need be) and returns its path.
	FetchBlob(flow, sha string) (string, error)

	// StagingDir is a folder for files about to be committed (task outputs):
	// on the same filesystem as the blobs, so CommitBlob is a rename.
	StagingDir(flow string) string

	// LogPath is where an attempt's stdout or stderr is written as it runs.
	LogPath(flow, runID, step, taskID string, attempt int, stream string) string
	// SaveLogs stores an attempt's log files once it has ended.
	SaveLogs(flow, runID, step, taskID string, attempt int) error
	// ReadLog returns an attempt's stdout or stderr so far (empty if none).
	ReadLog(flow, runID, step, taskID string, attempt int, stream string) ([]byte, error)
}
