package datastore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// Local is a datastore in a folder (by default .metaflow in the working dir).
type Local struct {
	Root string
}

// NewLocal returns a local datastore rooted at root (created on first write).
func NewLocal(root string) *Local { return &Local{Root: root} }

// Location is the datastore's folder.
func (l *Local) Location() string { return l.Root }

func (l *Local) flowDir(flow string) string { return filepath.Join(l.Root, flow) }
func (l *Local) runDir(flow, runID string) string {
	return filepath.Join(l.Root, flow, runID)
}
func (l *Local) taskDir(flow, runID, step, taskID string) string {
	return filepath.Join(l.Root, flow, runID, step, taskID)
}

// NewRun allocates the next integer run id with an exclusive mkdir, so
// concurrent runs of one flow (even from different engines) never collide.
func (l *Local) NewRun(run *Run) error {
	if err := os.MkdirAll(l.flowDir(run.Flow), 0o755); err != nil {
		return fmt.Errorf("create datastore folder: %w", err)
	}
	ids, err := l.ListRuns(run.Flow)
	if err != nil {
		return err
	}
	next := 1
	if len(ids) > 0 {
		n, _ := strconv.Atoi(ids[0])
		next = n + 1
	}
	for tries := 0; tries < 1000; tries++ {
		id := strconv.Itoa(next)
		err := os.Mkdir(l.runDir(run.Flow, id), 0o755)
		if err == nil {
			run.RunID = id
			return l.PutRun(run)
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create run folder: %w", err)
		}
		next++
	}
	return fmt.Errorf("could not allocate a run id for flow %s", run.Flow)
}

func (l *Local) PutRun(run *Run) error {
	return writeJSON(filepath.Join(l.runDir(run.Flow, run.RunID), "_run.json"), run)
}

func (l *Local) GetRun(flow, runID string) (*Run, error) {
	var r Run
	if err := readJSON(filepath.Join(l.runDir(flow, runID), "_run.json"), &r); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("run %s/%s not found in %s: %w", flow, runID, l.Root, fs.ErrNotExist)
		}
		return nil, err
	}
	return &r, nil
}

func (l *Local) ListRuns(flow string) ([]string, error) {
	ents, err := os.ReadDir(l.flowDir(flow))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", flow, err)
	}
	var ids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			ids = append(ids, n)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ids)))
	out := make([]string, len(ids))
	for i, n := range ids {
		out[i] = strconv.Itoa(n)
	}
	return out, nil
}

// ListFlows returns the flows of the folder that have a run (a numeric
// folder with a _run.json), sorted. Other folders (_s3cache, and any name
// a flow cannot have) are ignored.
func (l *Local) ListFlows() ([]string, error) {
	ents, err := os.ReadDir(l.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list flows in %s: %w", l.Root, err)
	}
	out := []string{}
	for _, e := range ents {
		if !e.IsDir() || !graph.ValidName(e.Name()) {
			continue
		}
		ids, err := l.ListRuns(e.Name())
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(l.runDir(e.Name(), id), "_run.json")); err == nil {
				out = append(out, e.Name())
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (l *Local) PutCode(flow, runID string, code []byte) error {
	return writeAtomic(l.CodePath(flow, runID), func(w io.Writer) error {
		_, err := w.Write(code)
		return err
	})
}

func (l *Local) CodePath(flow, runID string) string {
	return filepath.Join(l.runDir(flow, runID), "_code.rds")
}

// PutPackage writes the run's _package.json atomically.
func (l *Local) PutPackage(flow, runID string, files map[string]Artifact) error {
	return writeJSON(filepath.Join(l.runDir(flow, runID), packageFile), files)
}

// GetPackage reads the run's _package.json (nil if the run has none).
func (l *Local) GetPackage(flow, runID string) (map[string]Artifact, error) {
	files := map[string]Artifact{}
	err := readJSON(filepath.Join(l.runDir(flow, runID), packageFile), &files)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return files, nil
}

// packageFile is a run's code package manifest: {"path": {"sha":..., "size":...}}.
const packageFile = "_package.json"

func (l *Local) PutTask(t *Task) error {
	return writeJSON(filepath.Join(l.taskDir(t.Flow, t.RunID, t.Step, t.TaskID), "_task.json"), t)
}

func (l *Local) GetTask(flow, runID, step, taskID string) (*Task, error) {
	var t Task
	if err := readJSON(filepath.Join(l.taskDir(flow, runID, step, taskID), "_task.json"), &t); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("task %s/%s/%s/%s not found: %w", flow, runID, step, taskID, fs.ErrNotExist)
		}
		return nil, err
	}
	return &t, nil
}

