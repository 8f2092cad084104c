package scheduler

import (
	"fmt"
	"os"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
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

// SpecArtifact locates one artifact blob: its file on the task's machine
// (empty in the spec a Remote executor gets: it finds the blob by SHA) and
// the stamp it was verified under (set with Path).
type SpecArtifact struct {
	SHA   string     `msgpack:"sha"`
	Path  string     `msgpack:"path"`
	Stamp *SpecStamp `msgpack:"stamp,omitempty"`
}

// SpecStamp is the stat a file had when its content was verified
// (datastore.Stamp, in the units of R's file.info(): bytes, seconds). The
// runtime compares the file's stat with it before and after it reads the
// file, and fails naming the artifact when they differ.
type SpecStamp struct {
	Size  int64   `msgpack:"size"`
	Mtime float64 `msgpack:"mtime"`
	Ctime float64 `msgpack:"ctime"`
}

// StampOf is the spec's form of a verified stamp (nil for none).
func StampOf(st datastore.Stamp) *SpecStamp {
	if st.IsZero() {
		return nil
	}
	return &SpecStamp{Size: st.Size, Mtime: st.MtimeSeconds(), Ctime: st.CtimeSeconds()}
}

// SpecFile is a verified file in the form a spec carries it.
func SpecFile(sha string, f datastore.BlobFile) SpecArtifact {
	return SpecArtifact{SHA: sha, Path: f.Path, Stamp: StampOf(f.Stamp)}
}

// SpecSplit is the foreach element a split task receives as self$input:
// element Index of the blob SHA, read from Path (as in SpecArtifact), or
// given in Doc.
type SpecSplit struct {
	SHA   string     `msgpack:"sha"`
	Path  string     `msgpack:"path"`
	Stamp *SpecStamp `msgpack:"stamp,omitempty"`
	Index int        `msgpack:"index"`
	// Whole: Path (or Doc) holds the element itself (x[[index + 1]]), not
	// the value.
	Whole bool `msgpack:"whole"`
	// Doc: the element's R-value document, when the engine holds it (a
	// small element of a local split): Path is then empty.
	Doc []byte `msgpack:"doc,omitempty"`
}

// The files in a task's output folder besides the artifacts it stages
// (<name>.mpk): the result, why it failed, and its spec (from the executor).
const (
	ResultFile = "_result.mpk"
	ErrorFile  = "_error.txt"
	// SpecFileName is where an executor that starts a fresh Rscript writes
	// the task's spec.
	SpecFileName = "_spec.mpk"
)

// TaskResult is what the runtime reports in <output_dir>/ResultFile.
type TaskResult struct {
	Artifacts    []string
	Merged       map[string]int
	ForeachCount int
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
