package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// remoteSpec is what the task runner in the container reads: the task spec
// whose inputs are blobs of the S3 datastore at Root, by sha (no paths), and
// whose code is the key of the code bundle in Root's bucket.
type remoteSpec struct {
	Task scheduler.TaskSpec `msgpack:"task"`
	// Root is the s3://bucket/prefix the blobs are under (datastore.S3).
	Root string `msgpack:"root"`
	// JobDir is the key of the job's folder in Root's bucket
	// (datastore.JobDir): its spec, logs, outputs and exit record.
	JobDir string `msgpack:"job_dir"`
	// Package is the run's code package: relative path (in the task's
	// working folder) -> sha256 of the file's blob.
	Package map[string]string `msgpack:"package,omitempty"`
}

// Run implements scheduler.Executor: one job, or one child of an array job
// when the attempt is a foreach split (Launch.Array, see array.go).
func (e *Executor) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	j, err := e.prepare(ctx, l)
	if err != nil {
		return -1, err
	}
	if l.Array != nil && l.Array.Size > 1 {
		return e.runChild(ctx, l, j)
	}
	id, err := e.submitOne(ctx, j)
	if err != nil {
		return -1, err
	}
	return e.follow(ctx, l, j, id, nil)
}

// prepared is an attempt ready to submit: its remote spec, encoded, and the
// job that runs it (without the spec's location).
type prepared struct {
	rs    remoteSpec
	spec  []byte
	job   JobSpec
	queue string
	res   Resources
	image string
}

