package batch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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

// JobSpec is one job to submit.
type JobSpec struct {
	Queue string
	// JobDefinition, if set, is used as is (name, name:revision or ARN) and
	// Resources become container overrides. Otherwise Image is required and
	// a job definition for Image+Resources+Container is registered once and
	// reused.
	JobDefinition string
	Image         string
	Command       []string
	Env           map[string]string
	Resources     Resources
	// Container holds the job's IAM roles and Linux parameters; its empty
	// roles get Options' defaults. Only with an Image: a given
	// JobDefinition fixes them.
	Container Container
	Labels    Labels
	// Tags are extra tags; the metaflow.* tags from Labels are always set.
	Tags map[string]string
	// TimeoutSeconds, if positive, makes Batch kill the attempt after it.
	TimeoutSeconds int
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkEnv refuses environment Batch would reject and, above all, any value
// that is one of the submitter's own credentials: jobs get theirs from the
// job role.
func checkEnv(env map[string]string, own aws.Credentials) error {
	for k, v := range env {
		if !envName.MatchString(k) {
			return fmt.Errorf("environment variable name %q is not valid", k)
		}
		if strings.HasPrefix(k, "AWS_BATCH") {
			return fmt.Errorf("environment variable %s: names starting with AWS_BATCH are reserved by Batch", k)
		}
		if v != "" && (v == own.SecretAccessKey || v == own.SessionToken) {
			return fmt.Errorf("environment variable %s holds the submitter's AWS credentials; jobs must use the job role instead", k)
		}
	}
	return nil
}

func mergeTags(l Labels, extra map[string]string) (map[string]string, error) {
	tags := labelTags(l)
	for k, v := range extra {
		if strings.HasPrefix(k, "aws:") {
			return nil, fmt.Errorf("tag %q: the aws: prefix is reserved", k)
		}
		if _, ok := tags[k]; ok {
			return nil, fmt.Errorf("tag %q is set by metaflow", k)
		}
		tags[k] = v
	}
	if len(tags) > 50 {
		// Batch's limit per resource.
		return nil, fmt.Errorf("%d tags, Batch allows 50", len(tags))
	}
	return tags, nil
}

// Submit submits one job and returns its id. With an Image it costs one
// SubmitJob call, plus one or two calls the first time an image+resources
// pair is used by this Client.
func (c *Client) Submit(ctx context.Context, spec JobSpec) (string, error) {
	if spec.Queue == "" {
		return "", errors.New("submit: no job queue")
	}
	if spec.Labels.Flow == "" {
		return "", errors.New("submit: no flow name in labels")
	}
	if spec.Labels.Attempt < 0 {
		return "", fmt.Errorf("submit: negative attempt %d", spec.Labels.Attempt)
	}
	res := spec.Resources.WithDefaults()
	if err := res.validate(); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if err := spec.Container.validate(); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if spec.JobDefinition != "" && spec.Container != (Container{}) {
		return "", fmt.Errorf("submit: job definition %s fixes the job's IAM roles and Linux parameters: give an image instead to set them", spec.JobDefinition)
	}
	key := jobKey(spec.Labels)
	if len(key) > maxKeyLen {
		return "", fmt.Errorf("submit: task identity %q is longer than %d characters", key, maxKeyLen)
	}
	var own aws.Credentials
	if c.creds != nil {
		// Cached by the SDK; the error case means there is nothing to leak.
		own, _ = c.creds.Retrieve(ctx)
	}
	if err := checkEnv(spec.Env, own); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	tags, err := mergeTags(spec.Labels, spec.Tags)
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}

	in := &batch.SubmitJobInput{
		JobName:  aws.String(nameFromKey(key)),
		JobQueue: aws.String(spec.Queue),
		Tags:     tags,
		// Tags also go to the ECS task, for cost allocation.
		PropagateTags:      aws.Bool(true),
		ContainerOverrides: &types.ContainerOverrides{Command: spec.Command, Environment: envPairs(spec.Env)},
	}
	if spec.TimeoutSeconds > 0 {
		in.Timeout = &types.JobTimeout{AttemptDurationSeconds: aws.Int32(int32(spec.TimeoutSeconds))}
	}
	if spec.JobDefinition != "" {
		in.JobDefinition = aws.String(spec.JobDefinition)
		in.ContainerOverrides.ResourceRequirements = res.requirements()
	} else {
		if spec.Image == "" {
			return "", errors.New("submit: neither a job definition nor an image")
		}
		ctr := spec.Container
		if ctr.JobRole == "" {
			ctr.JobRole = c.opts.JobRoleARN
		}
		if ctr.ExecutionRole == "" {
			ctr.ExecutionRole = c.opts.ExecutionRoleARN
		}
		arn, err := c.jobDefinition(ctx, spec.Image, res, ctr)
		if err != nil {
			return "", fmt.Errorf("submit %s: %w", *in.JobName, err)
		}
		in.JobDefinition = aws.String(arn)
	}
	out, err := c.batch.SubmitJob(ctx, in)
	if err != nil {
		return "", fmt.Errorf("submit %s to queue %s: %w", *in.JobName, spec.Queue, err)
	}
	return aws.ToString(out.JobId), nil
}

