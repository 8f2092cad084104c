package batch

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/smithy-go/middleware"
)

// Defaults of Metaflow's resources decorator.
const (
	DefaultVCPUs    = 1
	DefaultMemoryMB = 4000
	// DefaultLogGroup is where Batch's default awslogs driver writes.
	DefaultLogGroup = "/aws/batch/job"
	// describeBatch is DescribeJobs' limit of job ids per call.
	describeBatch = 100
)

// State is a Batch job status.
type State string

// Batch job states in lifecycle order.
const (
	StateSubmitted State = "SUBMITTED"
	StatePending   State = "PENDING"
	StateRunnable  State = "RUNNABLE"
	StateStarting  State = "STARTING"
	StateRunning   State = "RUNNING"
	StateSucceeded State = "SUCCEEDED"
	StateFailed    State = "FAILED"
)

// Done reports whether s is final.
func (s State) Done() bool { return s == StateSucceeded || s == StateFailed }

// Resources is the size of a job (Metaflow's resources/batch decorator).
type Resources struct {
	VCPUs    int
	MemoryMB int
	GPUs     int
}

// WithDefaults fills unset fields with Metaflow's defaults (1 vCPU, 4000 MB).
func (r Resources) WithDefaults() Resources {
	if r.VCPUs == 0 {
		r.VCPUs = DefaultVCPUs
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = DefaultMemoryMB
	}
	return r
}

func (r Resources) validate() error {
	switch {
	case r.VCPUs < 1:
		return fmt.Errorf("cpu must be at least 1, got %d", r.VCPUs)
	case r.MemoryMB < 4:
		// Batch's own minimum for MEMORY.
		return fmt.Errorf("memory must be at least 4 MB, got %d", r.MemoryMB)
	case r.GPUs < 0:
		return fmt.Errorf("gpu must not be negative, got %d", r.GPUs)
	}
	return nil
}

func (r Resources) String() string {
	return fmt.Sprintf("%d vCPU, %d MB memory, %d GPU", r.VCPUs, r.MemoryMB, r.GPUs)
}

func (r Resources) requirements() []types.ResourceRequirement {
	req := []types.ResourceRequirement{
		{Type: types.ResourceTypeVcpu, Value: aws.String(strconv.Itoa(r.VCPUs))},
		{Type: types.ResourceTypeMemory, Value: aws.String(strconv.Itoa(r.MemoryMB))},
	}
	if r.GPUs > 0 {
		req = append(req, types.ResourceRequirement{Type: types.ResourceTypeGpu, Value: aws.String(strconv.Itoa(r.GPUs))})
	}
	return req
}

// Options configure a Client.
type Options struct {
	// JobRoleARN is the IAM role jobs run as (METAFLOW_ECS_S3_ACCESS_IAM_ROLE);
	// it is how a job reaches S3 without the submitter's credentials.
	JobRoleARN string
	// ExecutionRoleARN is the IAM role ECS uses to start jobs' containers
	// (METAFLOW_ECS_FARGATE_EXECUTION_ROLE); optional on EC2.
	ExecutionRoleARN string
	// LogGroup is the CloudWatch Logs group of job logs; default /aws/batch/job.
	LogGroup string
}

// Client submits and tracks Batch jobs. It is safe for concurrent use.
type Client struct {
	batch *batch.Client
	logs  *cloudwatchlogs.Client
	creds aws.CredentialsProvider
	opts  Options
	calls callCounter

	mu   sync.Mutex
	defs map[string]*jobDef
}

// New loads the SDK's default configuration (credentials chain, region,
// AWS_ENDPOINT_URL[_<SERVICE>]) and returns a Client.
func New(ctx context.Context, opts Options) (*Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return NewFromConfig(cfg, opts), nil
}

// NewFromConfig returns a Client using cfg.
func NewFromConfig(cfg aws.Config, opts Options) *Client {
	if opts.LogGroup == "" {
		opts.LogGroup = DefaultLogGroup
	}
	c := &Client{creds: cfg.Credentials, opts: opts, defs: map[string]*jobDef{}}
	c.calls.counts = map[string]int{}
	count := func(o *[]func(*middleware.Stack) error) { *o = append(*o, c.calls.register, registerLenient) }
	c.batch = batch.NewFromConfig(cfg, func(o *batch.Options) { count(&o.APIOptions) })
	c.logs = cloudwatchlogs.NewFromConfig(cfg, func(o *cloudwatchlogs.Options) { count(&o.APIOptions) })
	return c
}

// callCounter counts API operations (not HTTP retries) per "Service.Operation",
// so benchmarks can report calls per job.
type callCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (cc *callCounter) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("MetaflowCallCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			cc.mu.Lock()
			cc.counts[middleware.GetServiceID(ctx)+"."+middleware.GetOperationName(ctx)]++
			cc.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// Calls returns how many times each operation ("Batch.SubmitJob", ...) was
// called since the Client was made or ResetCalls.
func (c *Client) Calls() map[string]int {
	c.calls.mu.Lock()
	defer c.calls.mu.Unlock()
	out := make(map[string]int, len(c.calls.counts))
	for k, v := range c.calls.counts {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the call counters.
func (c *Client) ResetCalls() {
	c.calls.mu.Lock()
	c.calls.counts = map[string]int{}
	c.calls.mu.Unlock()
}
