package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// S3 is the datastore of record in an S3 bucket (METAFLOW_DEFAULT_DATASTORE=s3),
// in the layout of layout.go under the root's prefix; the Batch executor and
// its task runner put blobs through it too, so a blob made on Batch is
// uploaded once.
//
// Records are read from and written to S3 only, so every machine sees the
// same runs. Files that tasks and R read by path (code, blobs, logs being
// written, staged outputs) live in a local cache, a Local; blobs come down
// into it on demand (LocalFile). An S3 without a cache (cacheDir "") serves
// blobs as streams only: LocalFile, Staging and CodeFile fail, and LogFile is
// empty.
//
// Every request runs under the caller's context: a record within
// metadataTimeout, a blob within transferTimeout of its size.
type S3 struct {
	c              *s3io.Client
	bucket, prefix string
	cache          *Local // nil: no local copies
}

// NewS3 returns the datastore at root (s3://bucket/prefix), caching files in
// the folder cacheDir ("" for none).
func NewS3(c *s3io.Client, root, cacheDir string) (*S3, error) {
	bucket, prefix, err := s3io.ParseURL(root)
	if err != nil {
		return nil, fmt.Errorf("S3 datastore root: %w", err)
	}
	s := &S3{c: c, bucket: bucket, prefix: prefix}
	if cacheDir != "" {
		s.cache = NewLocal(cacheDir)
	}
	return s, nil
}

// Location is the datastore's s3:// root.
func (s *S3) Location() string { return "s3://" + path.Join(s.bucket, s.prefix) }

// metadataTimeout bounds one small S3 request (with the SDK's retries), so a
// stalled connection cannot hold the scheduler.
const metadataTimeout = 2 * time.Minute

// logSaveTimeout bounds one upload of a task's logs.
const logSaveTimeout = 10 * time.Minute

// transferTimeout bounds a blob's transfer: ten minutes, plus a second for
// each 256 KiB (a stalled transfer ends; a slow one gets its time). A size
// not known (-1) gets a day.
func transferTimeout(size int64) time.Duration {
	if size < 0 {
		return 24 * time.Hour
	}
	return 10*time.Minute + time.Duration(size/(256<<10))*time.Second
}

func (s *S3) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, metadataTimeout)
}

// key is a layout path's key in the bucket.
func (s *S3) key(rel string) string { return Key(s.prefix, rel) }

// errNoCache is the error of what needs local files, on an S3 without a cache.
func (s *S3) errNoCache(what string) error {
	return errs.Precondition("%s: the S3 datastore %s has no local cache here", what, s.Location())
}

func (s *S3) putJSON(ctx context.Context, rel string, v any) error {
	key := s.key(rel)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.c.PutBytes(ctx, s.bucket, key, append(b, '\n'))
}