func envPairs(env map[string]string) []types.KeyValuePair {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.KeyValuePair, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.KeyValuePair{Name: aws.String(k), Value: aws.String(env[k])})
	}
	return out
}

// JobStatus is what DescribeJobs says about one job.
type JobStatus struct {
	ID           string
	Name         string
	Status       State
	StatusReason string
	// ExitCode is nil until the container has exited.
	ExitCode *int
	// Reason is the container's reason, e.g. "OutOfMemoryError: Container
	// killed due to memory usage" or "CannotPullContainerError: ...".
	Reason    string
	LogStream string
	CreatedAt time.Time
	StartedAt time.Time
	StoppedAt time.Time
	Tags      map[string]string
}

// Describe returns the status of each known id, calling DescribeJobs once
// per 100 ids. Ids Batch does not know (wrong region, or finished so long
// ago that Batch dropped them) are absent from the map.
func (c *Client) Describe(ctx context.Context, ids []string) (map[string]JobStatus, error) {
	out := make(map[string]JobStatus, len(ids))
	for _, chunk := range chunks(dedupe(ids), describeBatch) {
		resp, err := c.batch.DescribeJobs(ctx, &batch.DescribeJobsInput{Jobs: chunk})
		if err != nil {
			return nil, fmt.Errorf("describe %d jobs: %w", len(chunk), err)
		}
		want := make(map[string]bool, len(chunk))
		for _, id := range chunk {
			want[id] = true
		}
		for _, d := range resp.Jobs {
			id := aws.ToString(d.JobId)
			// Some emulators answer an empty or odd list with every job.
			if want[id] {
				out[id] = statusOf(d)
			}
		}
	}
	return out, nil
}

func statusOf(d types.JobDetail) JobStatus {
	s := JobStatus{
		ID:           aws.ToString(d.JobId),
		Name:         aws.ToString(d.JobName),
		Status:       State(d.Status),
		StatusReason: aws.ToString(d.StatusReason),
		CreatedAt:    millis(d.CreatedAt),
		StartedAt:    millis(d.StartedAt),
		StoppedAt:    millis(d.StoppedAt),
		Tags:         d.Tags,
	}
	if ct := d.Container; ct != nil {
		s.LogStream = aws.ToString(ct.LogStreamName)
		s.Reason = aws.ToString(ct.Reason)
		if ct.ExitCode != nil {
			code := int(*ct.ExitCode)
			s.ExitCode = &code
		}
	}
	// The last attempt has the details when the container block lacks them.
	if n := len(d.Attempts); n > 0 && d.Attempts[n-1].Container != nil {
		a := d.Attempts[n-1].Container
		if s.LogStream == "" {
			s.LogStream = aws.ToString(a.LogStreamName)
		}
		if s.Reason == "" {
			s.Reason = aws.ToString(a.Reason)
		}
		if s.ExitCode == nil && a.ExitCode != nil {
			code := int(*a.ExitCode)
			s.ExitCode = &code
		}
	}
	return s
}

