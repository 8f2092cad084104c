package batch

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

// ErrNoLogs: the job has no log stream (yet). Batch creates it when the
// container starts; moto only when the container has exited.
var ErrNoLogs = errors.New("no log stream for the job")

// LogTail returns the last n lines (oldest first) of a job's log stream
// (JobStatus.LogStream) in the client's log group.
func (c *Client) LogTail(ctx context.Context, logStream string, n int) ([]string, error) {
	if logStream == "" {
		return nil, ErrNoLogs
	}
	if n <= 0 {
		return nil, nil
	}
	var (
		lines []string
		token *string
	)
	// Pages go backwards from the end; each is oldest first. The page bound
	// guards against a service that keeps handing out new tokens.
	for page := 0; len(lines) < n && page < 50; page++ {
		out, err := c.logs.GetLogEvents(ctx, &cloudwatchlogs.GetLogEventsInput{
			LogGroupName:  aws.String(c.opts.LogGroup),
			LogStreamName: aws.String(logStream),
			StartFromHead: aws.Bool(false),
			Limit:         aws.Int32(int32(min(n-len(lines), 10000))),
			NextToken:     token,
		})
		if err != nil {
			var nf *types.ResourceNotFoundException
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("log stream %s in %s: %w", logStream, c.opts.LogGroup, ErrNoLogs)
			}
			return nil, fmt.Errorf("read log stream %s in %s: %w", logStream, c.opts.LogGroup, err)
		}
		got := make([]string, 0, len(out.Events))
		for _, e := range out.Events {
			got = append(got, aws.ToString(e.Message))
		}
		lines = append(got, lines...)
		// The same token back means the start of the stream was reached;
		// an empty page alone does not (CloudWatch may return those).
		if out.NextBackwardToken == nil || (token != nil && *out.NextBackwardToken == *token) {
			break
		}
		token = out.NextBackwardToken
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}
