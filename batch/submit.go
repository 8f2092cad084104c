package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// remoteSpec is what the task runner in the container reads: the task spec
// with S3 keys (in Bucket) instead of local paths.
type remoteSpec struct {
	Task       scheduler.TaskSpec `msgpack:"task"`
	Bucket     string             `msgpack:"bucket"`
	FlowPrefix string             `msgpack:"flow_prefix"`
	TaskPrefix string             `msgpack:"task_prefix"`
	// Package is the run's code package: relative path (in the task's
	// working folder) -> S3 key of the file's blob.
	Package map[string]string `msgpack:"package,omitempty"`
}

func dataKey(flowPrefix, sha string) string {
	return path.Join(flowPrefix, "data", sha[:2], sha)
}

// Run implements scheduler.Executor.
func (e *Executor) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	spec := l.Spec
	if strings.HasPrefix(l.Datastore, "s3://") && !e.isStore(l.Datastore) {
		// Inputs are not downloaded for Batch steps of an S3 datastore
		// (Executor is scheduler.Remote): they must be in this executor's
		// bucket.
		return -1, fmt.Errorf("the S3 datastore is %s but this engine sends Batch jobs through %s: restart the engine after changing METAFLOW_DATASTORE_SYSROOT_S3", l.Datastore, e.cfg.S3Root)
	}
	res, queue, image, err := e.shape(l)
	if err != nil {
		return -1, err
	}
	ctr, err := e.container(l)
	if err != nil {
		return -1, err
	}
	if err := e.checkQueue(ctx, queue, res); err != nil {
		return -1, err
	}
	engKey, err := e.engineKey(ctx)
	if err != nil {
		return -1, err
	}
	// Presigned URLs outlive the job's wait in RUNNABLE by a day.
	engURL, err := e.s3.PresignGet(ctx, e.bucket, engKey, 24*time.Hour)
	if err != nil {
		return -1, err
	}
	flowPrefix := e.key(spec.Flow)
	rs := remoteSpec{Task: *spec, Bucket: e.bucket, FlowPrefix: flowPrefix}
	rs.Task.OutputDir = ""
	codeSHA, err := e.fileSHA(spec.Code)
	if err != nil {
		return -1, fmt.Errorf("hash code bundle: %w", err)
	}
	rs.Task.Code = path.Join(flowPrefix, "code", codeSHA)
	if err := e.upload(ctx, rs.Task.Code, spec.Code); err != nil {
		return -1, err
	}
	rs.Task.Inputs = make([]scheduler.SpecInput, len(spec.Inputs))
	for i, in := range spec.Inputs {
		out := scheduler.SpecInput{Step: in.Step, TaskID: in.TaskID, Artifacts: map[string]scheduler.SpecArtifact{}}
		for name, a := range in.Artifacts {
			k := dataKey(flowPrefix, a.SHA)
			if err := e.upload(ctx, k, a.Path); err != nil {
				return -1, err
			}
			out.Artifacts[name] = scheduler.SpecArtifact{SHA: a.SHA, Path: k}
		}
		rs.Task.Inputs[i] = out
	}
	if spec.Input != nil {
		sha := filepath.Base(spec.Input.Path) // blobs are named by their sha256
		k := dataKey(flowPrefix, sha)
		if err := e.upload(ctx, k, spec.Input.Path); err != nil {
			return -1, err
		}
		rs.Task.Input = &scheduler.SpecSplit{Path: k, Index: spec.Input.Index}
	}
	if err := e.uploadPackage(ctx, &rs, l.Package); err != nil {
		return -1, err
	}
	rs.TaskPrefix = path.Join(flowPrefix, spec.RunID, spec.Step, spec.TaskID, fmt.Sprintf("%d-%s", spec.Attempt, nonce()))
	b, err := msgpack.Marshal(&rs)
	if err != nil {
		return -1, fmt.Errorf("encode task spec: %w", err)
	}
	specKey := rs.TaskPrefix + "/_spec.mpk"
	if err := e.s3.PutBytes(ctx, e.bucket, specKey, b); err != nil {
		return -1, err
	}
	env := map[string]string{}
	for k, v := range e.cfg.JobEnv {
		env[k] = v
	}
	for k, v := range l.Env {
		env[k] = v
	}
	env[logIntervalEnv] = formatLogInterval(e.cfg.LogInterval)
	env["METAFLOW_ENGINE_URL"] = engURL
	env["METAFLOW_BOOTSTRAP"] = bootstrapR
	env["METAFLOW_TASK_SPEC"] = "s3://" + e.bucket + "/" + specKey
	user := spec.Current["username"]
	if user == "" {
		user = "unknown"
	}
	id, err := e.c.Submit(ctx, JobSpec{
		Queue: queue, Image: image, Command: jobCommand, Env: env, Resources: res, Container: ctr,
		Labels:         Labels{Flow: spec.Flow, User: user, Run: spec.RunID, Step: spec.Step, Task: spec.TaskID, Attempt: spec.Attempt},
		TimeoutSeconds: batchTimeout(l.Timeout),
	})
	if err != nil {
		return -1, err
	}
	if l.Submitted != nil {
		l.Submitted(id, "s3://"+e.bucket+"/"+rs.TaskPrefix)
	}
	if l.Started != nil {
		l.Started(0)
	}
	say := func(format string, args ...any) {
		if l.Line != nil {
			l.Line(false, fmt.Sprintf(format, args...))
		}
	}
	say("Batch job %s submitted to queue %s (%s, image %s).", id, queue, res, image)
	logs := e.followLogs(rs.TaskPrefix, l)
	st, err := e.wait(ctx, id, say, func(d time.Duration) string { return runnableWarning(id, queue, res, d) },
		func(ctx context.Context) {
			fctx, cancel := context.WithTimeout(ctx, max(e.cfg.LogInterval, 30*time.Second))
			defer cancel()
			_ = logs.fetch(fctx) // a failed fetch is tried again at the next interval
		})
	if err != nil {
		if ctx.Err() != nil {
			// Cancelled (Ctrl-C, timeout): keep what the job printed last.
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			logs.finish(fctx)
			cancel()
		}
		return -1, err
	}
	return e.collect(ctx, l, logs, flowPrefix, rs.TaskPrefix, st)
}

