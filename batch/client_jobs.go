package batch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

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
	// Children counts an array job's children by state
	// (arrayProperties.statusSummary); nil for other jobs.
	Children map[State]int
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
	if ap := d.ArrayProperties; ap != nil && ap.StatusSummary != nil {
		s.Children = make(map[State]int, len(ap.StatusSummary))
		for k, v := range ap.StatusSummary {
			s.Children[State(k)] = int(v)
		}
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
	return c.terminate(ctx, id, reason)
}

// terminate is Terminate with per-call options (the executor's retries
// turn the SDK's own off, to see and report each failure).
func (c *Client) terminate(ctx context.Context, id, reason string, optFns ...func(*batch.Options)) error {
	if reason == "" {
		// Batch requires a reason.
		reason = "terminated by metaflow"
	}
	if _, err := c.batch.TerminateJob(ctx, &batch.TerminateJobInput{JobId: aws.String(id), Reason: aws.String(reason)}, optFns...); err != nil {
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
