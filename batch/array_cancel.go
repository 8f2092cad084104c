package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// Cancelling an array fan-out. On AWS Batch, terminating a parent array job
// terminates its children with it, so a cancel costs one TerminateJob: the
// first child's follower cancelled terminates the parent, and every child's
// follower then waits (ArrayCancelGrace) to see its child end through its
// usual status polling. A child not seen ended by then (moto leaves them
// running), or any child when the parent's TerminateJob failed, is
// terminated with a TerminateJob of its own, as a single job is. A child
// counts as stopped only when it was seen ended or its own TerminateJob
// succeeded.

// ArrayCancelGrace is how long, after its parent array job was terminated,
// a cancelled child has to be seen ended before it is terminated itself; at
// least three poll intervals (one pass sees the parent's change and lists
// the children that changed).
var ArrayCancelGrace = 10 * time.Second

// cancelReason is the reason given to Batch for a cancelled task's jobs.
const cancelReason = "metaflow: the task was cancelled"

// arrayJob is a submitted array job, shared by its children's followers.
type arrayJob struct {
	id       string
	children int
	stopping atomic.Bool   // the parent's TerminateJob was started
	failOnce sync.Once     // closes failed
	failed   chan struct{} // closed at the parent's first failed TerminateJob
	stopped  chan struct{} // closed when the parent's TerminateJob is done
}

func newArrayJob(id string, children int) *arrayJob {
	return &arrayJob{id: id, children: children, failed: make(chan struct{}), stopped: make(chan struct{})}
}

func (a *arrayJob) fail() { a.failOnce.Do(func() { close(a.failed) }) }

// stopsParent reports whether a child's cancel ends its whole array: a
// cancelled run does; an attempt's own deadline (the timeout decorator)
// must not take its siblings with it.
func stopsParent(ctx context.Context) bool { return errors.Is(ctx.Err(), context.Canceled) }

// stopParent starts the parent's TerminateJob (once per array job); true
// for the caller that started it, which waits for it before it returns.
func (e *Executor) stopParent(a *arrayJob, say func(string, ...any)) bool {
	if !a.stopping.CompareAndSwap(false, true) {
		return false
	}
	go func() {
		defer close(a.stopped)
		// The children stop waiting at the first failure (terminateNotify
		// calls a.fail at each): the retries go on here while each child
		// is terminated by its own call.
		if err := e.terminateNotify(a.id, cancelReason, say, a.fail); err != nil {
			return
		}
		say("Batch array job %s (%d children) terminated.", a.id, a.children)
	}()
	return true
}

// cancelGrace is ArrayCancelGrace, at least three poll intervals.
func (e *Executor) cancelGrace() time.Duration {
	return max(ArrayCancelGrace, 3*e.poll.interval)
}

// endedWithParent waits, after the parent's TerminateJob was started, for
// the child w follows to be seen ended: true when it was; false when it
// must be terminated itself (the parent's TerminateJob failed, the grace
// ran out, or polling failed), with why. last is the child's last state.
func (e *Executor) endedWithParent(w *watcher, a *arrayJob, last *State) (bool, string) {
	stopped := a.stopped
	var grace <-chan time.Time
	for {
		select {
		case st := <-w.st:
			*last = st.Status
			if st.Status.Done() {
				return true, ""
			}
		case <-a.failed:
			return false, "its array job could not be terminated"
		case <-stopped:
			stopped = nil
			t := time.NewTimer(e.cancelGrace())
			defer t.Stop()
			grace = t.C
		case <-grace:
			return false, "it did not end with its array job within " + e.cancelGrace().String()
		case <-w.err:
			return false, "its status could not be read"
		}
	}
}

// cancelJob ends the cancelled job id that w follows: an array child
// through its parent when it can (see ArrayCancelGrace), else with a
// TerminateJob of its own. A job that was not stopped is NotStopped.
func (e *Executor) cancelJob(ctx context.Context, w *watcher, id string, last State, say func(string, ...any), a *arrayJob) (JobStatus, error) {
	if a != nil && stopsParent(ctx) {
		if e.stopParent(a, say) {
			defer func() { <-a.stopped }()
		}
		ended, why := e.endedWithParent(w, a, &last)
		if ended {
			say("Batch job %s ended with its array job %s.", id, a.id)
			return JobStatus{}, ctx.Err()
		}
		say("Terminating Batch job %s itself: %s.", id, why)
	}
	if err := e.terminate(id, cancelReason, say); err != nil {
		return JobStatus{}, &scheduler.NotStopped{JobID: id, Err: err}
	}
	say("Batch job %s terminated.", id)
	if last == StateRunning {
		// The runner uploads its last log lines on SIGTERM.
		awaitDone(w, jobEndWait)
	}
	return JobStatus{}, ctx.Err()
}
