package batch

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
	// TerminateTimeout (METAFLOW_BATCH_TERMINATE_TIMEOUT, seconds; default
	// 30 s) bounds how long a failing TerminateJob of a cancelled task is
	// retried before its job is reported as left running.
	TerminateTimeout time.Duration
	// SingleJobs (METAFLOW_BATCH_ARRAY_JOBS=0; default 1) turns array jobs
	// off: every foreach split is a job of its own, and --max-workers
	// bounds them as it bounds other tasks.
	SingleJobs bool
}

// parseArrayJobs reads METAFLOW_BATCH_ARRAY_JOBS: whether foreach splits
// are submitted as array jobs.
func parseArrayJobs(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("METAFLOW_BATCH_ARRAY_JOBS must be 1 (foreach splits as array jobs, the default) or 0 (a job per split), not %q", v)
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
	if c.TerminateTimeout, err = parseTerminateTimeout(get(terminateTimeoutEnv)); err != nil {
		return c, err
	}
	arrays, err := parseArrayJobs(get("METAFLOW_BATCH_ARRAY_JOBS"))
	if err != nil {
		return c, err
	}
	c.SingleJobs = !arrays
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
