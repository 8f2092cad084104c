package scheduler

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

// logSaveInterval is how often a running task's logs go to a remote
// datastore, where other machines read them.
var logSaveInterval = 5 * time.Second

// remoteStore reports whether the run's datastore is remote (S3), where
// logs are sent; a local one has its log files in place.
func (r *Run) remoteStore() bool { return strings.HasPrefix(r.Store.Location(), "s3://") }

// saveLogsWhileRunning stores a running attempt's logs in a remote (S3)
// datastore every logSaveInterval while they grow, so that logs RUN/STEP
// on another machine shows them; the local datastore needs nothing. The
// returned func stops it (the final save follows the attempt).
func (r *Run) saveLogsWhileRunning(ctx context.Context, flow, runID, step, taskID string, attempt int) (stop func()) {
	if !r.remoteStore() {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(logSaveInterval)
		defer t.Stop()
		var saved int64
		var next time.Time // no save before (each re-sends the whole log)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return // the final save follows the attempt
			case <-t.C:
			}
			var size int64
			for _, s := range datastore.Streams {
				if fi, err := os.Stat(r.Store.LogFile(flow, runID, step, taskID, attempt, s)); err == nil {
					size += fi.Size()
				}
			}
			if size <= saved || time.Now().Before(next) {
				continue
			}
			began := time.Now()
			if r.Store.SaveLogs(ctx, flow, runID, step, taskID, attempt) == nil {
				saved = size
			}
			// A big log takes a while to send: spend at most a tenth of
			// the time sending it again.
			next = time.Now().Add(9 * time.Since(began))
		}
	}()
	return func() { close(done); <-stopped }
}
