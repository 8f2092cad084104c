package batch

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/mfconfig"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// Config configures the Batch executor, with Metaflow's variable names.
type Config struct {
	// Queue is the default job queue (METAFLOW_BATCH_JOB_QUEUE); a step's
	// batch(queue=) overrides it.
	Queue string
	// Image is the default image (METAFLOW_BATCH_CONTAINER_IMAGE); empty
	// means rocker/r-ver:<version of the submitting Rscript>, prefixed with
	// METAFLOW_BATCH_CONTAINER_REGISTRY if set.
	Image    string
	Registry string
	// S3Root is s3://bucket/prefix (METAFLOW_DATASTORE_SYSROOT_S3): code,
	// inputs, outputs and logs of jobs travel through it.
	S3Root string
	// JobRole is the IAM role of the jobs (METAFLOW_ECS_S3_ACCESS_IAM_ROLE);
	// a step's batch(iam_role=) overrides it.
	JobRole string
	// ExecutionRole is the IAM role ECS starts the jobs' containers with
	// (METAFLOW_ECS_FARGATE_EXECUTION_ROLE); a step's
	// batch(execution_role=) overrides it.
	ExecutionRole string
	// JobEnv is extra environment for every job (METAFLOW_BATCH_JOB_ENV, a
	// JSON object).
	JobEnv map[string]string
	// EngineBinary is a linux/amd64 metaflow-engine that jobs download and
	// run (METAFLOW_BATCH_ENGINE_BINARY); default: this executable.
	EngineBinary string
	// PollInterval between DescribeJobs calls (default 1 s).
	PollInterval time.Duration
	// LogInterval (METAFLOW_BATCH_LOG_INTERVAL, seconds; default 5 s) is how
	// often a running task's logs travel: jobs upload them that often when
	// they grew, and the executor fetches them that often while a job is
	// RUNNING (one GET per stream). Jobs get it in their environment.
	LogInterval time.Duration
}

// ConfigFromEnv reads the configuration from the environment and Metaflow's
// config file (see settings). It fails,
// naming the variable, when the queue or the S3 root is missing.
func ConfigFromEnv() (Config, error) {
	get, err := mfconfig.Lookup()
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Queue:         get("METAFLOW_BATCH_JOB_QUEUE"),
		Image:         get("METAFLOW_BATCH_CONTAINER_IMAGE"),
		Registry:      get("METAFLOW_BATCH_CONTAINER_REGISTRY"),
		S3Root:        get("METAFLOW_DATASTORE_SYSROOT_S3"),
		JobRole:       get("METAFLOW_ECS_S3_ACCESS_IAM_ROLE"),
		ExecutionRole: get("METAFLOW_ECS_FARGATE_EXECUTION_ROLE"),
		EngineBinary:  get("METAFLOW_BATCH_ENGINE_BINARY"),
	}
	if c.LogInterval, err = parseLogInterval(get(logIntervalEnv)); err != nil {
		return c, err
	}
	if s := get("METAFLOW_BATCH_JOB_ENV"); s != "" {
		if err := json.Unmarshal([]byte(s), &c.JobEnv); err != nil {
			return c, fmt.Errorf("METAFLOW_BATCH_JOB_ENV must be a JSON object of strings: %v", err)
		}
	}
	return c, c.check()
}

