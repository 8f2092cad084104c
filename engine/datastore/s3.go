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
	"strings"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// S3 is the datastore of record in an S3 bucket (METAFLOW_DEFAULT_DATASTORE=s3),
// under the same layout as Local: <prefix>/<Flow>/<run>/_run.json,
// .../<step>/<task>/_task.json, _artifacts.json, <attempt>.stdout|stderr,
// and blobs at <prefix>/<Flow>/data/<aa>/<sha> (where the Batch executor puts
// them too, so a blob made on Batch is uploaded once).
//
// Metadata is read from and written to S3 only, so every machine sees the
// same runs. Files that tasks and R read by path (code, blobs, logs being
// written, staged outputs) live in a local cache, a Local; blobs come down
// into it on demand, by FetchBlob.
type S3 struct {
	c              *s3io.Client
	bucket, prefix string
	cache          *Local
	ctx            context.Context
}

// NewS3 returns the datastore at root (s3://bucket/prefix), caching files in
// the folder cacheDir.
func NewS3(c *s3io.Client, root, cacheDir string) (*S3, error) {
	bucket, prefix, err := s3io.ParseURL(root)
	if err != nil {
		return nil, fmt.Errorf("S3 datastore root: %w", err)
	}
	return &S3{c: c, bucket: bucket, prefix: prefix, cache: NewLocal(cacheDir), ctx: context.Background()}, nil
}

// Location is the datastore's s3:// root.
func (s *S3) Location() string { return "s3://" + path.Join(s.bucket, s.prefix) }

// metadataTimeout bounds one small S3 request (with the SDK's retries), so a
// stalled connection cannot hold the scheduler; file transfers are unbounded.
const metadataTimeout = 2 * time.Minute

// logSaveTimeout bounds one upload of a task's logs.
const logSaveTimeout = 10 * time.Minute

func (s *S3) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, metadataTimeout)
}

func (s *S3) key(parts ...string) string { return path.Join(append([]string{s.prefix}, parts...)...) }

func (s *S3) taskKey(flow, runID, step, taskID, name string) string {
	return s.key(flow, runID, step, taskID, name)
}

func (s *S3) blobKey(flow, sha string) string { return s.key(flow, "data", sha[:2], sha) }

func (s *S3) putJSON(key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	ctx, cancel := s.op()
	defer cancel()
	return s.c.PutBytes(ctx, s.bucket, key, append(b, '\n'))
}