func (l *Local) ListTasks(flow, runID, step string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(l.runDir(flow, runID), step))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var ids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			// Only tasks whose metadata exists are visible.
			if _, err := os.Stat(filepath.Join(l.taskDir(flow, runID, step, e.Name()), "_task.json")); err == nil {
				ids = append(ids, n)
			}
		}
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, n := range ids {
		out[i] = strconv.Itoa(n)
	}
	return out, nil
}

func (l *Local) ListSteps(flow, runID string) ([]string, error) {
	ents, err := os.ReadDir(l.runDir(flow, runID))
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name()[0] != '_' {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (l *Local) PutArtifacts(flow, runID, step, taskID string, arts map[string]Artifact) error {
	return writeJSON(filepath.Join(l.taskDir(flow, runID, step, taskID), "_artifacts.json"), arts)
}

func (l *Local) GetArtifacts(flow, runID, step, taskID string) (map[string]Artifact, error) {
	arts := map[string]Artifact{}
	err := readJSON(filepath.Join(l.taskDir(flow, runID, step, taskID), "_artifacts.json"), &arts)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Artifact{}, nil
	}
	return arts, err
}

// CommitBlob hashes a staged file and renames it into data/<aa>/<sha>. A blob
// that already exists is kept (same content) and the staged copy removed.
func (l *Local) CommitBlob(flow, staged string) (Artifact, error) {
	f, err := os.Open(staged)
	if err != nil {
		return Artifact{}, fmt.Errorf("open staged artifact: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err == nil {
		err = f.Sync() // durable before it is renamed into the store
	}
	f.Close()
	if err != nil {
		return Artifact{}, fmt.Errorf("hash staged artifact: %w", err)
	}
	a := Artifact{SHA: hex.EncodeToString(h.Sum(nil)), Size: n}
	dst := l.BlobPath(flow, a.SHA)
	if _, err := os.Stat(dst); err == nil {
		os.Remove(staged)
		return a, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Artifact{}, fmt.Errorf("create blob folder: %w", err)
	}
	if err := os.Rename(staged, dst); err != nil {
		// Staging on another filesystem: copy to a temp file beside dst, then rename.
		if err := copyAtomic(staged, dst); err != nil {
			return Artifact{}, err
		}
		os.Remove(staged)
	}
	return a, nil
}

func (l *Local) BlobPath(flow, sha string) string {
	return filepath.Join(l.flowDir(flow), "data", sha[:2], sha)
}

// AdoptBlob returns the artifact of a blob already in the folder.
func (l *Local) AdoptBlob(flow, sha string) (Artifact, error) {
	if !validSHA(sha) {
		return Artifact{}, fmt.Errorf("%q is not a sha256", sha)
	}
	fi, err := os.Stat(l.BlobPath(flow, sha))
	if err != nil {
		return Artifact{}, fmt.Errorf("blob %s of %s: %w", sha, flow, err)
	}
	return Artifact{SHA: sha, Size: fi.Size()}, nil
}

func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// FetchBlob returns the blob's path: a local store holds every blob.
func (l *Local) FetchBlob(flow, sha string) (string, error) { return l.BlobPath(flow, sha), nil }

func (l *Local) StagingDir(flow string) string {
	return filepath.Join(l.flowDir(flow), "_staging")
}

func (l *Local) LogPath(flow, runID, step, taskID string, attempt int, stream string) string {
	return filepath.Join(l.taskDir(flow, runID, step, taskID), logName(attempt, stream))
}

// logName is an attempt's log file: <attempt>.stdout or <attempt>.stderr.
func logName(attempt int, stream string) string { return fmt.Sprintf("%d.%s", attempt, stream) }

// SaveLogs has nothing to do: the log files are written in place.
func (l *Local) SaveLogs(flow, runID, step, taskID string, attempt int) error { return nil }

// ReadLog reads a log file; a log never written reads as empty.
func (l *Local) ReadLog(flow, runID, step, taskID string, attempt int, stream string) ([]byte, error) {
	b, err := os.ReadFile(l.LogPath(flow, runID, step, taskID, attempt, stream))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open staged artifact: %w", err)
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

func writeJSON(path string, v any) error {
	return writeAtomic(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// writeAtomic writes through a temp file in the target's folder and renames
// it into place, so readers see either the old file or the whole new one.
func writeAtomic(path string, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Durable before visible: after a crash a completed task never points at
	// an empty file.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}
