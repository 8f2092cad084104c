package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func TestParseTerminateTimeout(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", DefaultTerminateTimeout, false},
		{"2.5", 2500 * time.Millisecond, false},
		{"0.1", 100 * time.Millisecond, false},
		{"3600", time.Hour, false},
		{"0", 0, true},
		{"-1", 0, true},
		{"3601", 0, true},
		{"soon", 0, true},
		{"NaN", 0, true},
	}
	for _, c := range cases {
		got, err := parseTerminateTimeout(c.in)
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), terminateTimeoutEnv) {
				t.Errorf("%q: got %v, %v; want an error naming %s", c.in, got, err, terminateTimeoutEnv)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestTerminateConfigFromEnv(t *testing.T) {
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "q")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://b/p")
	t.Setenv(terminateTimeoutEnv, "4")
	if c, err := ConfigFromEnv(); err != nil || c.TerminateTimeout != 4*time.Second {
		t.Fatalf("got %v, %v", c.TerminateTimeout, err)
	}
	t.Setenv(terminateTimeoutEnv, "forever")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), terminateTimeoutEnv) {
		t.Fatalf("a bad %s is accepted: %v", terminateTimeoutEnv, err)
	}
}

// Which failures are worth retrying, and how each reads.
func TestTerminateFailures(t *testing.T) {
	wrap := func(err error) error {
		return fmt.Errorf("terminate job j-1: operation error Batch: TerminateJob: %w", err)
	}
	cases := []struct {
		name      string
		err       error
		permanent bool
		says      string
	}{
		{"unreachable", wrap(&smithyhttp.RequestSendError{Err: errors.New(`dial tcp 127.0.0.1:9: connect: connection refused`)}), false,
			"the AWS Batch API could not be reached: dial tcp 127.0.0.1:9: connect: connection refused"},
		{"throttled", wrap(&smithy.GenericAPIError{Code: "TooManyRequestsException", Message: "slow down", Fault: smithy.FaultClient}), false,
			"AWS Batch answered TooManyRequestsException: slow down"},
		{"server error", wrap(&smithy.GenericAPIError{Code: "ServerException", Message: "oops", Fault: smithy.FaultServer}), false,
			"AWS Batch answered ServerException: oops"},
		{"no permission", wrap(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not allowed", Fault: smithy.FaultClient}), true,
			"AWS Batch answered AccessDeniedException: not allowed"},
		{"no answer", wrap(context.DeadlineExceeded), false, "did not answer within"},
	}
	for _, c := range cases {
		if got := permanent(c.err); got != c.permanent {
			t.Errorf("%s: permanent = %v", c.name, got)
		}
		if got := shortCause(c.err).Error(); !strings.Contains(got, c.says) || strings.Contains(got, "j-1") {
			t.Errorf("%s: reads %q, want %q without the job id", c.name, got, c.says)
		}
	}
}