// getJSON reads key into v; a missing object is an fs.ErrNotExist.
func (s *S3) getJSON(key string, v any) error {
	ctx, cancel := s.op()
	defer cancel()
	b, err := s.c.GetBytes(ctx, s.bucket, key)
	if errors.Is(err, s3io.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// numericDirs lists the integer names below prefix, ascending.
func (s *S3) numericDirs(prefix string) ([]int, error) {
	ctx, cancel := s.op()
	defer cancel()
	names, err := s.c.ListDirs(ctx, s.bucket, prefix)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, n := range names {
		if id, err := strconv.Atoi(n); err == nil && strconv.Itoa(id) == n {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids, nil
}

// NewRun claims the next integer run id with a conditional PUT of its
// _run.json, so concurrent runs of one flow from any machine never collide.
func (s *S3) NewRun(run *Run) error {
	ids, err := s.ListRuns(run.Flow)
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
		ctx, cancel := s.op()
		ok, err := s.c.PutIfAbsent(ctx, s.bucket, s.key(run.Flow, run.RunID, "_run.json"), append(b, '\n'))
		cancel()
		if err != nil {
			return fmt.Errorf("allocate a run id in %s: %w", s.Location(), err)
		}
		if ok {
			return nil
		}
	}
	run.RunID = ""
	return fmt.Errorf("could not allocate a run id for flow %s in %s", run.Flow, s.Location())
}

func (s *S3) PutRun(run *Run) error { return s.putJSON(s.key(run.Flow, run.RunID, "_run.json"), run) }

func (s *S3) GetRun(flow, runID string) (*Run, error) {
	var r Run
	if err := s.getJSON(s.key(flow, runID, "_run.json"), &r); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("run %s/%s not found in %s: %w", flow, runID, s.Location(), fs.ErrNotExist)
		}
		return nil, err
	}
	return &r, nil
}

// ListRuns returns the flow's run ids, newest first. Batch's transport
// folders of runs kept in a local datastore may be listed too; GetRun finds
// no _run.json in them.
func (s *S3) ListRuns(flow string) ([]string, error) {
	ids, err := s.numericDirs(s.key(flow))
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
// LIST of the root, then per flow one LIST of its runs and a HEAD of
// _run.json, newest run first until one has it (numeric folders without
// one are Batch's transport folders of runs kept in a local datastore).
func (s *S3) ListFlows() ([]string, error) {
	ctx, cancel := s.op()
	names, err := s.c.ListDirs(ctx, s.bucket, s.prefix)
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
			has[i], errs[i] = s.hasRun(flow)
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

// hasRun reports whether some run folder of flow has its _run.json.
func (s *S3) hasRun(flow string) (bool, error) {
	ids, err := s.ListRuns(flow)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		ctx, cancel := s.op()
		ok, err := s.c.Exists(ctx, s.bucket, s.key(flow, id, "_run.json"))
		cancel()
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// PutCode keeps the code bundle in the cache (tasks read it by path) and in S3.
func (s *S3) PutCode(flow, runID string, code []byte) error {
	if err := s.cache.PutCode(flow, runID, code); err != nil {
		return err
	}
	ctx, cancel := s.op()
	defer cancel()
	return s.c.PutBytes(ctx, s.bucket, s.key(flow, runID, "_code.rds"), code)
}

func (s *S3) CodePath(flow, runID string) string { return s.cache.CodePath(flow, runID) }

// PutPackage writes the run's _package.json (one PUT: atomic).
func (s *S3) PutPackage(flow, runID string, files map[string]Artifact) error {
	if err := s.putJSON(s.key(flow, runID, packageFile), files); err != nil {
		return fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return nil
}

// GetPackage reads the run's _package.json (nil if the run has none).
func (s *S3) GetPackage(flow, runID string) (map[string]Artifact, error) {
	files := map[string]Artifact{}
	err := s.getJSON(s.key(flow, runID, packageFile), &files)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code package of run %s/%s: %w", flow, runID, err)
	}
	return files, nil
}

func (s *S3) PutTask(t *Task) error {
	return s.putJSON(s.taskKey(t.Flow, t.RunID, t.Step, t.TaskID, "_task.json"), t)
}

func (s *S3) GetTask(flow, runID, step, taskID string) (*Task, error) {
	var t Task
	if err := s.getJSON(s.taskKey(flow, runID, step, taskID, "_task.json"), &t); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("task %s/%s/%s/%s not found: %w", flow, runID, step, taskID, fs.ErrNotExist)
		}
		return nil, err
	}
	return &t, nil
}

func (s *S3) ListTasks(flow, runID, step string) ([]string, error) {
	ids, err := s.numericDirs(s.key(flow, runID, step))
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make([]string, len(ids))
	for i, n := range ids {
		out[i] = strconv.Itoa(n)
	}
	return out, nil
}

func (s *S3) ListSteps(flow, runID string) ([]string, error) {
	ctx, cancel := s.op()
	defer cancel()
	names, err := s.c.ListDirs(ctx, s.bucket, s.key(flow, runID))
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, "_") {
			out = append(out, n)
		}
	}
	return out, nil
}

func (s *S3) PutArtifacts(flow, runID, step, taskID string, arts map[string]Artifact) error {
	return s.putJSON(s.taskKey(flow, runID, step, taskID, "_artifacts.json"), arts)
}

func (s *S3) GetArtifacts(flow, runID, step, taskID string) (map[string]Artifact, error) {
	arts := map[string]Artifact{}
	err := s.getJSON(s.taskKey(flow, runID, step, taskID, "_artifacts.json"), &arts)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Artifact{}, nil
	}
	return arts, err
}

