package datastore

import (
	"fmt"
	"sync"
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
// as running, with its last attempt. A run that ended (recorded so, or
// noted by NoteUnrecordedEnd in this process) has no running task either:
// a task still recorded as running is read as failed, its end unrecorded.
// An attempt that ran as a remote job (JobID) is not said to be killed
// but left running (JobLeftRunning): the job does not die with the engine.
// Nothing is written: the records stay as the engine left them. Settle
// reports whether run's engine stopped.
//
// The run is settled by the first call (make it before settling tasks
// concurrently); later calls only settle tasks. Completed and failed runs,
// and runs whose heartbeat is fresh, are untouched, as are the tasks of
// running runs.
func Settle(now time.Time, run *Run, tasks ...*Task) bool {
	if run == nil {
		return false
	}
	if run.Status == StatusRunning {
		if end, ok := unrecorded.Load(endKeyOf(run)); ok { // ended here, not yet recorded
			e := end.(Run)
			run.Status, run.Error, run.FinishedAt = e.Status, e.Error, e.FinishedAt
		}
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
	// A run that ended has no running task: one still recorded as running
	// was killed with its engine, or its end could not be written (a full,
	// read-only or failing datastore).
	why := "killed: " + run.Error
	switch {
	case run.engineStopped:
	case run.Status == StatusFailed:
		why = "the run failed before the task's end could be recorded: " + run.Error
	default:
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
			if a.JobID != "" && run.Status == StatusFailed {
				// A remote job does not die with the engine: never say
				// it was killed.
				a.Error = run.Error + ": its job " + a.JobID + " was not stopped and may still be running, " +
					"until it ends or reaches its own timeout (batch list and batch kill --run-id " + run.RunID + " find it)"
				a.JobLeftRunning = true
			}
		}
	}
	return run.engineStopped
}

// unrecorded holds the ends of runs this process ran whose final record
// could not be written (the datastore full, read-only or failing), so that
// its own readers (Settle) see them ended while the engine tries the write
// again; other processes see them failed once their heartbeat is stale.
var unrecorded sync.Map // endKey -> Run

// endKey names a run across datastores: its creation time tells apart
// runs of the same name in two stores.
type endKey struct {
	flow, runID string
	created     int64
}

func endKeyOf(r *Run) endKey { return endKey{r.Flow, r.RunID, r.CreatedAt.UnixNano()} }

// NoteUnrecordedEnd makes Settle in this process read run (recorded as
// running) as it ended: with run's status, error and end time.
func NoteUnrecordedEnd(run *Run) { unrecorded.Store(endKeyOf(run), *run) }

// ForgetUnrecordedEnd drops what NoteUnrecordedEnd noted, once the run's
// end is recorded.
func ForgetUnrecordedEnd(run *Run) { unrecorded.Delete(endKeyOf(run)) }
