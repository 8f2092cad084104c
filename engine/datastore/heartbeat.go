package datastore

import (
	"fmt"
	"time"
)

// DefaultHeartbeat is how often an engine refreshes the heartbeat of the
// runs it runs (Run.HeartbeatAt) when the record names no interval.
const DefaultHeartbeat = 10 * time.Second

// StaleBeats is how many heartbeat intervals may pass without one before a
// run recorded as running is taken for one whose engine stopped.
const StaleBeats = 6

// heartbeatTimeFmt is how an error names the last heartbeat.
const heartbeatTimeFmt = "2006-01-02 15:04:05 MST"

// Settle is the one rule readers apply to what they read of a run and its
// tasks: a run recorded as running whose engine has not refreshed its
// heartbeat for StaleBeats of the run's heartbeat intervals (or never did,
// and was created longer ago than that) lost its engine (killed, machine
// lost): it is reported failed, with the error "its engine stopped (last
// heartbeat at T)", and so is each of tasks (tasks of run) still recorded
// as running, with its last attempt. A task still recorded running in a run
// that ended (completed or failed) is reported failed too: its engine could
// not record its end. Nothing is written: the records stay as the engine
// left them. Settle reports whether run's engine stopped.
//
// The run is settled by the first call (make it before settling tasks
// concurrently); later calls only settle tasks. Completed and failed runs,
// and runs whose heartbeat is fresh, are untouched, as are the tasks of
// running runs.
func Settle(now time.Time, run *Run, tasks ...*Task) bool {
	if run == nil {
		return false
	}
	if !run.engineStopped && run.Status == StatusRunning {
		interval := DefaultHeartbeat
		if run.HeartbeatSeconds > 0 {
			interval = time.Duration(run.HeartbeatSeconds * float64(time.Second))
		}
		last, what := run.HeartbeatAt, "last heartbeat at"
		if last.IsZero() {
			last, what = run.CreatedAt, "no heartbeat since it was created at"
		}
		if now.Sub(last) > StaleBeats*interval {
			run.engineStopped = true
			run.Status = StatusFailed
			run.Error = fmt.Sprintf("its engine stopped (%s %s)", what, last.Local().Format(heartbeatTimeFmt))
			run.FinishedAt = last
		}
	}
	if run.Status == StatusRunning {
		return false
	}
	// A run that ended waited for its tasks and recorded each one's end; a
	// task still recorded running is one whose end could not be written
	// (a full or failing disk): it did not complete.
	why := "killed: " + run.Error
	if !run.engineStopped {
		why = "its end was not recorded (the run ended " + run.Status + ")"
	}
	for _, t := range tasks {
		if t == nil || t.Status != StatusRunning {
			continue
		}
		t.Status = StatusFailed
		if t.FinishedAt.IsZero() {
			t.FinishedAt = run.FinishedAt
		}
		if n := len(t.Attempts); n > 0 && t.Attempts[n-1].Status == StatusRunning {
			a := &t.Attempts[n-1]
			a.Status, a.Error = StatusFailed, why
		}
	}
	return run.engineStopped
}