// CommitBlob moves the staged file into the cache and uploads it unless S3
// has it already (same name, same content). Nothing points at the blob
// until PutArtifacts, written after every blob of the task is up.
func (s *S3) CommitBlob(flow, staged string) (Artifact, error) {
	a, err := s.cache.CommitBlob(flow, staged)
	if err != nil {
		return a, err
	}
	key := s.blobKey(flow, a.SHA)
	if err := s.c.PutFileIfMissing(s.ctx, s.bucket, key, s.cache.BlobPath(flow, a.SHA)); err != nil {
		return Artifact{}, fmt.Errorf("upload artifact %s: %w", a.SHA, err)
	}
	return a, nil
}

// AdoptBlob returns the artifact of a blob already in S3 (a HEAD).
func (s *S3) AdoptBlob(flow, sha string) (Artifact, error) {
	if !validSHA(sha) {
		return Artifact{}, fmt.Errorf("%q is not a sha256", sha)
	}
	ctx, cancel := s.op()
	defer cancel()
	size, err := s.c.Size(ctx, s.bucket, s.blobKey(flow, sha))
	if err != nil {
		return Artifact{}, fmt.Errorf("blob %s of %s: %w", sha, flow, err)
	}
	return Artifact{SHA: sha, Size: size}, nil
}

func (s *S3) BlobPath(flow, sha string) string { return s.cache.BlobPath(flow, sha) }

// FetchBlob downloads the blob into the cache unless it is there (whole:
// downloads land in a temp file renamed into place).
func (s *S3) FetchBlob(flow, sha string) (string, error) {
	p := s.cache.BlobPath(flow, sha)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := s.c.GetFile(s.ctx, s.bucket, s.blobKey(flow, sha), p); err != nil {
		if errors.Is(err, s3io.ErrNotFound) {
			return "", fmt.Errorf("artifact blob %s of %s: %w: %w", sha, flow, err, fs.ErrNotExist)
		}
		return "", fmt.Errorf("download artifact %s: %w", sha, err)
	}
	return p, nil
}

func (s *S3) StagingDir(flow string) string { return s.cache.StagingDir(flow) }

// LogPath is the cache file the attempt's output is written to as it runs.
func (s *S3) LogPath(flow, runID, step, taskID string, attempt int, stream string) string {
	return s.cache.LogPath(flow, runID, step, taskID, attempt, stream)
}

// SaveLogs uploads the attempt's log files from the cache (within
// logSaveTimeout, so a stalled connection does not hold the scheduler).
func (s *S3) SaveLogs(flow, runID, step, taskID string, attempt int) error {
	ctx, cancel := context.WithTimeout(s.ctx, logSaveTimeout)
	defer cancel()
	for _, stream := range []string{"stdout", "stderr"} {
		p := s.cache.LogPath(flow, runID, step, taskID, attempt, stream)
		if _, err := os.Stat(p); err != nil {
			continue // nothing was written
		}
		if err := s.c.PutFile(ctx, s.bucket, s.taskKey(flow, runID, step, taskID, logName(attempt, stream)), p); err != nil {
			return fmt.Errorf("upload %s log: %w", stream, err)
		}
	}
	return nil
}

// ReadLog reads this machine's copy when it has one (it ran the attempt:
// the copy is live, or the one that was uploaded), else the uploaded log.
func (s *S3) ReadLog(flow, runID, step, taskID string, attempt int, stream string) ([]byte, error) {
	if b, err := os.ReadFile(s.cache.LogPath(flow, runID, step, taskID, attempt, stream)); err == nil {
		return b, nil
	}
	ctx, cancel := s.op()
	defer cancel()
	b, err := s.c.GetBytes(ctx, s.bucket, s.taskKey(flow, runID, step, taskID, logName(attempt, stream)))
	if errors.Is(err, s3io.ErrNotFound) {
		return nil, nil
	}
	return b, err
}