func (c Config) check() error {
	var missing []string
	if c.Queue == "" {
		missing = append(missing, "METAFLOW_BATCH_JOB_QUEUE (the job queue)")
	}
	if c.S3Root == "" {
		missing = append(missing, "METAFLOW_DATASTORE_SYSROOT_S3 (s3://bucket/prefix for code, artifacts and logs)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("AWS Batch is not configured: set %s", strings.Join(missing, " and "))
	}
	if _, _, err := s3io.ParseURL(c.S3Root); err != nil {
		return fmt.Errorf("METAFLOW_DATASTORE_SYSROOT_S3: %v", err)
	}
	return nil
}

// Executor runs task attempts as AWS Batch jobs (scheduler.Executor). The
// local datastore stays the store of record: Run uploads the task's code
// bundle and input artifacts to S3, submits a job that runs
// `metaflow-engine task-runner` in the container, waits for it, and puts
// the job's result and staged artifacts into the task's output folder, so
// the scheduler commits them exactly as for a local task.
type Executor struct {
	cfg    Config
	c      *Client
	s3     *s3io.Client
	bucket string
	prefix string
	poll   *poller
	// logGets counts the GETs of live logs (tests check their cost).
	logGets atomic.Int64

	mu       sync.Mutex
	uploads  map[string]*onceErr // S3 key -> upload
	checked  map[string]*onceErr // queue+resources -> CheckQueue
	rversion map[string]*onceStr // Rscript -> version
	engineMu sync.Mutex
	engine   string              // S3 key of the engine binary, once uploaded
	codeSHA  map[string]*onceStr // local code path -> sha
}

type onceErr struct {
	once sync.Once
	err  error
}

type onceStr struct {
	once sync.Once
	s    string
	err  error
}

// NewExecutor checks cfg and loads the AWS configuration (SDK default chain).
func NewExecutor(ctx context.Context, cfg Config) (*Executor, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	bucket, prefix, _ := s3io.ParseURL(cfg.S3Root)
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	c := NewFromConfig(awsCfg, Options{JobRoleARN: cfg.JobRole, ExecutionRoleARN: cfg.ExecutionRole})
	return &Executor{
		cfg: cfg, c: c, s3: s3io.New(awsCfg), bucket: bucket, prefix: prefix,
		poll:    &poller{c: c, interval: cfg.PollInterval, watch: map[string]*watcher{}},
		uploads: map[string]*onceErr{}, checked: map[string]*onceErr{},
		rversion: map[string]*onceStr{}, codeSHA: map[string]*onceStr{},
	}, nil
}

// Client is the Batch client the executor uses.
func (e *Executor) Client() *Client { return e.c }

func (e *Executor) key(parts ...string) string {
	if e.prefix == "" {
		return path.Join(parts...)
	}
	return path.Join(append([]string{e.prefix}, parts...)...)
}

func dataKey(flowPrefix, sha string) string {
	return path.Join(flowPrefix, "data", sha[:2], sha)
}

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

// exitRecord is the task runner's last upload: the task's exit code.
type exitRecord struct {
	ExitCode int `json:"exit_code"`
}

// shape is the size and place of one job.
func (e *Executor) shape(l *scheduler.Launch) (Resources, string, string, error) {
	res := Resources{}
	num := func(d graph.Decorator, k string) int {
		v, ok := d.Args[k]
		if !ok {
			return 0
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0
		}
		n := int(f)
		if float64(n) < f {
			n++ // 1.5 vCPU asks for 2
		}
		return n
	}
	queue, image := e.cfg.Queue, e.cfg.Image
	// Like Metaflow: the larger of the resources and batch decorators wins.
	for _, name := range []string{"resources", "batch"} {
		d, ok := l.Decorators[name]
		if !ok {
			continue
		}
		res.VCPUs = max(res.VCPUs, num(d, "cpu"))
		res.MemoryMB = max(res.MemoryMB, num(d, "memory"))
		res.GPUs = max(res.GPUs, num(d, "gpu"))
		if name == "batch" {
			if q := d.Args["queue"]; q != "" {
				queue = q
			}
			if im := d.Args["image"]; im != "" {
				image = im
			}
		}
	}
	res = res.WithDefaults()
	if image == "" {
		v, err := e.rVersion(l.Rscript)
		if err != nil {
			return res, "", "", err
		}
		image = "rocker/r-ver:" + v
		if e.cfg.Registry != "" {
			image = strings.TrimRight(e.cfg.Registry, "/") + "/" + image
		}
	}
	return res, queue, image, nil
}

// container is a step's IAM roles and Linux parameters:
// batch(iam_role=, execution_role=, shared_memory=, max_swap=, swappiness=),
// shared_memory being the larger of the resources and batch decorators'
// (as Metaflow does; a fractional resources(shared_memory=) is rounded up).
// Roles left empty get the configured defaults when the job is submitted.
func (e *Executor) container(l *scheduler.Launch) (Container, error) {
	b := l.Decorators["batch"]
	c := Container{JobRole: b.Args["iam_role"], ExecutionRole: b.Args["execution_role"]}
	for _, name := range []string{"resources", "batch"} {
		v, ok := l.Decorators[name].Args["shared_memory"]
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > math.MaxInt32 {
			return c, fmt.Errorf("%s(shared_memory = %q): must be a positive number of MiB up to %d", name, v, math.MaxInt32)
		}
		c.SharedMemoryMiB = max(c.SharedMemoryMiB, int(math.Ceil(f)))
	}
	whole := func(k string) (*int, error) {
		v, ok := b.Args[k]
		if !ok {
			return nil, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("batch(%s = %q): must be a whole number", k, v)
		}
		return &n, nil
	}
	var err error
	if c.MaxSwapMiB, err = whole("max_swap"); err != nil {
		return c, err
	}
	if c.Swappiness, err = whole("swappiness"); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (e *Executor) rVersion(rscript string) (string, error) {
	if rscript == "" {
		rscript = "Rscript"
	}
	e.mu.Lock()
	o := e.rversion[rscript]
	if o == nil {
		o = &onceStr{}
		e.rversion[rscript] = o
	}
	e.mu.Unlock()
	o.once.Do(func() {
		out, err := exec.Command(rscript, "--vanilla", "-e", "cat(as.character(getRversion()))").Output()
		if err != nil {
			o.err = fmt.Errorf("cannot tell the R version for the default image (set METAFLOW_BATCH_CONTAINER_IMAGE): %v", err)
			return
		}
		o.s = strings.TrimSpace(string(out))
	})
	return o.s, o.err
}

func (e *Executor) checkQueue(ctx context.Context, queue string, r Resources) error {
	k := fmt.Sprintf("%s\x00%d\x00%d\x00%d", queue, r.VCPUs, r.MemoryMB, r.GPUs)
	e.mu.Lock()
	o := e.checked[k]
	if o == nil {
		o = &onceErr{}
		e.checked[k] = o
	}
	e.mu.Unlock()
	o.once.Do(func() { o.err = e.c.CheckQueue(ctx, queue, r) })
	if o.err != nil {
		e.mu.Lock()
		if e.checked[k] == o {
			delete(e.checked, k) // a later task checks again (it may be transient)
		}
		e.mu.Unlock()
	}
	return o.err
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

// engineKey uploads the engine binary jobs run (once per executor) and
// returns its S3 key.
func (e *Executor) engineKey(ctx context.Context) (string, error) {
	e.engineMu.Lock()
	defer e.engineMu.Unlock()
	if e.engine != "" {
		return e.engine, nil
	}
	bin, err := EngineBinary(e.cfg.EngineBinary)
	if err != nil {
		return "", err
	}
	sha, err := s3io.FileSHA(bin)
	if err != nil {
		return "", err
	}
	key := e.key("_engine", sha, "metaflow-engine")
	if err := e.upload(ctx, key, bin); err != nil {
		return "", err
	}
	e.engine = key
	return key, nil
}

// EngineBinary returns the metaflow-engine jobs download: given, or this
// executable if it can run in a linux/amd64 container with glibc (static,
// or dynamically linked to libc only, as `go build` makes it).
func EngineBinary(given string) (string, error) {
	if given != "" {
		return given, checkELF(given)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("this engine is a %s/%s binary: set METAFLOW_BATCH_ENGINE_BINARY to a linux/amd64 metaflow-engine (CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build ./cmd/metaflow-engine)", runtime.GOOS, runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the engine binary: %w", err)
	}
	return self, checkELF(self)
}

func checkELF(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("engine binary for Batch jobs %s: %w", p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("engine binary for Batch jobs %s is not linux/amd64 (set METAFLOW_BATCH_ENGINE_BINARY)", p)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("engine binary for Batch jobs %s: %w", p, err)
	}
	for _, l := range libs {
		switch l {
		case "libc.so.6", "libpthread.so.0", "libdl.so.2", "libresolv.so.2":
		default:
			return fmt.Errorf("engine binary %s needs %s, which an R image may lack: build a static one (CGO_ENABLED=0 go build ./cmd/metaflow-engine) and set METAFLOW_BATCH_ENGINE_BINARY", p, l)
		}
	}
	return nil
}

// jobCommand is a job's command, base R and sh only: R downloads the engine
// from a presigned URL (bootstrapR, passed in METAFLOW_BOOTSTRAP) and sh
// execs it, so the task runner is the container's PID 1 and receives the
// SIGTERM Batch sends before killing a job (a PID 1 without a handler, such
// as Rscript, ignores it, and its children never hear of it).
var jobCommand = []string{"sh", "-c",
	`f="${TMPDIR:-/tmp}/metaflow-engine-$$" && Rscript -e "$METAFLOW_BOOTSTRAP" "$f" && exec "$f" task-runner --spec "$METAFLOW_TASK_SPEC"`}

// bootstrapR downloads the engine to its argument; exit status 97 says the
// download failed.
const bootstrapR = `f <- commandArgs(TRUE)[1]; u <- Sys.getenv("METAFLOW_ENGINE_URL"); ` +
	`ok <- tryCatch(download.file(u, f, mode = "wb", quiet = TRUE) == 0, error = function(e) { message("metaflow: cannot download the engine: ", conditionMessage(e)); FALSE }); ` +
	`if (!isTRUE(ok)) quit(save = "no", status = 97); Sys.chmod(f, "0755")`

func nonce() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Preflight implements scheduler.Preflighter: before a run starts, each
// Batch step's job size and queue are checked against the queue's compute
// environments, so an impossible step fails the run before any task runs.
func (e *Executor) Preflight(ctx context.Context, step string, decos map[string]graph.Decorator, rscript string) error {
	res, queue, _, err := e.shape(&scheduler.Launch{Decorators: decos, Rscript: rscript})
	if err != nil {
		return err
	}
	if err := res.validate(); err != nil {
		return scheduler.CannotRun(err)
	}
	if _, err := e.container(&scheduler.Launch{Decorators: decos}); err != nil {
		return scheduler.CannotRun(err)
	}
	err = e.checkQueue(ctx, queue, res)
	if errors.Is(err, ErrUnsatisfiable) || errors.Is(err, ErrQueueNotFound) {
		return scheduler.CannotRun(err)
	}
	return err
}

// Run implements scheduler.Executor.
func (e *Executor) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	spec := l.Spec
	if l.StoreURL != "" && !e.isStore(l.StoreURL) {
		// Inputs are not downloaded for Batch steps of an S3 datastore:
		// they must be in this executor's bucket.
		return -1, fmt.Errorf("the S3 datastore is %s but this engine sends Batch jobs through %s: restart the engine after changing METAFLOW_DATASTORE_SYSROOT_S3", l.StoreURL, e.cfg.S3Root)
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

// failure says why a finished job failed, as far as Batch and the task
// runner's exit record tell: status reason, container reason, exit code.
func failure(st JobStatus, exit *int) string {
	var parts []string
	if st.StatusReason != "" {
		parts = append(parts, st.StatusReason)
	}
	if st.Reason != "" && st.Reason != st.StatusReason {
		parts = append(parts, st.Reason)
	}
	if exit == nil {
		exit = st.ExitCode
	}
	if exit != nil {
		parts = append(parts, fmt.Sprintf("exit code %d", *exit))
	}
	if len(parts) == 0 {
		return "Batch gave no reason"
	}
	return strings.Join(parts, "; ")
}

// followLogs follows the logs the task runner uploads under taskPrefix.
func (e *Executor) followLogs(taskPrefix string, l *scheduler.Launch) *logFollower {
	f := newLogFollower(func(ctx context.Context, key string, off int64) ([]byte, error) {
		return e.s3.GetFrom(ctx, e.bucket, key, off)
	}, taskPrefix, l)
	f.gets = &e.logGets
	f.where = "s3://" + e.bucket + "/" + taskPrefix
	return f
}

// wait follows a job until it is done or ctx is cancelled (then the job is
// terminated). While the job is RUNNING it calls running every LogInterval.
func (e *Executor) wait(ctx context.Context, id string, say func(string, ...any), stuck func(time.Duration) string,
	running func(context.Context)) (JobStatus, error) {
	w := e.poll.add(id)
	defer e.poll.remove(id)
	last := StateSubmitted
	rw := runnableWatch{after: runnableWarnAfter()}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	logTick := time.NewTicker(e.cfg.LogInterval)
	defer logTick.Stop()
	for {
		select {
		case <-logTick.C:
			if last == StateRunning && running != nil {
				running(ctx)
			}
		case now := <-tick.C:
			if d, warn := rw.check(last, now); warn {
				say("%s", stuck(d))
			}
		case <-ctx.Done():
			tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := e.c.Terminate(tctx, id, "metaflow: the task was cancelled")
			cancel()
			if err != nil {
				say("Could not terminate Batch job %s: %v", id, err)
			} else {
				say("Batch job %s terminated.", id)
				if last == StateRunning {
					// The runner uploads its last log lines on SIGTERM.
					awaitDone(w, jobEndWait)
				}
			}
			return JobStatus{}, ctx.Err()
		case err := <-w.err:
			tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = e.c.Terminate(tctx, id, "metaflow: the engine lost track of the job")
			cancel()
			return JobStatus{}, fmt.Errorf("follow Batch job %s (terminated): %w", id, err)
		case st := <-w.st:
			if st.Status != last {
				say("Batch job %s is %s.", id, st.Status)
				last = st.Status
			}
			if d, warn := rw.check(last, time.Now()); warn {
				say("%s", stuck(d))
			}
			if st.Status.Done() {
				return st, nil
			}
		}
	}
}

// jobEndWait bounds the wait for a terminated job to end, so that the
// logs its runner uploads on the way out can be fetched.
const jobEndWait = 15 * time.Second

// awaitDone waits until the poller reports w's job done, at most d.
func awaitDone(w *watcher, d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case st := <-w.st:
			if st.Status.Done() {
				return
			}
		case <-w.err:
			return
		case <-deadline:
			return
		}
	}
}

// collect puts a finished job's logs, result and staged artifacts where a
// local task leaves them and returns the task's exit code.
func (e *Executor) collect(ctx context.Context, l *scheduler.Launch, logs *logFollower, flowPrefix, taskPrefix string, st JobStatus) (int, error) {
	var rec exitRecord
	b, err := e.s3.GetBytes(ctx, e.bucket, taskPrefix+"/_exit.json")
	haveExit := err == nil
	if err != nil && !errors.Is(err, s3io.ErrNotFound) {
		return -1, err
	}
	if haveExit {
		if err := json.Unmarshal(b, &rec); err != nil {
			return -1, fmt.Errorf("job %s: bad exit record: %v", st.ID, err)
		}
	}
	// Logs: the rest of the task runner's copies (what the live fetches did
	// not get and print yet), else CloudWatch.
	gotLogs := logs.finish(ctx)
	if !gotLogs {
		lines, err := e.c.LogTail(ctx, st.LogStream, 200)
		if err == nil && len(lines) > 0 {
			_ = os.MkdirAll(filepath.Dir(l.StderrPath), 0o755)
			_ = os.WriteFile(l.StderrPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
			for _, line := range lines {
				if l.Line != nil {
					l.Line(true, line)
				}
			}
		}
	}
	if !haveExit {
		why := failure(st, nil)
		if st.StatusReason == "" && st.Reason == "" {
			why = "the container did not run the task (see the log lines above); " + why
		}
		return -1, fmt.Errorf("Batch job %s %s: %s", st.ID, strings.ToLower(string(st.Status)), why)
	}
	out := l.Spec.OutputDir
	if rec.ExitCode != 0 {
		if l.Line != nil {
			l.Line(true, fmt.Sprintf("Batch job %s failed: %s.", st.ID, failure(st, &rec.ExitCode)))
		}
		_ = e.s3.GetFile(ctx, e.bucket, taskPrefix+"/_error.txt", filepath.Join(out, "_error.txt"))
		return rec.ExitCode, nil
	}
	if err := e.s3.GetFile(ctx, e.bucket, taskPrefix+"/_result.mpk", filepath.Join(out, "_result.mpk")); err != nil {
		return -1, fmt.Errorf("job %s: task result: %w", st.ID, err)
	}
	ob, err := e.s3.GetBytes(ctx, e.bucket, taskPrefix+"/_outputs.json")
	if err != nil {
		return -1, fmt.Errorf("job %s: list of artifacts: %w", st.ID, err)
	}
	var outputs map[string]string
	if err := json.Unmarshal(ob, &outputs); err != nil {
		return -1, fmt.Errorf("job %s: list of artifacts: %v", st.ID, err)
	}
	if e.isStore(l.StoreURL) {
		// The blobs are in the datastore of record already: name them only.
		if err := os.WriteFile(filepath.Join(out, scheduler.RemoteOutputsFile), ob, 0o644); err != nil {
			return -1, fmt.Errorf("job %s: list of artifacts: %w", st.ID, err)
		}
		return 0, nil
	}
	for name, sha := range outputs {
		if err := e.s3.GetFile(ctx, e.bucket, dataKey(flowPrefix, sha), filepath.Join(out, name+".mpk")); err != nil {
			return -1, fmt.Errorf("job %s: artifact %s: %w", st.ID, name, err)
		}
	}
	return 0, nil
}

// isStore reports whether url (Launch.StoreURL) is the S3 root this
// executor keeps blobs under, in the datastore's own layout.
func (e *Executor) isStore(url string) bool {
	bucket, prefix, err := s3io.ParseURL(url)
	return err == nil && bucket == e.bucket && prefix == e.prefix
}

// poller describes every job in flight with one DescribeJobs per 100 jobs
// per interval, shared by all running tasks.
type poller struct {
	c        *Client
	interval time.Duration

	mu      sync.Mutex
	watch   map[string]*watcher
	running bool
}

// watcher receives the latest status of one job, or an error when
// DescribeJobs has failed for maxPollFailures intervals in a row.
type watcher struct {
	st  chan JobStatus
	err chan error
}

const maxPollFailures = 60

func (p *poller) add(id string) *watcher {
	w := &watcher{st: make(chan JobStatus, 1), err: make(chan error, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watch[id] = w
	if !p.running {
		p.running = true
		go p.loop()
	}
	return w
}

func (p *poller) remove(id string) {
	p.mu.Lock()
	delete(p.watch, id)
	p.mu.Unlock()
}

func (p *poller) loop() {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	failures := 0
	for range t.C {
		p.mu.Lock()
		ids := make([]string, 0, len(p.watch))
		for id := range p.watch {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := p.c.Describe(ctx, ids)
		cancel()
		if err != nil {
			// Transient, most likely: the next tick tries again.
			if failures++; failures >= maxPollFailures {
				p.mu.Lock()
				for _, w := range p.watch {
					select {
					case w.err <- err:
					default:
					}
				}
				p.mu.Unlock()
				failures = 0
			}
			continue
		}
		failures = 0
		p.mu.Lock()
		for id, s := range st {
			if w, ok := p.watch[id]; ok {
				select { // keep only the latest status
				case <-w.st:
				default:
				}
				w.st <- s
			}
		}
		p.mu.Unlock()
	}
}

// runnableWatch tells, once, when a job has been RUNNABLE for too long.
type runnableWatch struct {
	after  time.Duration
	since  time.Time
	warned bool
}

func (w *runnableWatch) check(state State, now time.Time) (time.Duration, bool) {
	if state != StateRunnable {
		w.since = time.Time{}
		return 0, false
	}
	if w.since.IsZero() {
		w.since = now
	}
	d := now.Sub(w.since)
	if w.warned || d < w.after {
		return d, false
	}
	w.warned = true
	return d, true
}

// runnableWarnAfter is METAFLOW_BATCH_RUNNABLE_WARNING (seconds), default 5 minutes.
func runnableWarnAfter() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("METAFLOW_BATCH_RUNNABLE_WARNING")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Minute
}

// runnableWarning explains why a job may be stuck. CheckQueue already refused
// requests no compute environment could ever run, so what is left is capacity.
func runnableWarning(id, queue string, res Resources, d time.Duration) string {
	return fmt.Sprintf("Batch job %s has been RUNNABLE for %s: it asks for %s, which the compute "+
		"environments of queue %s can run in principle, so they are likely at their maxvCpus, "+
		"still scaling up, or unable to get instances of that size (check their state, "+
		"maxvCpus, instance types and service limits, or ask for less with resources())",
		id, d.Round(time.Second), res, queue)
}