// getJSON reads rel into v; a missing object is an s3io.ErrNotFound
// (errs.ErrNotFound).
func (s *S3) getJSON(ctx context.Context, rel string, v any) error {
	key := s.key(rel)
	ctx, cancel := s.op(ctx)
	defer cancel()
	b, err := s.c.GetBytes(ctx, s.bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// numericDirs lists the ids one level below rel, ascending.
func (s *S3) numericDirs(ctx context.Context, rel string) ([]int, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	names, err := s.c.ListDirs(ctx, s.bucket, s.key(rel))
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, n := range names {
		if id, ok := runIDOf(n); ok {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids, nil
}

// NewRun claims the next integer run id with a conditional PUT of its
// record, so concurrent runs of one flow from any machine never collide.
func (s *S3) NewRun(ctx context.Context, run *Run) error {
	ids, err := s.ListRuns(ctx, run.Flow)
	if errors.Is(err, s3io.ErrNoBucket) {
		return errs.Precondition("the S3 datastore %s has no bucket %s: create it, or set METAFLOW_DATASTORE_SYSROOT_S3 to one that exists", s.Location(), s.bucket)
	}
	if err != nil {
		return fmt.Errorf("allocate a run id in %s: %w", s.Location(), err)
	}
	next := 1
	if len(ids) > 0 {
		n, _ := strconv.Atoi(ids[0])
		next = n + 1
	}
	for tries := 0; tries < 1000; tries, next = tries+1, next+1 {
		run.RunID = strconv.Itoa(next)
		b, err := json.MarshalIndent(run, "", "  ")
		if err != nil {
			return fmt.Errorf("encode run: %w", err)
		}
		octx, cancel := s.op(ctx)
		ok, err := s.c.PutIfAbsent(octx, s.bucket, s.key(RunRecord(run.Flow, run.RunID)), append(b, '\n'))
		cancel()
		if err != nil {
			run.RunID = ""
			return fmt.Errorf("allocate a run id in %s: %w", s.Location(), err)
		}
		if ok {
			return nil
		}
	}
	run.RunID = ""
	return fmt.Errorf("could not allocate a run id for flow %s in %s", run.Flow, s.Location())
}

func (s *S3) PutRun(ctx context.Context, run *Run) error {
	return s.putJSON(ctx, RunRecord(run.Flow, run.RunID), run)
}

func (s *S3) GetRun(ctx context.Context, flow, runID string) (*Run, error) {
	var r Run
	if err := s.getJSON(ctx, RunRecord(flow, runID), &r); err != nil {
		if errors.Is(err, s3io.ErrNotFound) {
			return nil, errs.NotFound("run %s/%s not found in %s: %w", flow, runID, s.Location(), fs.ErrNotExist)
		}
		return nil, err
	}
	return &r, nil
}

// ListRuns returns the flow's run ids, newest first. Batch's transport
// folders of runs kept in a local datastore may be listed too; GetRun finds
// no record in them.
func (s *S3) ListRuns(ctx context.Context, flow string) ([]string, error) {
	ids, err := s.numericDirs(ctx, FlowDir(flow))
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", flow, err)
	}
	out := make([]string, len(ids))
	for i, n := range ids {
		out[len(ids)-1-i] = strconv.Itoa(n)
	}
	return out, nil
}

// listFlowsParallel bounds the flows ListFlows checks at once.
const listFlowsParallel = 8

// ListFlows returns the flows under the root that have a run, sorted: one
// LIST of the root, then per flow one LIST of its runs and a HEAD of a run
// record, newest run first until one has it (numeric folders without one
// are Batch's transport folders of runs kept in a local datastore).
func (s *S3) ListFlows(ctx context.Context) ([]string, error) {
	octx, cancel := s.op(ctx)
	names, err := s.c.ListDirs(octx, s.bucket, s.prefix)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list flows in %s: %w", s.Location(), err)
	}
	var cands []string
	for _, n := range names {
		if graph.ValidName(n) {
			cands = append(cands, n)
		}
	}
	has := make([]bool, len(cands))
	errs := make([]error, len(cands))
	sem := make(chan struct{}, listFlowsParallel)
	var wg sync.WaitGroup
	for i, flow := range cands {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			has[i], errs[i] = s.hasRun(ctx, flow)
		}()
	}
	wg.Wait()
	out := []string{}
	for i, flow := range cands {
		if errs[i] != nil {
			return nil, fmt.Errorf("list flows in %s: %w", s.Location(), errs[i])
		}
		if has[i] {
			out = append(out, flow)
		}
	}
	sort.Strings(out)
	return out, nil
}

// hasRun reports whether some run folder of flow has its record.
func (s *S3) hasRun(ctx context.Context, flow string) (bool, error) {
	ids, err := s.ListRuns(ctx, flow)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		octx, cancel := s.op(ctx)
		ok, err := s.c.Exists(octx, s.bucket, s.key(RunRecord(flow, id)))
		cancel()
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func (s *S3) ListSteps(ctx context.Context, flow, runID string) ([]string, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	names, err := s.c.ListDirs(octx, s.bucket, s.key(RunDir(flow, runID)))
	if err != nil {
		return nil, fmt.Errorf("list steps of %s/%s: %w", flow, runID, err)
	}
	var out []string
	for _, n := range names {
		if isStep(n) {
			out = append(out, n)
		}
	}
	return out, nil // S3 lists in byte order
}

func (s *S3) PutTask(ctx context.Context, t *Task) error {
	return s.putJSON(ctx, TaskRecord(t.Flow, t.RunID, t.Step, t.TaskID), t)
}

func (s *S3) GetTask(ctx context.Context, flow, runID, step, taskID string) (*Task, error) {
	var t Task
	if err := s.getJSON(ctx, TaskRecord(flow, runID, step, taskID), &t); err != nil {
		if errors.Is(err, s3io.ErrNotFound) {
			return nil, errs.NotFound("task %s/%s/%s/%s not found: %w", flow, runID, step, taskID, fs.ErrNotExist)
		}
		return nil, err
	}
	return &t, nil
}

// ListTasks lists the step's task records (one listing of the step's
// objects, a page per thousand): a task folder holding only logs or a
// Batch job's files is not a task yet.
func (s *S3) ListTasks(ctx context.Context, flow, runID, step string) ([]string, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	keys, err := s.c.ListKeys(octx, s.bucket, s.key(StepDir(flow, runID, step)))
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s/%s/%s: %w", flow, runID, step, err)
	}
	var ids []int
	for _, k := range keys {
		if id, ok := taskOfRecord(k); ok {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, n := range ids {
		out[i] = strconv.Itoa(n)
	}
	return out, nil
}

// GetArtifacts reads the index from the task's record, or from the
// _artifacts.json of a task recorded before records carried it.
func (s *S3) GetArtifacts(ctx context.Context, flow, runID, step, taskID string) (map[string]Artifact, error) {
	return getArtifacts(ctx, s, flow, runID, step, taskID,
		func(arts *map[string]Artifact) error {
			return s.getJSON(ctx, ArtifactIndex(flow, runID, step, taskID), arts)
		}, s3io.ErrNotFound)
}

// PutPackage writes the run's code package manifest (one PUT: atomic).
func (s *S3) PutPackage(ctx context.Context, flow, runID string, files map[string]Artifact) error {
	if err := s.putJSON(ctx, PackageManifest(flow, runID), files); err != nil {
		return fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return nil
}

// GetPackage reads the run's code package manifest (nil if it has none).
func (s *S3) GetPackage(ctx context.Context, flow, runID string) (map[string]Artifact, error) {
	files := map[string]Artifact{}
	err := s.getJSON(ctx, PackageManifest(flow, runID), &files)
	if errors.Is(err, s3io.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return files, nil
}

// PutCode keeps the code bundle in the cache (tasks read it by path) and in S3.
func (s *S3) PutCode(ctx context.Context, flow, runID string, code []byte) error {
	if s.cache != nil {
		if err := s.cache.PutCode(ctx, flow, runID, code); err != nil {
			return err
		}
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	if err := s.c.PutBytes(octx, s.bucket, s.key(CodeBundle(flow, runID)), code); err != nil {
		return fmt.Errorf("code of run %s/%s: %w", flow, runID, err)
	}
	return nil
}

// CodeFile is the code bundle in the cache, downloaded first if this
// machine has no copy.
func (s *S3) CodeFile(ctx context.Context, flow, runID string) (string, error) {
	if s.cache == nil {
		return "", s.errNoCache(fmt.Sprintf("code of run %s/%s", flow, runID))
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("code of run %s/%s: %w", flow, runID, err)
	}
	p := s.cache.path(CodeBundle(flow, runID))
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	tctx, cancel := context.WithTimeout(ctx, transferTimeout(0))
	defer cancel()
	if err := s.c.GetFile(tctx, s.bucket, s.key(CodeBundle(flow, runID)), p); err != nil {
		if errors.Is(err, s3io.ErrNotFound) {
			return "", errs.NotFound("code of run %s/%s not found in %s: %w", flow, runID, s.Location(), fs.ErrNotExist)
		}
		return "", fmt.Errorf("code of run %s/%s: %w", flow, runID, err)
	}
	return p, nil
}
