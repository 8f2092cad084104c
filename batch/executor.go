package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// Executor runs task attempts as AWS Batch jobs (scheduler.Executor). Its
// bucket (METAFLOW_DATASTORE_SYSROOT_S3) holds blobs in the datastore's
// layout (a datastore.S3): Run ships the task's input blobs and code package
// there from the datastore of record (Launch.Blobs; nothing to send when
// that is the same S3 root), uploads the code bundle, submits a job that
// runs `metaflow-engine task-runner` in the container and waits for it. The
// task runner puts the outputs through the same blob store, hashing each
// once, and reports their shas; the executor copies them into a datastore of
// record elsewhere (read once, checked) and names them with Launch.Stored,
// and the scheduler adopts them by sha. Capabilities: scheduler.Remote and
// scheduler.Preflighter and scheduler.ArrayExecutor (array.go).
type Executor struct {
	cfg    Config
	c      *Client
	s3     *s3io.Client
	blobs  *datastore.S3 // the bucket's blobs (no local cache)
	bucket string
	prefix string
	poll   *poller
	// logGets counts the GETs of live logs (tests check their cost).
	logGets atomic.Int64

	mu       sync.Mutex
	uploads  map[string]*onceErr // S3 key or blob -> upload
	checked  map[string]*onceErr // queue+resources -> CheckQueue
	rversion map[string]*onceStr // Rscript -> version
	engineMu sync.Mutex
	engine   string              // S3 key of the engine binary, once uploaded
	codeSHA  map[string]*onceStr // local code path -> sha

	arrMu  sync.Mutex
	arrays map[string]*arrayBatch // fan-out (Launch.Array.Group) -> splits waiting
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
	s3c := s3io.New(awsCfg)
	blobs, err := datastore.NewS3(s3c, cfg.S3Root, "")
	if err != nil {
		return nil, err
	}
	return &Executor{
		cfg: cfg, c: c, s3: s3c, blobs: blobs, bucket: bucket, prefix: prefix,
		poll:    &poller{c: c, interval: cfg.PollInterval, watch: map[string]*watcher{}},
		uploads: map[string]*onceErr{}, checked: map[string]*onceErr{},
		rversion: map[string]*onceStr{}, codeSHA: map[string]*onceStr{},
	}, nil
}

// RunsRemotely makes the executor a scheduler.Remote: its jobs get their
// inputs from S3 (uploaded, or already in an S3 datastore under the same
// root) and upload their own logs while they run.
func (e *Executor) RunsRemotely() {}

// Client is the Batch client the executor uses.
func (e *Executor) Client() *Client { return e.c }

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
