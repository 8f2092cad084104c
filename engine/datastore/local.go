package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Local is a datastore in a folder (by default .metaflow in the working
// dir), in the layout of layout.go. Its methods check their context before
// they start and between the chunks of what they copy.
type Local struct {
	Root string
}

// NewLocal returns a local datastore rooted at root (created on first write).
func NewLocal(root string) *Local { return &Local{Root: root} }

// Location is the datastore's folder.
func (l *Local) Location() string { return l.Root }

// path is a layout path in the folder.
func (l *Local) path(rel string) string { return LocalPath(l.Root, rel) }

// NewRun allocates the next integer run id with an exclusive mkdir, so
// concurrent runs of one flow (even from different engines) never collide.
func (l *Local) NewRun(ctx context.Context, run *Run) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("allocate a run id in %s: %w", l.Root, err)
	}
	if err := os.MkdirAll(l.path(FlowDir(run.Flow)), 0o755); err != nil {
		return fmt.Errorf("create datastore folder: %w", err)
	}
	ids, err := l.ListRuns(ctx, run.Flow)
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
		dir := l.path(RunDir(run.Flow, id))
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			run.RunID = id
			if err := l.PutRun(ctx, run); err != nil {
				os.Remove(dir) // no run folder without its record (a full disk)
				return err
			}
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create run folder: %w", err)
		}
		next++
	}
	return fmt.Errorf("could not allocate a run id for flow %s", run.Flow)
}

func (l *Local) PutRun(ctx context.Context, run *Run) error {
	return writeJSON(ctx, l.path(RunRecord(run.Flow, run.RunID)), run)
}

func (l *Local) GetRun(ctx context.Context, flow, runID string) (*Run, error) {
	var r Run
	if err := readJSON(ctx, l.path(RunRecord(flow, runID)), &r); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errs.NotFound("run %s/%s not found in %s: %w", flow, runID, l.Root, fs.ErrNotExist)
		}
		return nil, err
	}
	return &r, nil
}

// numericDirs lists the folders of dir whose names are ids, ascending
// (none if dir does not exist).
func numericDirs(ctx context.Context, dir string) ([]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range ents {
		if n, ok := runIDOf(e.Name()); ok && e.IsDir() {
			ids = append(ids, n)
		}
	}
	sort.Ints(ids)
	return ids, nil
}

func (l *Local) ListRuns(ctx context.Context, flow string) ([]string, error) {
	ids, err := numericDirs(ctx, l.path(FlowDir(flow)))
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", flow, err)
	}
	out := make([]string, len(ids))
	for i, n := range ids {
		out[len(ids)-1-i] = strconv.Itoa(n)
	}
	return out, nil
}

// ListFlows returns the flows of the folder that have a run (a numeric
// folder with its record), sorted. Other folders (the S3 cache, and any
// name a flow cannot have) are ignored.
func (l *Local) ListFlows(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list flows in %s: %w", l.Root, err)
	}
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
		ids, err := l.ListRuns(ctx, e.Name())
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if _, err := os.Stat(l.path(RunRecord(e.Name(), id))); err == nil {
				out = append(out, e.Name())
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (l *Local) ListSteps(ctx context.Context, flow, runID string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list steps of %s/%s: %w", flow, runID, err)
	}
	ents, err := os.ReadDir(l.path(RunDir(flow, runID)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list steps of %s/%s: %w", flow, runID, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && isStep(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil // ReadDir sorts by name
}

func (l *Local) PutTask(ctx context.Context, t *Task) error {
	return writeJSON(ctx, l.path(TaskRecord(t.Flow, t.RunID, t.Step, t.TaskID)), t)
}

func (l *Local) GetTask(ctx context.Context, flow, runID, step, taskID string) (*Task, error) {
	var t Task
	if err := readJSON(ctx, l.path(TaskRecord(flow, runID, step, taskID)), &t); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errs.NotFound("task %s/%s/%s/%s not found: %w", flow, runID, step, taskID, fs.ErrNotExist)
		}
		return nil, err
	}
	return &t, nil
}

