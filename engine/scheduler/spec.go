package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// TaskSpec tells the base-R task runtime what to run (plain msgpack; field
// names are documented in docs/ARCHITECTURE.md).
type TaskSpec struct {
	Flow       string            `msgpack:"flow"`
	RunID      string            `msgpack:"run_id"`
	Step       string            `msgpack:"step"`
	TaskID     string            `msgpack:"task_id"`
	Attempt    int               `msgpack:"attempt"`
	Code       string            `msgpack:"code"`
	Join       bool              `msgpack:"join"`
	Inputs     []SpecInput       `msgpack:"inputs"`
	ForeachVar string            `msgpack:"foreach_var"`
	Input      *SpecSplit        `msgpack:"input,omitempty"`
	Index      int               `msgpack:"index"`
	Parameters []string          `msgpack:"parameters"`
	OutputDir  string            `msgpack:"output_dir"`
	Current    map[string]string `msgpack:"current"`
	// QuietErrors stops the runtime printing a failure's message and call
	// stack (catch decorator with print_exception = FALSE).
	QuietErrors bool `msgpack:"quiet_errors"`
}

// SpecInput is one parent task whose artifacts the task can read.
type SpecInput struct {
	Step      string                  `msgpack:"step"`
	TaskID    string                  `msgpack:"task_id"`
	Artifacts map[string]SpecArtifact `msgpack:"artifacts"`
}

// SpecArtifact locates one artifact blob.
type SpecArtifact struct {
	SHA  string `msgpack:"sha"`
	Path string `msgpack:"path"`
}

// SpecSplit is the foreach element a split task receives as self$input.
type SpecSplit struct {
	Path  string `msgpack:"path"`
	Index int    `msgpack:"index"`
}

// TaskResult is what the runtime reports in <output_dir>/_result.mpk.
type TaskResult struct {
	Artifacts    []string
	Merged       map[string]int
	ForeachCount int
}

// Launch is one attempt of a task handed to an executor.
type Launch struct {
	Spec    *TaskSpec
	Rscript string
	Workdir string
	// Env is extra environment for the task (environment decorator).
	Env map[string]string
	// Decorators are the step's decorators merged with --with (the step's
	// own arguments win); remote executors read resources/batch from them.
	Decorators map[string]graph.Decorator
	// Timeout is the timeout decorator's limit (0: none). The scheduler
	// enforces it by cancelling the attempt; a remote executor can also hand
	// it to its backend, in case the engine is gone by then.
	Timeout    time.Duration
	StdoutPath string
	StderrPath string
	// Started is called once the process exists.
	Started func(pid int)
	// StoreURL is the s3:// root of the datastore of record when it is in
	// S3 (else ""). A remote executor storing blobs under the same root
	// leaves outputs there and lists them in RemoteOutputsFile (name -> sha)
	// in the output folder, instead of downloading them.
	StoreURL string
	// Submitted is called by a remote executor once its job exists, with
	// the job's id and the s3:// folder its logs are uploaded to while it runs.
	Submitted func(jobID, logsURL string)
	// Line is called for every line the task prints.
	Line func(stderr bool, text string)
	// Package is the run's code package, sorted by path: a remote executor
	// puts each file at its path in the task's working folder (local tasks
	// run in Workdir, where the files are already).
	Package []CodeFile
}

// Preflighter is an executor that can refuse a step before the run starts
// (a Batch queue that can never run the step's job), so that nothing is
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

// RemoteOutputsFile lists, in an attempt's output folder, the outputs a
// remote executor left in the datastore (see Launch.StoreURL).
const RemoteOutputsFile = "_remote_outputs.json"

// Executor runs task attempts: locally as Rscript processes, or on AWS Batch.
type Executor interface {
	// Run runs one attempt to completion. Cancelling ctx kills the task.
	// It returns the exit code; err is set when the task could not be run.
	Run(ctx context.Context, l *Launch) (exitCode int, err error)
}

// ReadResult decodes a runtime's _result.mpk. It accepts the shapes R's plain
// codec produces (a length-1 vector is a scalar, an empty list an array).
func ReadResult(path string) (*TaskResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read task result: %w", err)
	}
	var raw map[string]any
	if err := msgpack.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("decode task result %s: %w", path, err)
	}
	res := &TaskResult{Merged: map[string]int{}, ForeachCount: -1}
	switch v := raw["artifacts"].(type) {
	case string:
		res.Artifacts = []string{v}
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("task result: artifact name %v is not a string", x)
			}
			res.Artifacts = append(res.Artifacts, s)
		}
	}
	if m, ok := raw["merged"].(map[string]any); ok {
		for k, x := range m {
			n, ok := toInt(x)
			if !ok {
				return nil, fmt.Errorf("task result: merged %s is not an index", k)
			}
			res.Merged[k] = n
		}
	}
	if n, ok := toInt(raw["foreach_count"]); ok {
		res.ForeachCount = n
	}
	return res, nil
}

func toInt(x any) (int, bool) {
	switch v := x.(type) {
	case int8:
		return int(v), true
	case int16:
		return int(v), true
	case int32:
		return int(v), true
	case int64:
		return int(v), true
	case uint8:
		return int(v), true
	case uint16:
		return int(v), true
	case uint32:
		return int(v), true
	case uint64:
		return int(v), true
	case float64:
		return int(v), v == float64(int(v))
	case float32:
		return int(v), v == float32(int(v))
	}
	return 0, false
}
