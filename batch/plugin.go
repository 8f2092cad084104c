package batch

import (
	"context"
	"fmt"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// Plugin is AWS Batch as the executor of the batch decorator
// (scheduler.Plugin), with two capabilities that need no executor: the
// logs of Batch attempts that have not ended (scheduler.LogSource) and
// batch list|kill (scheduler.JobManager). Settings are read when needed:
// by NewExecutor when a run first needs Batch (the registry keeps the
// executor), and by Jobs and the CloudWatch log reader at each call; the
// logs jobs upload to S3 need AWS credentials only.
type Plugin struct {
	// jobs gives a Batch client for list, kill and CloudWatch logs, and
	// the configured job queue (tests replace it).
	jobs func(ctx context.Context) (jobsAPI, string, error)
}

// NewPlugin returns the plugin, configured from the environment when used.
func NewPlugin() *Plugin { return &Plugin{jobs: jobsFromEnv} }

// jobsAPI is what list, kill and the CloudWatch log reader need of Batch
// (*Client).
type jobsAPI interface {
	List(ctx context.Context, queue string, f ListFilter) ([]Job, error)
	Terminate(ctx context.Context, id, reason string) error
	// JobLog returns the last n lines of a job's CloudWatch log.
	JobLog(ctx context.Context, id string, n int) ([]string, error)
}

// jobsFromEnv makes a client with the configuration of a run (so without
// queue or S3 root it fails with the same error).
func jobsFromEnv(ctx context.Context) (jobsAPI, string, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := New(ctx, Options{JobRoleARN: cfg.JobRole})
	if err != nil {
		return nil, "", fmt.Errorf("AWS Batch client: %w", err)
	}
	return c, cfg.Queue, nil
}

// Name implements scheduler.Plugin.
func (p *Plugin) Name() string { return "AWS Batch" }

// NewExecutor implements scheduler.Plugin: the executor, configured from
// the environment and Metaflow's config file (ConfigFromEnv).
func (p *Plugin) NewExecutor() (scheduler.Executor, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := NewExecutor(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.SingleJobs {
		return singleJobs{e}, nil
	}
	return e, nil
}