func millis(p *int64) time.Time {
	if p == nil || *p == 0 {
		return time.Time{}
	}
	return time.UnixMilli(*p)
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func chunks(ids []string, n int) [][]string {
	var out [][]string
	for len(ids) > n {
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

// Terminate stops a job in any state: Batch cancels it if it has not started
// and kills its container otherwise. Finished jobs are left as they are.
func (c *Client) Terminate(ctx context.Context, id, reason string) error {
	if reason == "" {
		// Batch requires a reason.
		reason = "terminated by metaflow"
	}
	if _, err := c.batch.TerminateJob(ctx, &batch.TerminateJobInput{JobId: aws.String(id), Reason: aws.String(reason)}); err != nil {
		return fmt.Errorf("terminate job %s: %w", id, err)
	}
	return nil
}

// Job is one job found by List.
type Job struct {
	ID           string
	Name         string
	Status       State
	StatusReason string
	Labels       Labels
	CreatedAt    time.Time
}

// activeStates are the states List reports: a job that can still run.
var activeStates = map[State]bool{
	StateSubmitted: true, StatePending: true, StateRunnable: true, StateStarting: true, StateRunning: true,
}

// List returns the unfinished jobs (SUBMITTED..RUNNING) of one flow in queue,
// newest first. The server filters by a job-name prefix (case-insensitive);
// every candidate is then checked exactly against f, so jobs of other flows
// or users are never returned. f.Flow is required.
func (c *Client) List(ctx context.Context, queue string, f ListFilter) ([]Job, error) {
	if queue == "" {
		return nil, errors.New("list jobs: no job queue")
	}
	if f.Flow == "" {
		// Never list (and so never kill) jobs beyond one flow.
		return nil, errors.New("list jobs: no flow name")
	}
	var (
		jobs []Job
		cut  = map[string]Job{} // candidates whose identity is only in tags
	)
	// With a filter, ListJobs ignores jobStatus and returns every state, so
	// one paginated listing replaces one listing per state.
	p := batch.NewListJobsPaginator(c.batch, &batch.ListJobsInput{
		JobQueue: aws.String(queue),
		Filters:  []types.KeyValuesPair{{Name: aws.String("JOB_NAME"), Values: []string{namePattern(f)}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list jobs of flow %s in queue %s: %w", f.Flow, queue, err)
		}
		for _, s := range page.JobSummaryList {
			j := Job{
				ID:           aws.ToString(s.JobId),
				Name:         aws.ToString(s.JobName),
				Status:       State(s.Status),
				StatusReason: aws.ToString(s.StatusReason),
				CreatedAt:    millis(s.CreatedAt),
			}
			if !activeStates[j.Status] {
				continue
			}
			l, err := ParseJobName(j.Name)
			switch {
			case errors.Is(err, ErrNameCut):
				cut[j.ID] = j
			case err == nil && f.Match(l):
				j.Labels = l
				jobs = append(jobs, j)
			}
		}
	}
	if len(cut) > 0 {
		ids := make([]string, 0, len(cut))
		for id := range cut {
			ids = append(ids, id)
		}
		st, err := c.Describe(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("list jobs of flow %s: %w", f.Flow, err)
		}
		for id, j := range cut {
			l, err := parseKey(st[id].Tags[TagJobKey])
			if err == nil && f.Match(l) && nameFromKey(jobKey(l)) == j.Name {
				j.Labels = l
				jobs = append(jobs, j)
			}
		}
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].CreatedAt.After(jobs[b].CreatedAt) })
	return jobs, nil
}
