package batch

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// cloudWatchLines bounds what logs reads from CloudWatch.
const cloudWatchLines = 10000

// AttemptLogs implements scheduler.LogSource: a reader of Batch attempts'
// logs for one request (logs RUN/STEP). It reads the copies the task runners
// upload as they grow (the attempt's logs_url), else the jobs' CloudWatch
// streams (a job that died before uploading), merged into stdout. Its
// clients are made once per reader, on first use, not once per attempt.
func (p *Plugin) AttemptLogs(ctx context.Context) scheduler.AttemptLogReader {
	return &attemptLogs{
		s3: sync.OnceValues(func() (*s3io.Client, error) { return s3io.FromEnv(ctx) }),
		jobs: sync.OnceValues(func() (jobsAPI, error) {
			c, _, err := p.jobs(ctx)
			return c, err
		}),
	}
}

type attemptLogs struct {
	s3   func() (*s3io.Client, error)
	jobs func() (jobsAPI, error)
}

// Read implements scheduler.AttemptLogReader. ok is false when neither
// source has anything (or the attempt was no Batch job).
func (r *attemptLogs) Read(ctx context.Context, at datastore.Attempt) (stdout, stderr []byte, ok bool) {
	if bucket, prefix, err := s3io.ParseURL(at.LogsURL); err == nil {
		if c, err := r.s3(); err == nil {
			o, oerr := c.GetBytes(ctx, bucket, datastore.JobFile(prefix, datastore.JobLogName(datastore.Stdout)))
			e, eerr := c.GetBytes(ctx, bucket, datastore.JobFile(prefix, datastore.JobLogName(datastore.Stderr)))
			missing := func(err error) bool { return errors.Is(err, s3io.ErrNotFound) }
			// Both read, or one read and the other never written; an
			// unreadable stream must not pass for an empty one.
			if (oerr == nil || missing(oerr)) && (eerr == nil || missing(eerr)) && !(missing(oerr) && missing(eerr)) {
				return o, e, true
			}
		}
	}
	if at.JobID == "" {
		return nil, nil, false
	}
	c, err := r.jobs()
	if err != nil {
		return nil, nil, false
	}
	lines, err := c.JobLog(ctx, at.JobID, cloudWatchLines)
	if err != nil || len(lines) == 0 {
		return nil, nil, false
	}
	return []byte(strings.Join(lines, "\n") + "\n"), nil, true
}