// uploadPackage puts the code package's blobs under the flow's data keys
// (once per executor; skipped when S3 has them, as when the datastore is
// in S3) and names them in the spec, by path.
func (e *Executor) uploadPackage(ctx context.Context, rs *remoteSpec, files []scheduler.CodeFile) error {
	if len(files) == 0 {
		return nil
	}
	rs.Package = make(map[string]string, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, f := range files {
		k := dataKey(rs.FlowPrefix, f.SHA)
		rs.Package[f.Path] = k
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := e.upload(ctx, k, f.Local); err != nil {
				errs[i] = fmt.Errorf("code package file %s: %w", f.Path, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// upload puts a local file at key once per executor, skipping objects that
// already exist (keys are content addressed).
func (e *Executor) upload(ctx context.Context, key, local string) error {
	e.mu.Lock()
	o := e.uploads[key]
	if o == nil {
		o = &onceErr{}
		e.uploads[key] = o
	}
	e.mu.Unlock()
	o.once.Do(func() { o.err = e.s3.PutFileIfMissing(ctx, e.bucket, key, local) })
	if o.err != nil {
		e.mu.Lock()
		if e.uploads[key] == o {
			delete(e.uploads, key) // try again next time
		}
		e.mu.Unlock()
		return fmt.Errorf("upload %s to s3://%s/%s: %w", local, e.bucket, key, o.err)
	}
	return nil
}

func (e *Executor) fileSHA(local string) (string, error) {
	e.mu.Lock()
	o := e.codeSHA[local]
	if o == nil {
		o = &onceStr{}
		e.codeSHA[local] = o
	}
	e.mu.Unlock()
	o.once.Do(func() { o.s, o.err = s3io.FileSHA(local) })
	return o.s, o.err
}

func nonce() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// defaultJobTimeout is a job's lifetime without a timeout decorator, as in
// Metaflow (5 days): a job whose engine is gone dies at the latest then.
const defaultJobTimeout = 5 * 24 * time.Hour

// batchTimeout is the job's own timeout (attemptDurationSeconds) for the
// timeout decorator's limit: the engine cancels the attempt first (its
// clock starts at submission, Batch's when the job starts running); Batch's
// stops a job whose engine is gone. Batch accepts no less than 60 s.
func batchTimeout(limit time.Duration) int {
	if limit <= 0 {
		limit = defaultJobTimeout
	}
	return max(60, int(limit.Seconds())+60)
}