// prepare ships what the attempt's job needs to the executor's bucket and
// encodes its remote spec.
func (e *Executor) prepare(ctx context.Context, l *scheduler.Launch) (*prepared, error) {
	spec := l.Spec
	if strings.HasPrefix(l.Datastore, "s3://") && !e.isStore(l.Datastore) {
		// Inputs are not downloaded for Batch steps of an S3 datastore
		// (Executor is scheduler.Remote): they must be in this executor's
		// bucket.
		return nil, fmt.Errorf("the S3 datastore is %s but this engine sends Batch jobs through %s: restart the engine after changing METAFLOW_DATASTORE_SYSROOT_S3", l.Datastore, e.cfg.S3Root)
	}
	res, queue, image, err := e.shape(l)
	if err != nil {
		return nil, err
	}
	ctr, err := e.container(l)
	if err != nil {
		return nil, err
	}
	if err := e.checkQueue(ctx, queue, res); err != nil {
		return nil, err
	}
	engKey, err := e.engineKey(ctx)
	if err != nil {
		return nil, err
	}
	// Presigned URLs outlive the job's wait in RUNNABLE by a day.
	engURL, err := e.s3.PresignGet(ctx, e.bucket, engKey, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	rs := remoteSpec{Task: *spec, Root: e.cfg.S3Root}
	rs.Task.OutputDir = ""
	codeSHA, err := e.fileSHA(spec.Code)
	if err != nil {
		return nil, fmt.Errorf("hash code bundle: %w", err)
	}
	rs.Task.Code = datastore.Key(e.prefix, datastore.CodeBlob(spec.Flow, codeSHA))
	if err := e.upload(ctx, rs.Task.Code, spec.Code); err != nil {
		return nil, err
	}
	// Inputs go by sha: each is shipped to the executor's bucket unless it
	// is there (always, in an S3 datastore under the same root).
	rs.Task.Inputs = make([]scheduler.SpecInput, len(spec.Inputs))
	for i, in := range spec.Inputs {
		out := scheduler.SpecInput{Step: in.Step, TaskID: in.TaskID, Artifacts: map[string]scheduler.SpecArtifact{}}
		for name, a := range in.Artifacts {
			if err := e.ship(ctx, l, spec.Flow, a.SHA); err != nil {
				return nil, fmt.Errorf("input %s: %w", name, err)
			}
			out.Artifacts[name] = scheduler.SpecArtifact{SHA: a.SHA}
		}
		rs.Task.Inputs[i] = out
	}
	if spec.Input != nil {
		if err := e.ship(ctx, l, spec.Flow, spec.Input.SHA); err != nil {
			return nil, fmt.Errorf("foreach input: %w", err)
		}
		rs.Task.Input = &scheduler.SpecSplit{SHA: spec.Input.SHA, Index: spec.Input.Index}
	}
	if err := e.uploadPackage(ctx, l, &rs); err != nil {
		return nil, err
	}
	rs.JobDir = datastore.Key(e.prefix, datastore.JobDir(spec.Flow, spec.RunID, spec.Step, spec.TaskID, spec.Attempt, nonce()))
	b, err := msgpack.Marshal(&rs)
	if err != nil {
		return nil, fmt.Errorf("encode task spec: %w", err)
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
	user := spec.Current["username"]
	if user == "" {
		user = "unknown"
	}
	return &prepared{rs: rs, spec: b, queue: queue, res: res, image: image, job: JobSpec{
		Queue: queue, Image: image, Command: jobCommand, Env: env, Resources: res, Container: ctr,
		Labels:         Labels{Flow: spec.Flow, User: user, Run: spec.RunID, Step: spec.Step, Task: spec.TaskID, Attempt: spec.Attempt},
		TimeoutSeconds: batchTimeout(l.Timeout),
	}}, nil
}

// submitOne puts the spec in the job's folder and submits its job.
func (e *Executor) submitOne(ctx context.Context, j *prepared) (string, error) {
	specKey := datastore.JobFile(j.rs.JobDir, datastore.JobSpec)
	if err := e.s3.PutBytes(ctx, e.bucket, specKey, j.spec); err != nil {
		return "", err
	}
	job := j.job
	job.Env["METAFLOW_TASK_SPEC"] = "s3://" + e.bucket + "/" + specKey
	return e.c.Submit(ctx, job)
}

// follow reports the submitted job id, follows the job to its end and
// collects what it left. arr is the array job id is a child of (nil for a
// single job): a cancel ends the child through it (cancelJob).
func (e *Executor) follow(ctx context.Context, l *scheduler.Launch, j *prepared, id string, arr *arrayJob) (int, error) {
	rs, queue, res, image := j.rs, j.queue, j.res, j.image
	if l.Submitted != nil {
		l.Submitted(id, "s3://"+e.bucket+"/"+rs.JobDir)
	}
	if l.Started != nil {
		l.Started(0)
	}
	say := func(format string, args ...any) {
		if l.Line != nil {
			l.Line(false, fmt.Sprintf(format, args...))
		}
	}
	if arr == nil {
		say("Batch job %s submitted to queue %s (%s, image %s).", id, queue, res, image)
	} else {
		say("Batch job %s (a child of array job %s) submitted to queue %s (%s, image %s).", id, arr.id, queue, res, image)
	}
	logs := e.followLogs(rs.JobDir, l)
	st, err := e.wait(ctx, id, say, func(d time.Duration) string { return runnableWarning(id, queue, res, d) },
		func(ctx context.Context) {
			fctx, cancel := context.WithTimeout(ctx, max(e.cfg.LogInterval, 30*time.Second))
			defer cancel()
			_ = logs.fetch(fctx) // a failed fetch is tried again at the next interval
		}, arr)
	if err != nil {
		var left *scheduler.NotStopped
		if ctx.Err() != nil && !errors.As(err, &left) {
			// Cancelled (Ctrl-C, timeout): keep what the job printed last
			// (a job left running has not printed its last yet).
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			logs.finish(fctx)
			cancel()
		}
		return -1, err
	}
	return e.collect(ctx, l, logs, rs.JobDir, st)
}

// uploadPackage ships the code package's blobs to the executor's bucket
// (once per executor; nothing is sent when it has them, as when the
// datastore is in S3) and names them in the spec, by path.
func (e *Executor) uploadPackage(ctx context.Context, l *scheduler.Launch, rs *remoteSpec) error {
	files := l.Package
	if len(files) == 0 {
		return nil
	}
	rs.Package = make(map[string]string, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, f := range files {
		rs.Package[f.Path] = f.SHA
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := e.ship(ctx, l, l.Spec.Flow, f.SHA); err != nil {
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

// ship makes the executor's bucket hold a blob of the datastore of record
// (Launch.Blobs), once per executor: a HEAD when it is there already,
// else one read of the blob, checked, streamed up.
func (e *Executor) ship(ctx context.Context, l *scheduler.Launch, flow, sha string) error {
	if l.Blobs == nil {
		return fmt.Errorf("blob %s: the launch names no datastore to read it from", sha)
	}
	return e.once("blob\x00"+flow+"\x00"+sha, func() error {
		_, err := datastore.CopyBlob(ctx, e.blobs, l.Blobs, flow, sha)
		return err
	})
}

// once runs do once per executor for key, again after a failure.
func (e *Executor) once(key string, do func() error) error {
	e.mu.Lock()
	o := e.uploads[key]
	if o == nil {
		o = &onceErr{}
		e.uploads[key] = o
	}
	e.mu.Unlock()
	o.once.Do(func() { o.err = do() })
	if o.err != nil {
		e.mu.Lock()
		if e.uploads[key] == o {
			delete(e.uploads, key) // try again next time
		}
		e.mu.Unlock()
	}
	return o.err
}

// upload puts a local file at key once per executor, skipping objects that
// already exist (keys are content addressed).
func (e *Executor) upload(ctx context.Context, key, local string) error {
	err := e.once("key\x00"+key, func() error { return e.s3.PutFileIfMissing(ctx, e.bucket, key, local) })
	if err != nil {
		return fmt.Errorf("upload %s to s3://%s/%s: %w", local, e.bucket, key, err)
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
