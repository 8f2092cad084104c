package batch

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

// listPage is how many jobs one ListJobs call returns at most (Batch's limit).
const listPage = 1000

// Children lists the children of array job parent that are in state s,
// with ListJobs (one call per 1,000 children in that state).
func (c *Client) Children(ctx context.Context, parent string, s State) ([]JobStatus, error) {
	var out []JobStatus
	in := &batch.ListJobsInput{ArrayJobId: aws.String(parent), JobStatus: types.JobStatus(s), MaxResults: aws.Int32(listPage)}
	for {
		resp, err := c.batch.ListJobs(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list the %s children of array job %s: %w", s, parent, err)
		}
		for _, j := range resp.JobSummaryList {
			out = append(out, summaryStatus(j))
		}
		if aws.ToString(resp.NextToken) == "" {
			return out, nil
		}
		in.NextToken = resp.NextToken
	}
}

// summaryStatus is what a ListJobs summary tells of a job (no log stream).
func summaryStatus(j types.JobSummary) JobStatus {
	s := JobStatus{
		ID: aws.ToString(j.JobId), Name: aws.ToString(j.JobName), Status: State(j.Status),
		StatusReason: aws.ToString(j.StatusReason),
		CreatedAt:    millis(j.CreatedAt), StartedAt: millis(j.StartedAt), StoppedAt: millis(j.StoppedAt),
	}
	if ct := j.Container; ct != nil {
		s.Reason = aws.ToString(ct.Reason)
		if ct.ExitCode != nil {
			code := int(*ct.ExitCode)
			s.ExitCode = &code
		}
	}
	return s
}