func (l *Local) ListTasks(ctx context.Context, flow, runID, step string) ([]string, error) {
	ids, err := numericDirs(ctx, l.path(StepDir(flow, runID, step)))
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s/%s/%s: %w", flow, runID, step, err)
	}
	out := []string{}
	for _, n := range ids {
		id := strconv.Itoa(n)
		// Only tasks whose record exists are visible.
		if _, err := os.Stat(l.path(TaskRecord(flow, runID, step, id))); err == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// GetArtifacts reads the index from the task's record, or from the
// _artifacts.json of a task recorded before records carried it.
func (l *Local) GetArtifacts(ctx context.Context, flow, runID, step, taskID string) (map[string]Artifact, error) {
	return getArtifacts(ctx, l, flow, runID, step, taskID,
		func(arts *map[string]Artifact) error {
			return readJSON(ctx, l.path(ArtifactIndex(flow, runID, step, taskID)), arts)
		}, fs.ErrNotExist)
}

// PutPackage writes the run's code package manifest atomically.
func (l *Local) PutPackage(ctx context.Context, flow, runID string, files map[string]Artifact) error {
	return writeJSON(ctx, l.path(PackageManifest(flow, runID)), files)
}

// GetPackage reads the run's code package manifest (nil if it has none).
func (l *Local) GetPackage(ctx context.Context, flow, runID string) (map[string]Artifact, error) {
	files := map[string]Artifact{}
	err := readJSON(ctx, l.path(PackageManifest(flow, runID)), &files)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return files, nil
}

func (l *Local) PutCode(ctx context.Context, flow, runID string, code []byte) error {
	return writeAtomic(ctx, l.path(CodeBundle(flow, runID)), func(w io.Writer) error {
		_, err := w.Write(code)
		return err
	})
}

// CodeFile is the run's code bundle in the folder.
func (l *Local) CodeFile(ctx context.Context, flow, runID string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("code of run %s/%s: %w", flow, runID, err)
	}
	p := l.path(CodeBundle(flow, runID))
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errs.NotFound("code of run %s/%s not found in %s: %w", flow, runID, l.Root, fs.ErrNotExist)
		}
		return "", fmt.Errorf("code of run %s/%s: %w", flow, runID, err)
	}
	return p, nil
}

// writeJSON writes v as compact JSON (indenting a task record cost a
// tenth of the engine's allocations per task; jq reads it as well).
func writeJSON(ctx context.Context, path string, v any) error {
	return writeAtomic(ctx, path, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(v)
	})
}

func readJSON(ctx context.Context, path string, v any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
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
// A task's two records cost the engine this per task, so it spends no
// syscall it does not need (makeDir, createTemp, no os.Rename's Lstat).
func writeAtomic(ctx context.Context, path string, fill func(io.Writer) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := makeDir(dir); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := createTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	// The temp file is removed only when it was not renamed: removing a
	// name already gone costs two failing syscalls per record.
	fail := func(err error) error {
		os.Remove(tmp.Name())
		return err
	}
	if err := fill(tmp); err != nil {
		tmp.Close()
		return fail(fmt.Errorf("write %s: %w", path, err))
	}
	// Durable before visible: after a crash a completed task never points at
	// an empty file.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fail(fmt.Errorf("sync %s: %w", path, err))
	}
	if err := tmp.Close(); err != nil {
		return fail(fmt.Errorf("close %s: %w", path, err))
	}
	if err := ignoringEINTR(func() error { return syscall.Rename(tmp.Name(), path) }); err != nil {
		return fail(&os.LinkError{Op: "rename", Old: tmp.Name(), New: path, Err: err})
	}
	return nil
}

// ignoringEINTR retries a syscall the runtime's signals interrupted (as the
// os package does for the calls it wraps: on network file systems they can).
func ignoringEINTR(call func() error) error {
	for {
		if err := call(); err != syscall.EINTR {
			return err
		}
	}
}

// makeDir makes dir and its parents if need be: one mkdir where dir's
// parent exists or dir does (os.MkdirAll stats every level first).
func makeDir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	switch {
	case err == nil, errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	}
	// Some file systems refuse mkdir of a folder that exists with another
	// error (EACCES on NFS): a folder that is there will do.
	if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
		return nil
	}
	return err
}

// createTemp makes a new file named prefix+random in dir, open for writing
// (as os.CreateTemp; a file opened through os.NewFile skips the four fcntl
// and epoll calls os.OpenFile makes to see if a regular file can be polled).
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
			return err
		})
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if err != syscall.EEXIST || try == 100 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}
