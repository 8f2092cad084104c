package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// terminateTimeoutEnv bounds how long a cancelled task's TerminateJob is
// retried (seconds).
const terminateTimeoutEnv = "METAFLOW_BATCH_TERMINATE_TIMEOUT"

// DefaultTerminateTimeout is how long TerminateJob is retried by default:
// long enough to ride out a brief outage or throttling, short enough for
// someone waiting at Ctrl-C.
const DefaultTerminateTimeout = 30 * time.Second

// parseTerminateTimeout reads METAFLOW_BATCH_TERMINATE_TIMEOUT ("" is the default).
func parseTerminateTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultTerminateTimeout, nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || !(secs >= 0.1 && secs <= 3600) {
		return 0, fmt.Errorf("%s must be a number of seconds from 0.1 to 3600, got %q", terminateTimeoutEnv, v)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// terminateBackoff is the first wait between TerminateJob attempts; it
// doubles up to terminateMaxBackoff.
const (
	terminateBackoff    = 250 * time.Millisecond
	terminateMaxBackoff = 4 * time.Second
	// terminateCallTimeout bounds one TerminateJob call.
	terminateCallTimeout = 10 * time.Second
)

// terminate ends job id, retrying a failed TerminateJob with backoff for
// at most the configured window (Config.TerminateTimeout); a refusal that
// cannot change (no permission, a bad request) ends the retries at once.
// say reports the first failure, so the console tells what the wait is.
// The error, if any, is why the job could not be stopped.
func (e *Executor) terminate(id, reason string, say func(string, ...any)) error {
	return e.terminateNotify(id, reason, say, func() {})
}

// terminateNotify is terminate that calls failed at each failed attempt,
// before it tries again (an array's children stop waiting at the first).
func (e *Executor) terminateNotify(id, reason string, say func(string, ...any), failed func()) error {
	window := e.cfg.TerminateTimeout
	if window <= 0 {
		window = DefaultTerminateTimeout
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	wait := terminateBackoff
	var last error // the last failure's cause
	giveUp := func(tries int) error {
		say("Gave up terminating Batch job %s after %d attempts in %s.", id, tries, time.Since(start).Round(100*time.Millisecond))
		return fmt.Errorf("TerminateJob failed for %s: %w", window.Round(100*time.Millisecond), last)
	}
	for tries := 1; ; tries++ {
		// One HTTP attempt per try, each bounded (an API that does not
		// answer at all), so every failure is seen and retried here.
		cctx, ccancel := context.WithTimeout(ctx, terminateCallTimeout)
		err := e.c.terminate(cctx, id, reason, func(o *batch.Options) { o.RetryMaxAttempts = 1 })
		ccancel()
		if err != nil && ctx.Err() != nil && last != nil {
			return giveUp(tries - 1) // cut short by the window: the earlier cause says more
		}
		if err == nil {
			if tries > 1 {
				say("Batch job %s terminated at attempt %d.", id, tries)
			}
			return nil
		}
		last = shortCause(err)
		failed()
		if permanent(err) {
			return last
		}
		if tries == 1 {
			say("Could not terminate Batch job %s (%v); trying again for up to %s.", id, last, window.Round(100*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return giveUp(tries)
		case <-time.After(wait):
		}
		wait = min(2*wait, terminateMaxBackoff)
	}
}

// permanent reports whether Batch refused a call for a reason retrying
// cannot change: a client fault other than throttling.
func permanent(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorFault() != smithy.FaultClient {
		return false
	}
	switch api.ErrorCode() {
	case "TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded":
		return false
	}
	return true
}

// shortCause is why a call failed, without the SDK's wrapping nor the job
// id (the caller names the job), so that jobs failing alike read alike.
func shortCause(err error) error {
	var send *smithyhttp.RequestSendError
	var api smithy.APIError
	switch {
	case errors.As(err, &send):
		return fmt.Errorf("the AWS Batch API could not be reached: %w", send.Err)
	case errors.As(err, &api):
		return fmt.Errorf("AWS Batch answered %s: %s", api.ErrorCode(), api.ErrorMessage())
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the AWS Batch API did not answer within %s", terminateCallTimeout)
	}
	return err
}
